/* fastjson: recursive-descent JSON parser over a pointer range that builds
 * jansson trees (see fastjson.h for the contract).
 *
 * Where the speed comes from, compared with json_loadb(): no per-byte stream
 * callback or UTF-8 re-buffering, no token text copied into a strbuffer, string
 * bodies scanned sixteen bytes at a time (SSE2; eight elsewhere and near the
 * end of the input), strings without escapes handed to
 * json_stringn_nocheck() and keys to json_object_setn_new_nocheck() straight
 * from the input (both were validated here), integers accumulated while
 * scanned.  Escaped strings are validated in the first pass and decoded into
 * a per-parse scratch buffer in a second one.
 *
 * What it deliberately does not do: accept anything jansson rejects (no
 * comments, NaN, trailing commas...), or replace jansson's allocator. */
#include "fastjson/fastjson.h"

#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

_Static_assert(sizeof(json_int_t) == sizeof(long long), "json_int_t is long long");

enum { FJ_SCRATCH_INLINE = 256 };

typedef struct {
    const char *begin;
    const char *end;
    const char *p; /* cursor: the next byte to look at */
    size_t flags;
    size_t depth;
    json_error_t *err;
    /* jansson quirk: its stream cannot push back a NUL byte, so the NUL right
     * after a number or literal (the byte it peeks at to end the token) is
     * silently skipped.  The number/literal parsers record that byte here;
     * fj_after_value() skips it. */
    const char *droppable_nul;
    /* Decoded bodies of escaped strings; inline first, heap once outgrown. */
    char *scratch;
    size_t scratch_cap;
    char scratch_inline[FJ_SCRATCH_INLINE];
} fj_parser;

/* A string body: either a range of the input (no escapes) or of scratch. */
typedef struct {
    const char *ptr;
    size_t len;
    int has_nul;
} fj_str;

/* ---- errors ---------------------------------------------------------- */

/* `at` is the offending byte (or end for a premature end of input). */
static void fj_fail(fj_parser *ps, const char *at, enum json_error_code code,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void fj_fail(fj_parser *ps, const char *at, enum json_error_code code,
                    const char *fmt, ...) {
    json_error_t *e = ps->err;
    if (!e)
        return;
    const char *upto = at < ps->end ? at + 1 : ps->end;
    int line = 1, column = 0;
    for (const char *q = ps->begin; q < upto; q++) {
        unsigned char c = (unsigned char)*q;
        if (c == '\n') {
            line++;
            column = 0;
        } else if ((c & 0xC0) != 0x80) {
            column++;
        }
    }
    e->line = line;
    e->column = column;
    e->position = (int)(upto - ps->begin);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->text, JSON_ERROR_TEXT_LENGTH - 1, fmt, ap);
    va_end(ap);
    /* jansson keeps the error code in the last byte of text. */
    e->text[JSON_ERROR_TEXT_LENGTH - 1] = (char)code;
}

static void fj_fail_oom(fj_parser *ps) {
    fj_fail(ps, ps->p, json_error_out_of_memory, "out of memory");
}

/* ---- lexical helpers ------------------------------------------------- */

static inline int fj_isdigit(char c) { return c >= '0' && c <= '9'; }

static inline int fj_isalpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline const char *fj_skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

static inline int fj_hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Four hex digits at p (caller checked they exist), or -1. */
static inline int32_t fj_hex4(const char *p) {
    int32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = fj_hexval(p[i]);
        if (h < 0)
            return -1;
        v = (v << 4) | h;
    }
    return v;
}

/* Bit 7 of each byte set where the byte is '"', '\\', < 0x20 or >= 0x80.
 * The borrow tricks can also flag bytes above a true hit, never below one,
 * so the lowest set bit is exact. */
static inline uint64_t fj_special_mask(uint64_t w) {
    const uint64_t ones = 0x0101010101010101ULL;
    const uint64_t highs = 0x8080808080808080ULL;
    uint64_t q = w ^ (ones * '"');
    uint64_t b = w ^ (ones * '\\');
    uint64_t zq = (q - ones) & ~q;
    uint64_t zb = (b - ones) & ~b;
    uint64_t lt = (w - ones * 0x20) & ~w;
    return (zq | zb | lt | w) & highs;
}

#ifdef __SSE2__
/* The same set for the 16 bytes at p, one bit per byte (bit i for p[i]):
 * every x86-64 has SSE2, and most strings of an event (member names, ids,
 * types) end within one such load.  A signed compare with 0x20 catches the
 * control bytes and, being negative, every byte >= 0x80 in one step. */
static inline unsigned fj_special_mask16(const char *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                               _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
    hit = _mm_or_si128(hit, _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
    return (unsigned)_mm_movemask_epi8(hit);
}
#endif

static inline unsigned fj_first_flagged(uint64_t mask) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (unsigned)__builtin_ctzll(mask) >> 3;
#else
    return (unsigned)__builtin_clzll(mask) >> 3;
#endif
}

/* Length of the valid UTF-8 sequence starting at a byte >= 0x80, or 0.
 * Same rules as jansson: no overlongs, no surrogates, nothing past U+10FFFF. */
static size_t fj_utf8_seq(const unsigned char *p, const unsigned char *end) {
    unsigned char c = p[0];
    size_t n;
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        v = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000))
        return 0;
    return n;
}

static size_t fj_utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Skip what may follow a value before the next token: the droppable NUL,
 * then whitespace. */
static inline const char *fj_after_value(fj_parser *ps) {
    const char *p = ps->p;
    if (p == ps->droppable_nul)
        p++;
    return fj_skip_ws(p, ps->end);
}

/* Record the byte after a number or literal, if it is the NUL jansson drops. */
static inline void fj_end_token(fj_parser *ps, const char *p) {
    ps->p = p;
    if (p < ps->end && *p == '\0')
        ps->droppable_nul = p;
}

/* ---- strings --------------------------------------------------------- */

/* Validate the escape at p ('\\'), return the byte after it, or NULL after
 * reporting.  Sets *nul when it decodes to U+0000. */
static const char *fj_check_escape(fj_parser *ps, const char *p, int *nul) {
    const char *end = ps->end;
    if (end - p < 2) {
        fj_fail(ps, end, json_error_premature_end_of_input, "premature end of input");
        return NULL;
    }
    switch (p[1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        return p + 2;
    case 'u':
        break;
    default:
        fj_fail(ps, p + 1, json_error_invalid_syntax, "invalid escape '\\%c'",
                (p[1] >= 0x20 && p[1] < 0x7F) ? p[1] : '?');
        return NULL;
    }
    for (int i = 2; i < 6; i++) {
        if (p + i >= end) {
            fj_fail(ps, end, json_error_premature_end_of_input, "premature end of input");
            return NULL;
        }
        if (fj_hexval(p[i]) < 0) {
            fj_fail(ps, p + i, json_error_invalid_syntax, "invalid \\u escape");
            return NULL;
        }
    }
    int32_t v = fj_hex4(p + 2);
    if (v >= 0xDC00 && v <= 0xDFFF) {
        fj_fail(ps, p, json_error_invalid_syntax, "lone low surrogate '\\u%04X'", (unsigned)v);
        return NULL;
    }
    if (v >= 0xD800 && v <= 0xDBFF) {
        int32_t v2 = -1;
        if (end - p >= 12 && p[6] == '\\' && p[7] == 'u')
            v2 = fj_hex4(p + 8);
        if (v2 < 0xDC00 || v2 > 0xDFFF) {
            /* jansson checks a \u that follows for hex digits first; either
             * way the input is rejected. */
            fj_fail(ps, p, json_error_invalid_syntax,
                    "high surrogate '\\u%04X' not followed by a low surrogate",
                    (unsigned)v);
            return NULL;
        }
        return p + 12;
    }
    if (v == 0)
        *nul = 1;
    return p + 6;
}

static int fj_scratch_reserve(fj_parser *ps, size_t need) {
    if (need <= ps->scratch_cap)
        return 0;
    size_t cap = ps->scratch_cap * 2;
    if (cap < need)
        cap = need;
    char *n = ps->scratch == ps->scratch_inline ? malloc(cap) : realloc(ps->scratch, cap);
    if (!n)
        return -1;
    ps->scratch = n;
    ps->scratch_cap = cap;
    return 0;
}

/* Decode an already validated string body [p, q) into scratch. */
static size_t fj_decode(char *out, const char *p, const char *q) {
    char *t = out;
    while (p < q) {
        const char *bs = memchr(p, '\\', (size_t)(q - p));
        if (!bs)
            bs = q;
        memcpy(t, p, (size_t)(bs - p));
        t += bs - p;
        p = bs;
        if (p == q)
            break;
        char c = p[1];
        switch (c) {
        case 'b': *t++ = '\b'; p += 2; break;
        case 'f': *t++ = '\f'; p += 2; break;
        case 'n': *t++ = '\n'; p += 2; break;
        case 'r': *t++ = '\r'; p += 2; break;
        case 't': *t++ = '\t'; p += 2; break;
        case 'u': {
            uint32_t v = (uint32_t)fj_hex4(p + 2);
            p += 6;
            if (v >= 0xD800 && v <= 0xDBFF) {
                uint32_t lo = (uint32_t)fj_hex4(p + 2);
                v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
            t += fj_utf8_encode(v, t);
            break;
        }
        default: /* '"', '\\', '/' stand for themselves */
            *t++ = c;
            p += 2;
            break;
        }
    }
    return (size_t)(t - out);
}

/* Scan the string whose opening quote is at ps->p.  On success ps->p is past
 * the closing quote and *s describes the body.  Any string: escapes, UTF-8,
 * the end of the input; fj_scan_string() tries the common case first. */
static __attribute__((noinline)) int fj_scan_string_any(fj_parser *ps, fj_str *s) {
    const char *start = ps->p + 1;
    const char *p = start;
    const char *end = ps->end;
    int escaped = 0;
    s->has_nul = 0;
    for (;;) {
#ifdef __SSE2__
        while (end - p >= 16) {
            unsigned m = fj_special_mask16(p);
            if (m) {
                p += __builtin_ctz(m);
                goto special;
            }
            p += 16;
        }
#endif
        while (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            uint64_t m = fj_special_mask(w);
            if (m) {
                p += fj_first_flagged(m);
                goto special;
            }
            p += 8;
        }
        while (p < end) {
            unsigned char c = (unsigned char)*p;
            if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80)
                goto special;
            p++;
        }
        fj_fail(ps, end, json_error_premature_end_of_input, "premature end of input");
        return -1;
    special:;
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            break;
        if (c == '\\') {
            escaped = 1;
            p = fj_check_escape(ps, p, &s->has_nul);
            if (!p)
                return -1;
        } else if (c < 0x20) {
            fj_fail(ps, p, json_error_invalid_syntax, "control character 0x%x in string",
                    (unsigned)c);
            return -1;
        } else {
            size_t n = fj_utf8_seq((const unsigned char *)p, (const unsigned char *)end);
            if (!n) {
                fj_fail(ps, p, json_error_invalid_utf8, "invalid UTF-8 byte 0x%x", (unsigned)c);
                return -1;
            }
            p += n;
        }
    }
    ps->p = p + 1;
    if (!escaped) {
        s->ptr = start;
        s->len = (size_t)(p - start);
        return 0;
    }
    if (fj_scratch_reserve(ps, (size_t)(p - start))) {
        fj_fail_oom(ps);
        return -1;
    }
    s->ptr = ps->scratch;
    s->len = fj_decode(ps->scratch, start, p);
    return 0;
}

/* The common case inline: a string of plain ASCII without escapes whose
 * closing quote turns up in 16-byte loads that fit in the input, found
 * without the register set-up of the general scan.  Anything else (an
 * escape, a control or non-ASCII byte, the end of the input close) goes to
 * fj_scan_string_any(), which scans the string again from its start. */
static inline int fj_scan_string(fj_parser *ps, fj_str *s) {
#ifdef __SSE2__
    const char *start = ps->p + 1;
    const char *p = start;
    while (ps->end - p >= 16) {
        unsigned m = fj_special_mask16(p);
        if (m) {
            p += __builtin_ctz(m);
            if (*p != '"')
                break;
            s->ptr = start;
            s->len = (size_t)(p - start);
            s->has_nul = 0;
            ps->p = p + 1;
            return 0;
        }
        p += 16;
    }
#endif
    return fj_scan_string_any(ps, s);
}

/* ---- numbers --------------------------------------------------------- */

static locale_t fj_c_locale;
static pthread_once_t fj_c_locale_once = PTHREAD_ONCE_INIT;

static void fj_c_locale_init(void) {
    fj_c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

static json_t *fj_real(fj_parser *ps, const char *start, const char *stop) {
    char small[64];
    size_t n = (size_t)(stop - start);
    char *text = n < sizeof small ? small : malloc(n + 1);
    if (!text) {
        fj_fail_oom(ps);
        return NULL;
    }
    memcpy(text, start, n);
    text[n] = '\0';
    pthread_once(&fj_c_locale_once, fj_c_locale_init);
    if (!fj_c_locale) {
        if (text != small)
            free(text);
        fj_fail_oom(ps);
        return NULL;
    }
    errno = 0;
    double d = strtod_l(text, NULL, fj_c_locale);
    int overflow = errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL);
    if (text != small)
        free(text);
    if (overflow) {
        fj_fail(ps, stop - 1, json_error_numeric_overflow, "real number overflow");
        return NULL;
    }
    json_t *v = json_real(d);
    if (!v)
        fj_fail_oom(ps);
    return v;
}

static json_t *fj_number(fj_parser *ps) {
    const char *start = ps->p, *p = start, *end = ps->end;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (p == end || !fj_isdigit(*p)) {
        fj_fail(ps, p, p == end ? json_error_premature_end_of_input : json_error_invalid_syntax,
                "invalid number: a digit must follow '-'");
        return NULL;
    }
    const char *digits = p;
    if (*p == '0') {
        p++;
        if (p < end && fj_isdigit(*p)) {
            fj_fail(ps, p, json_error_invalid_syntax, "invalid number: leading zero");
            return NULL;
        }
    } else {
        while (p < end && fj_isdigit(*p))
            p++;
    }
    int fraction_or_exponent = p < end && (*p == '.' || *p == 'e' || *p == 'E');
    if (!fraction_or_exponent && !(ps->flags & JSON_DECODE_INT_AS_REAL)) {
        size_t nd = (size_t)(p - digits);
        uint64_t u = 0;
        if (nd <= 18) { /* 10^18 - 1 cannot overflow */
            for (const char *q = digits; q < p; q++)
                u = u * 10 + (uint64_t)(*q - '0');
        } else {
            uint64_t limit = neg ? (uint64_t)LLONG_MAX + 1 : (uint64_t)LLONG_MAX;
            for (const char *q = digits; q < p; q++) {
                uint64_t d = (uint64_t)(*q - '0');
                if (u > (limit - d) / 10) {
                    fj_fail(ps, p - 1, json_error_numeric_overflow,
                            neg ? "too big negative integer" : "too big integer");
                    return NULL;
                }
                u = u * 10 + d;
            }
        }
        /* u may be 2^63 when negative: negate via u - 1 to stay defined. */
        json_int_t iv = (neg && u) ? -(json_int_t)(u - 1) - 1 : (json_int_t)u;
        fj_end_token(ps, p);
        json_t *v = json_integer(iv);
        if (!v)
            fj_fail_oom(ps);
        return v;
    }
    if (p < end && *p == '.') {
        p++;
        if (p == end || !fj_isdigit(*p)) {
            fj_fail(ps, p, p == end ? json_error_premature_end_of_input : json_error_invalid_syntax,
                    "invalid number: a digit must follow '.'");
            return NULL;
        }
        while (p < end && fj_isdigit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || !fj_isdigit(*p)) {
            fj_fail(ps, p, p == end ? json_error_premature_end_of_input : json_error_invalid_syntax,
                    "invalid number: the exponent needs a digit");
            return NULL;
        }
        while (p < end && fj_isdigit(*p))
            p++;
    }
    json_t *v = fj_real(ps, start, p);
    if (v)
        fj_end_token(ps, p);
    return v;
}

/* ---- values ---------------------------------------------------------- */

static json_t *fj_value(fj_parser *ps);

/* "true", "false", "null": jansson reads a whole run of letters, so the word
 * must not be followed by another letter. */
static json_t *fj_literal(fj_parser *ps, const char *word, size_t n, json_t *v) {
    const char *p = ps->p;
    const char *e = p;
    while (e < ps->end && fj_isalpha(*e))
        e++;
    if ((size_t)(e - p) != n || memcmp(p, word, n) != 0) {
        fj_fail(ps, p, e == ps->end ? json_error_premature_end_of_input : json_error_invalid_syntax,
                "invalid token '%.*s'", (int)((e - p) > 20 ? 20 : (e - p)), p);
        return NULL;
    }
    fj_end_token(ps, e);
    return v;
}

static json_t *fj_string_value(fj_parser *ps) {
    fj_str s;
    if (fj_scan_string(ps, &s))
        return NULL;
    if (s.has_nul && !(ps->flags & JSON_ALLOW_NUL)) {
        fj_fail(ps, ps->p - 1, json_error_null_character,
                "\\u0000 is not allowed without JSON_ALLOW_NUL");
        return NULL;
    }
    json_t *v = json_stringn_nocheck(s.ptr, s.len);
    if (!v)
        fj_fail_oom(ps);
    return v;
}

static json_t *fj_object(fj_parser *ps) {
    const char *end = ps->end;
    json_t *obj = json_object();
    if (!obj) {
        fj_fail_oom(ps);
        return NULL;
    }
    size_t members = 0;
    const char *p = fj_skip_ws(ps->p + 1, end);
    if (p < end && *p == '}') {
        ps->p = p + 1;
        return obj;
    }
    for (;;) {
        if (p == end || *p != '"') {
            fj_fail(ps, p, p == end ? json_error_premature_end_of_input : json_error_invalid_syntax,
                    "string or '}' expected");
            goto error;
        }
        ps->p = p;
        fj_str k;
        if (fj_scan_string(ps, &k))
            goto error;
        if (k.has_nul) {
            fj_fail(ps, ps->p - 1, json_error_null_byte_in_key,
                    "NUL byte in object key not supported");
            goto error;
        }
        /* Scratch is reused by the value, so an escaped key needs its own copy. */
        char *owned = NULL;
        if (k.ptr == ps->scratch) {
            owned = malloc(k.len ? k.len : 1);
            if (!owned) {
                fj_fail_oom(ps);
                goto error;
            }
            memcpy(owned, k.ptr, k.len);
            k.ptr = owned;
        }
        /* A duplicate name is found by the insert itself (it replaces, so the
         * size stays) instead of a lookup before the value: that lookup hashed
         * every member name twice and cost ~5 % of a drain's instructions.
         * Which error a rejected document reports is json_loadb's (see
         * fj_parse), so the order in which this one finds them is free.
         * `members` counts the names inserted so far. */
        const char *key_end = ps->p;
        p = fj_skip_ws(ps->p, end);
        if (p == end || *p != ':') {
            fj_fail(ps, p, p == end ? json_error_premature_end_of_input : json_error_invalid_syntax,
                    "':' expected");
            free(owned);
            goto error;
        }
        ps->p = fj_skip_ws(p + 1, end);
        json_t *v = fj_value(ps);
        if (!v) {
            free(owned);
            goto error;
        }
        int rc = json_object_setn_new_nocheck(obj, k.ptr, k.len, v); /* steals v */
        bool dup = !rc && (ps->flags & JSON_REJECT_DUPLICATES) && json_object_size(obj) == members;
        if (dup)
            fj_fail(ps, key_end - 1, json_error_duplicate_key, "duplicate object key '%.*s'",
                    (int)(k.len > 40 ? 40 : k.len), k.ptr);
        else if (rc)
            fj_fail_oom(ps);
        free(owned);
        if (rc || dup)
            goto error;
        members++;
        p = fj_after_value(ps);
        if (p < end && *p == ',') {
            p = fj_skip_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}') {
            ps->p = p + 1;
            return obj;
        }
        fj_fail(ps, p, p == end ? json_error_premature_end_of_input : json_error_invalid_syntax,
                "',' or '}' expected");
        goto error;
    }
error:
    json_decref(obj);
    return NULL;
}

static json_t *fj_array(fj_parser *ps) {
    const char *end = ps->end;
    json_t *arr = json_array();
    if (!arr) {
        fj_fail_oom(ps);
        return NULL;
    }
    const char *p = fj_skip_ws(ps->p + 1, end);
    if (p < end && *p == ']') {
        ps->p = p + 1;
        return arr;
    }
    for (;;) {
        ps->p = p;
        json_t *v = fj_value(ps);
        if (!v)
            goto error;
        if (json_array_append_new(arr, v)) {
            fj_fail_oom(ps);
            goto error;
        }
        p = fj_after_value(ps);
        if (p < end && *p == ',') {
            p = fj_skip_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == ']') {
            ps->p = p + 1;
            return arr;
        }
        fj_fail(ps, p, p == end ? json_error_premature_end_of_input : json_error_invalid_syntax,
                "',' or ']' expected");
        goto error;
    }
error:
    json_decref(arr);
    return NULL;
}

/* ps->p is at the first byte of the value (whitespace already skipped). */
static json_t *fj_value(fj_parser *ps) {
    const char *p = ps->p;
    if (++ps->depth > JSON_PARSER_MAX_DEPTH) {
        fj_fail(ps, p, json_error_stack_overflow, "maximum parsing depth reached");
        return NULL;
    }
    if (p == ps->end) {
        fj_fail(ps, p, json_error_premature_end_of_input, "premature end of input");
        return NULL;
    }
    json_t *v;
    switch (*p) {
    case '"': v = fj_string_value(ps); break;
    case '{': v = fj_object(ps); break;
    case '[': v = fj_array(ps); break;
    case 't': v = fj_literal(ps, "true", 4, json_true()); break;
    case 'f': v = fj_literal(ps, "false", 5, json_false()); break;
    case 'n': v = fj_literal(ps, "null", 4, json_null()); break;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        v = fj_number(ps);
        break;
    default:
        fj_fail(ps, p, json_error_invalid_syntax, "unexpected byte 0x%02x",
                (unsigned)(unsigned char)*p);
        return NULL;
    }
    if (v)
        ps->depth--;
    return v;
}

/*
 * A rejection is reported in jansson's words.  Its error codes, texts and
 * positions follow its tokenizer, which reads a whole token before the
 * parser looks at it ("-" at the end is an invalid token, not a premature
 * end; a broken string after a complete document is that string's error,
 * not "end of file expected"): tracking that error by error here would put
 * checks on the accepted path that it does not need.  Rejections are the
 * cold path (a dead letter, an invalid NDJSON line), so they pay for one
 * json_loadb() of the same bytes instead.  Should jansson accept what was
 * rejected here — a fastjson bug, which the unit tests and the fuzz target
 * look for — its tree is dropped and fastjson's own report stays, so the
 * disagreement shows instead of being papered over.
 */
static void fj_report_as_jansson(const char *buf, size_t len, size_t flags, json_error_t *err) {
    json_error_t jerr;
    json_t *j = json_loadb(buf, len, flags, &jerr);
    if (j) {
        json_decref(j);
        return;
    }
    *err = jerr;
}

json_t *fj_parse(const char *buf, size_t len, size_t flags, json_error_t *err) {
    if (err) {
        err->text[0] = '\0';
        err->text[JSON_ERROR_TEXT_LENGTH - 1] = '\0';
        err->line = -1;
        err->column = -1;
        err->position = 0;
        snprintf(err->source, sizeof err->source, "%s", "<buffer>");
    }
    fj_parser ps;
    ps.begin = buf;
    ps.end = buf ? buf + len : NULL; /* NULL + len is undefined; refused below */
    ps.flags = flags;
    ps.depth = 0;
    ps.err = err;
    ps.droppable_nul = NULL;
    ps.scratch = ps.scratch_inline;
    ps.scratch_cap = sizeof ps.scratch_inline;
    if (!buf) {
        if (err) {
            snprintf(err->text, JSON_ERROR_TEXT_LENGTH - 1, "wrong arguments");
            err->text[JSON_ERROR_TEXT_LENGTH - 1] = (char)json_error_invalid_argument;
        }
        return NULL;
    }
    ps.p = fj_skip_ws(buf, ps.end);
    json_t *v = NULL;
    if (!(flags & JSON_DECODE_ANY) && (ps.p == ps.end || (*ps.p != '{' && *ps.p != '['))) {
        fj_fail(&ps, ps.p,
                ps.p == ps.end ? json_error_premature_end_of_input : json_error_invalid_syntax,
                "'[' or '{' expected");
        goto out;
    }
    v = fj_value(&ps);
    if (!v)
        goto out;
    if (!(flags & JSON_DISABLE_EOF_CHECK)) {
        const char *rest = fj_after_value(&ps);
        if (rest != ps.end) {
            fj_fail(&ps, rest, json_error_end_of_input_expected, "end of file expected");
            json_decref(v);
            v = NULL;
            goto out;
        }
        ps.p = rest;
    }
    if (err)
        err->position = (int)(ps.p - buf);
out:
    if (ps.scratch != ps.scratch_inline)
        free(ps.scratch);
    if (!v && err)
        fj_report_as_jansson(buf, len, flags, err);
    return v;
}
