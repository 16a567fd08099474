/*
 * jsontext — the JSON text work of the publish paths, without jansson's
 * per-character callbacks: a compact writer for json_t values (same bytes
 * as json_dumps(v, JSON_COMPACT)) and a validating scanner for events that
 * arrive as text.
 *
 * Neither is a general JSON library.  Both give up (-1) on anything
 * unusual, and the callers then use jansson, which decides: so the fast
 * paths can only ever agree with the slow one, never overrule it.
 */
#include <stdint.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

enum { JT_MAX_DEPTH = 256, JT_MAX_ATTR = 255 };

int evbus__buf_grow(evbus__buf_t *b, size_t n)
{
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Length of the UTF-8 sequence at s (at most n bytes), 0 when invalid:
 * the same rules as jansson (no overlong forms, no surrogates, at most
 * U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t k;
    unsigned v;
    if (c >= 0xC2 && c <= 0xDF) {
        k = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        k = 3;
        v = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    if (k > n)
        return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if ((k == 3 && v < 0x800) || (k == 4 && v < 0x10000) || v > 0x10FFFF ||
        (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    return k;
}

/* 1 for the bytes a string cannot carry as they are: controls, '"', '\\'
 * and non-ASCII (checked as UTF-8). */
static const unsigned char jt_special[256] = {
    ['\0'] = 1, [1] = 1, [2] = 1, [3] = 1, [4] = 1, [5] = 1, [6] = 1, [7] = 1,
    [8] = 1, [9] = 1, [10] = 1, [11] = 1, [12] = 1, [13] = 1, [14] = 1, [15] = 1,
    [16] = 1, [17] = 1, [18] = 1, [19] = 1, [20] = 1, [21] = 1, [22] = 1, [23] = 1,
    [24] = 1, [25] = 1, [26] = 1, [27] = 1, [28] = 1, [29] = 1, [30] = 1, [31] = 1,
    ['"'] = 1, ['\\'] = 1,
    [0x80 ... 0xFF] = 1,
};

/* Number of leading bytes of s[0..n) that are not special.  Sixteen at a
 * time with SSE2 (a signed compare below 0x20 flags controls and every
 * byte >= 0x80 at once), else eight at a time with the classic "has a
 * zero byte" bit trick on x ^ c, whose lowest flagged byte is exact. */
static size_t plain_prefix(const unsigned char *s, size_t n)
{
    size_t i = 0;
#ifdef __SSE2__
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'),
                  space = _mm_set1_epi8(0x20);
    for (; i + 16 <= n; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),
                                 _mm_cmplt_epi8(x, space));
        unsigned bits = (unsigned)_mm_movemask_epi8(m);
        if (bits)
            return i + (size_t)__builtin_ctz(bits);
    }
#else
    const uint64_t lo = 0x0101010101010101u, hi = 0x8080808080808080u;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        uint64_t q = x ^ (lo * '"'), bs = x ^ (lo * '\\');
        uint64_t t = ((x - lo * 0x20) & ~x) | ((q - lo) & ~q) | ((bs - lo) & ~bs) | x;
        t &= hi;
        if (t)
            return i + (size_t)__builtin_ctzll(t) / 8;
    }
#endif
    while (i < n && !jt_special[s[i]])
        i++;
    return i;
}

int evbus__json_write_string(evbus__buf_t *b, const char *s, size_t n)
{
    /* Worst case: every byte becomes a six-byte \u00XX escape. */
    if (evbus__buf_reserve(b, 6 * n + 2) != 0)
        return -1;
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *u = (const unsigned char *)s;
    char *o = b->p + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n;) {
        size_t run = plain_prefix(u + i, n - i);
        memcpy(o, u + i, run);
        o += run;
        i += run;
        if (i == n)
            break;
        unsigned char ch = u[i];
        if (ch >= 0x80) {
            size_t k = utf8_seq(u + i, n - i);
            if (k == 0)
                return -1;
            memcpy(o, u + i, k);
            o += k;
            i += k;
            continue;
        }
        *o++ = '\\';
        switch (ch) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            memcpy(o, "u00", 3);
            o[3] = hex[ch >> 4];
            o[4] = hex[ch & 15];
            o += 5;
        }
        i++;
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
    return 0;
}

static int put(evbus__buf_t *b, const char *s, size_t n)
{
    if (evbus__buf_reserve(b, n) != 0)
        return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

static int write_integer(evbus__buf_t *b, json_int_t v)
{
    char tmp[24], *e = tmp + sizeof tmp, *p = e;
    unsigned long long m = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + m % 10);
        m /= 10;
    } while (m);
    if (v < 0)
        *--p = '-';
    return put(b, p, (size_t)(e - p));
}

/* Reals are rare in events and jansson's formatting has its own rules
 * (precision 17, ".0" added, exponent trimmed): it formats them. */
static int write_real(evbus__buf_t *b, const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s)
        return -1;
    int rc = put(b, s, strlen(s));
    free(s);
    return rc;
}

static int write_value(evbus__buf_t *b, const json_t *v, int depth)
{
    if (depth > JT_MAX_DEPTH)
        return -1;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (put(b, "{", 1) != 0)
            return -1;
        bool first = true;
        for (void *it = json_object_iter((json_t *)v); it;
             it = json_object_iter_next((json_t *)v, it)) {
            if (!first && put(b, ",", 1) != 0)
                return -1;
            first = false;
            if (evbus__json_write_string(b, json_object_iter_key(it),
                                         json_object_iter_key_len(it)) != 0 ||
                put(b, ":", 1) != 0 || write_value(b, json_object_iter_value(it), depth + 1) != 0)
                return -1;
        }
        return put(b, "}", 1);
    }
    case JSON_ARRAY: {
        if (put(b, "[", 1) != 0)
            return -1;
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n; i++) {
            if ((i && put(b, ",", 1) != 0) || write_value(b, json_array_get(v, i), depth + 1) != 0)
                return -1;
        }
        return put(b, "]", 1);
    }
    case JSON_STRING:
        return evbus__json_write_string(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return write_integer(b, json_integer_value(v));
    case JSON_REAL:
        return write_real(b, v);
    case JSON_TRUE:
        return put(b, "true", 4);
    case JSON_FALSE:
        return put(b, "false", 5);
    case JSON_NULL:
        return put(b, "null", 4);
    }
    return -1;
}

int evbus__json_write(evbus__buf_t *b, const json_t *v)
{
    size_t mark = b->len;
    if (!v || write_value(b, v, 0) != 0) {
        b->len = mark;
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ scanner */

typedef struct scan {
    const unsigned char *p, *end;
} scan_t;

static void skip_ws(scan_t *s)
{
    /* compact JSON has no whitespace: one test for the usual case */
    while (s->p < s->end && *s->p <= ' ' &&
           (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hex4(const unsigned char *p, unsigned *v)
{
    unsigned r = 0;
    for (int i = 0; i < 4; i++) {
        unsigned ch = p[i], d;
        if (ch >= '0' && ch <= '9')
            d = ch - '0';
        else if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f')
            d = (ch | 0x20) - 'a' + 10;
        else
            return -1;
        r = r << 4 | d;
    }
    *v = r;
    return 0;
}

/* A string at s->p (the opening quote).  Sets *esc when it holds a
 * backslash.  Rejects what jansson rejects (controls, bad UTF-8, bad
 * escapes, unpaired surrogates) and \u0000, which jansson accepts with
 * JSON_ALLOW_NUL: such events take the slow path. */
static inline __attribute__((always_inline)) int scan_string(scan_t *s, bool *esc)
{
    const unsigned char *p = s->p + 1, *end = s->end;
    *esc = false;
    for (;;) {
        p += plain_prefix(p, (size_t)(end - p));
        if (p >= end)
            return -1;
        unsigned char ch = *p;
        if (ch == '"') {
            s->p = p + 1;
            return 0;
        }
        if (ch >= 0x80) {
            size_t k = utf8_seq(p, (size_t)(end - p));
            if (k == 0)
                return -1;
            p += k;
            continue;
        }
        if (ch != '\\' || p + 1 >= end)
            return -1; /* a control character */
        *esc = true;
        ch = p[1];
        if (ch && strchr("\"\\/bfnrt", ch)) {
            p += 2;
            continue;
        }
        unsigned v, lo;
        if (ch != 'u' || end - p < 6 || hex4(p + 2, &v) != 0 || v == 0 ||
            (v >= 0xDC00 && v <= 0xDFFF))
            return -1;
        p += 6;
        if (v >= 0xD800 && v <= 0xDBFF) {
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) != 0 ||
                lo < 0xDC00 || lo > 0xDFFF)
                return -1;
            p += 6;
        }
    }
}

static bool is_digit(unsigned char ch)
{
    return ch >= '0' && ch <= '9';
}

/* A number: JSON's grammar, but only forms jansson surely accepts
 * (integers of at most 18 digits; reals of at most 32 characters with an
 * exponent of at most 2 digits, which cannot overflow a double). */
static int scan_number(scan_t *s)
{
    const unsigned char *p = s->p, *end = s->end, *start = p;
    if (p < end && *p == '-')
        p++;
    if (p >= end || !is_digit(*p))
        return -1;
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p))
            return -1;
    } else {
        while (p < end && is_digit(*p))
            p++;
    }
    bool real = false;
    if (p < end && *p == '.') {
        real = true;
        p++;
        if (p >= end || !is_digit(*p))
            return -1;
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        real = true;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        const unsigned char *e0 = p;
        while (p < end && is_digit(*p))
            p++;
        if (p == e0 || p - e0 > 2)
            return -1;
    }
    if (p - start > (real ? 32 : 18 + (*start == '-')))
        return -1;
    s->p = p;
    return 0;
}

static int scan_value(scan_t *s, int depth);

static int scan_container(scan_t *s, int depth, bool object)
{
    if (depth > JT_MAX_DEPTH)
        return -1;
    unsigned char close = object ? '}' : ']';
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return 0;
    }
    /* member names seen in this object: a name twice is refused by the
     * slow path (JSON_REJECT_DUPLICATES), so the fast path gives up on it;
     * escaped names and big objects too, which it cannot compare cheaply */
    const unsigned char *names[16];
    size_t name_len[16], n_names = 0;
    for (;;) {
        if (object) {
            bool esc;
            const unsigned char *key = s->p + 1;
            if (s->p >= s->end || *s->p != '"' || scan_string(s, &esc) != 0 || esc ||
                n_names == 16)
                return -1;
            size_t klen = (size_t)(s->p - key - 1);
            for (size_t i = 0; i < n_names; i++)
                /* cppcheck-suppress uninitvar ; only the n_names entries already set are read */
                if (name_len[i] == klen && memcmp(names[i], key, klen) == 0)
                    return -1;
            names[n_names] = key;
            name_len[n_names++] = klen;
            skip_ws(s);
            if (s->p >= s->end || *s->p != ':')
                return -1;
            s->p++;
            skip_ws(s);
        }
        if (scan_value(s, depth + 1) != 0)
            return -1;
        skip_ws(s);
        if (s->p >= s->end)
            return -1;
        if (*s->p == close) {
            s->p++;
            return 0;
        }
        if (*s->p != ',')
            return -1;
        s->p++;
        skip_ws(s);
    }
}

static int scan_literal(scan_t *s, const char *word, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return -1;
    s->p += n;
    return 0;
}

static int scan_value(scan_t *s, int depth)
{
    if (s->p >= s->end)
        return -1;
    bool esc;
    switch (*s->p) {
    case '{': return scan_container(s, depth, true);
    case '[': return scan_container(s, depth, false);
    case '"': return scan_string(s, &esc);
    case 't': return scan_literal(s, "true", 4);
    case 'f': return scan_literal(s, "false", 5);
    case 'n': return scan_literal(s, "null", 4);
    default: return scan_number(s);
    }
}

int evbus__attr_index(const char *k, size_t n)
{
#define ATTR_IS(name) (memcmp(k, name, sizeof name - 1) == 0)
    switch (n) {
    case 2: return ATTR_IS("id") ? EVBUS__A_ID : -1;
    case 4: return ATTR_IS("type") ? EVBUS__A_TYPE : ATTR_IS("time") ? EVBUS__A_TIME : -1;
    case 6: return ATTR_IS("source") ? EVBUS__A_SOURCE : -1;
    case 8: return ATTR_IS("tenantid") ? EVBUS__A_TENANTID : -1;
    case 11: return ATTR_IS("specversion") ? EVBUS__A_SPECVERSION : -1;
    case 12: return ATTR_IS("partitionkey") ? EVBUS__A_PARTITIONKEY : -1;
    case 13: return ATTR_IS("correlationid") ? EVBUS__A_CORRELATIONID : -1;
    default: return -1;
    }
#undef ATTR_IS
}

int evbus__scan_event(const char *text, size_t len, evbus__scan_t *out)
{
    memset(out, 0, sizeof *out);
    scan_t s = {(const unsigned char *)text, (const unsigned char *)text + len};
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{')
        return -1;
    out->open = (const char *)s.p;
    s.p++;
    skip_ws(&s);
    if (s.p < s.end && *s.p == '}')
        return -1; /* no type: the slow path says so */
    const unsigned char *names[32];
    size_t name_len[32], n_names = 0;
    for (;;) {
        bool esc;
        const unsigned char *key = s.p + 1;
        if (s.p >= s.end || *s.p != '"' || scan_string(&s, &esc) != 0)
            return -1;
        size_t klen = (size_t)(s.p - key - 1);
        if (esc || n_names == 32)
            return -1; /* could spell an attribute name; or too many to compare */
        /* a member twice: the slow path refuses it */
        for (size_t i = 0; i < n_names; i++)
            if (name_len[i] == klen && memcmp(names[i], key, klen) == 0)
                return -1;
        names[n_names] = key;
        name_len[n_names++] = klen;
        skip_ws(&s);
        if (s.p >= s.end || *s.p != ':')
            return -1;
        s.p++;
        skip_ws(&s);
        int a = evbus__attr_index((const char *)key, klen);
        if (a >= 0) {
            const unsigned char *v = s.p + 1;
            if (out->val[a] || s.p >= s.end || *s.p != '"' || scan_string(&s, &esc) != 0 ||
                esc || (size_t)(s.p - v - 1) > JT_MAX_ATTR)
                return -1;
            out->val[a] = (const char *)v;
            out->len[a] = (size_t)(s.p - v - 1);
        } else if (scan_value(&s, 1) != 0) {
            return -1;
        }
        skip_ws(&s);
        if (s.p >= s.end)
            return -1;
        if (*s.p == '}')
            break;
        if (*s.p != ',')
            return -1;
        s.p++;
        skip_ws(&s);
    }
    s.p++;
    out->close = (const char *)s.p;
    skip_ws(&s);
    return s.p == s.end ? 0 : -1;
}
