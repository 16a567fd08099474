/* js_idna.c - host names for the "hostname" and "idn-hostname" formats, with
 * the IDNA2008 checks of their internationalized labels.
 *
 * A name is labels of at most 63 octets (253 in all, in ASCII form).  An ASCII
 * label is LDH; one with "--" in positions 3-4 must be an A-label ("xn--")
 * whose punycode (RFC 3492) decodes to a valid U-label.  "idn-hostname" also
 * takes U-labels directly (their A-label form must fit in 63 octets) and the
 * U+3002, U+FF0E, U+FF61 separators.  A U-label must obey the hyphen and
 * leading-combining-mark rules of RFC 5891 section 4.2.3, the exceptions of
 * RFC 5892 section 2.6, its CONTEXTO (A.3 to A.9) and CONTEXTJ (A.1, A.2)
 * rules, and otherwise the LetterDigits categories of section 2.1; a name with
 * a right-to-left label must obey the Bidi rule of RFC 5893 in every label.
 * Unicode properties come from PCRE2 (\p{..} on the UTF-8 of the label).
 *
 * It deliberately does not check NFC, the Unstable/IgnorableProperties
 * exclusions or unassigned code points, and the Joining_Type table behind the
 * ZERO WIDTH NON-JOINER rule is approximated: letters of the cursive-joining
 * scripts join on both sides, except the Arabic letters listed below as
 * right-joining or non-joining.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "jsonschema/js_internal.h"

/* RFC 3492 section 5 parameters */
enum {
    PC_BASE = 36,
    PC_TMIN = 1,
    PC_TMAX = 26,
    PC_SKEW = 38,
    PC_DAMP = 700,
    PC_INITIAL_BIAS = 72,
    PC_INITIAL_N = 128,
};

/* a label is at most 63 octets, so it never decodes to more code points */
#define IDNA_MAX_CPS 63
#define PC_MAXINT 0x7fffffffu

static uint32_t pc_adapt(uint32_t delta, uint32_t numpoints, int first)
{
    delta = first ? delta / PC_DAMP : delta / 2;
    delta += delta / numpoints;
    uint32_t k = 0;
    while (delta > ((PC_BASE - PC_TMIN) * PC_TMAX) / 2) {
        delta /= PC_BASE - PC_TMIN;
        k += PC_BASE;
    }
    return k + (PC_BASE - PC_TMIN + 1) * delta / (delta + PC_SKEW);
}

static int pc_digit(char c)
{
    if (c >= 'a' && c <= 'z')
        return c - 'a';
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= '0' && c <= '9')
        return c - '0' + 26;
    return -1;
}

/* RFC 3492 section 6.2.  Returns the number of code points written to out,
 * or -1 when s is not valid punycode (bad digit, truncated delta, overflow,
 * a decoded basic or out-of-range code point, too long). */
static int pc_decode(const char *s, size_t n, uint32_t *out)
{
    size_t b = n;
    while (b > 0 && s[b - 1] != '-')
        b--;
    /* with no basic code points there is no delimiter, so a leading '-' is
     * read as a (bad) digit */
    size_t nbasic = b ? b - 1 : 0, in = nbasic ? b : 0;
    if (nbasic > IDNA_MAX_CPS)
        return -1;
    uint32_t len = 0;
    for (size_t j = 0; j < nbasic; j++) {
        if ((unsigned char)s[j] >= 0x80)
            return -1;
        out[len++] = (unsigned char)s[j];
    }
    uint32_t cp = PC_INITIAL_N, i = 0, bias = PC_INITIAL_BIAS;
    while (in < n) {
        uint32_t oldi = i, w = 1;
        for (uint32_t k = PC_BASE;; k += PC_BASE) {
            if (in >= n)
                return -1;
            int d = pc_digit(s[in++]);
            if (d < 0 || (uint32_t)d > (PC_MAXINT - i) / w)
                return -1;
            i += (uint32_t)d * w;
            uint32_t t = k <= bias ? PC_TMIN : k >= bias + PC_TMAX ? PC_TMAX : k - bias;
            if ((uint32_t)d < t)
                break;
            if (w > PC_MAXINT / (PC_BASE - t))
                return -1;
            w *= PC_BASE - t;
        }
        bias = pc_adapt(i - oldi, len + 1, oldi == 0);
        if (i / (len + 1) > PC_MAXINT - cp)
            return -1;
        cp += i / (len + 1);
        i %= len + 1;
        if (cp < 0x80 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || len >= IDNA_MAX_CPS)
            return -1;
        memmove(out + i + 1, out + i, (len - i) * sizeof *out);
        out[i++] = cp;
        len++;
    }
    return (int)len;
}

/* ---------- Unicode properties through PCRE2 ------------------------------------ */

enum {
    UP_MARK,         /* General_Category M */
    UP_LETTER_DIGIT, /* RFC 5892 2.1 LetterDigits */
    UP_GREEK,
    UP_HEBREW,
    UP_KANA_HAN,
    UP_TRANSPARENT, /* Joining_Type T, as Mn / Me / Cf */
    UP_JOINING,     /* a letter of a cursive-joining script */
    /* Bidi_Class values RFC 5893 names, tried in this order */
    UP_BIDI_L,
    UP_BIDI_R,
    UP_BIDI_AL,
    UP_BIDI_AN,
    UP_BIDI_EN,
    UP_BIDI_ES,
    UP_BIDI_CS,
    UP_BIDI_ET,
    UP_BIDI_ON,
    UP_BIDI_BN,
    UP_BIDI_NSM,
    UP_COUNT,
};

/* Script (sc:), not Script_Extensions, as RFC 5892 asks for Script(cp). */
static const char *const up_patterns[UP_COUNT] = {
    [UP_MARK] = "\\p{M}",
    [UP_LETTER_DIGIT] = "[\\p{Ll}\\p{Lo}\\p{Lm}\\p{Mn}\\p{Mc}\\p{Nd}]",
    [UP_GREEK] = "\\p{sc:Greek}",
    [UP_HEBREW] = "\\p{sc:Hebrew}",
    [UP_KANA_HAN] = "[\\p{sc:Hiragana}\\p{sc:Katakana}\\p{sc:Han}]",
    [UP_TRANSPARENT] = "[\\p{Mn}\\p{Me}\\p{Cf}]",
    [UP_JOINING] = "(?=\\p{L})[\\p{sc:Arabic}\\p{sc:Syriac}\\p{sc:Nko}\\p{sc:Mongolian}"
                   "\\p{sc:Mandaic}\\p{sc:Manichaean}\\p{sc:Psalter_Pahlavi}\\p{sc:Adlam}"
                   "\\p{sc:Hanifi_Rohingya}\\p{sc:Sogdian}\\p{sc:Phags_Pa}]",
    [UP_BIDI_L] = "\\p{bc:L}",
    [UP_BIDI_R] = "\\p{bc:R}",
    [UP_BIDI_AL] = "\\p{bc:AL}",
    [UP_BIDI_AN] = "\\p{bc:AN}",
    [UP_BIDI_EN] = "\\p{bc:EN}",
    [UP_BIDI_ES] = "\\p{bc:ES}",
    [UP_BIDI_CS] = "\\p{bc:CS}",
    [UP_BIDI_ET] = "\\p{bc:ET}",
    [UP_BIDI_ON] = "\\p{bc:ON}",
    [UP_BIDI_BN] = "\\p{bc:BN}",
    [UP_BIDI_NSM] = "\\p{bc:NSM}",
};

/* compiled once, immutable afterwards, shared by every thread */
static pcre2_code *up_codes[UP_COUNT];
static int up_ready;
static pthread_once_t up_once = PTHREAD_ONCE_INIT;

static void up_init(void)
{
    int ec;
    PCRE2_SIZE off;
    for (int p = 0; p < UP_COUNT; p++) {
        up_codes[p] = pcre2_compile((PCRE2_SPTR)up_patterns[p], PCRE2_ZERO_TERMINATED,
                                    PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &ec, &off, NULL);
        if (!up_codes[p])
            return;
    }
    up_ready = 1;
}

/* The decoded label, as code points and as UTF-8 with each code point's
 * offset, so a property test is one anchored match at that offset. */
typedef struct ulabel {
    uint32_t cp[IDNA_MAX_CPS];
    size_t off[IDNA_MAX_CPS];
    int n;
    unsigned char utf8[IDNA_MAX_CPS * 4];
    size_t utf8_len;
    pcre2_match_data *md;
} ulabel_t;

static void ul_encode(ulabel_t *u)
{
    unsigned char *o = u->utf8;
    for (int i = 0; i < u->n; i++) {
        uint32_t c = u->cp[i];
        u->off[i] = (size_t)(o - u->utf8);
        if (c < 0x80) {
            *o++ = (unsigned char)c;
        } else if (c < 0x800) {
            *o++ = (unsigned char)(0xc0 | (c >> 6));
            *o++ = (unsigned char)(0x80 | (c & 0x3f));
        } else if (c < 0x10000) {
            *o++ = (unsigned char)(0xe0 | (c >> 12));
            *o++ = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
            *o++ = (unsigned char)(0x80 | (c & 0x3f));
        } else {
            *o++ = (unsigned char)(0xf0 | (c >> 18));
            *o++ = (unsigned char)(0x80 | ((c >> 12) & 0x3f));
            *o++ = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
            *o++ = (unsigned char)(0x80 | (c & 0x3f));
        }
    }
    u->utf8_len = (size_t)(o - u->utf8);
}

static int ul_has(const ulabel_t *u, int i, int prop)
{
    return pcre2_match(up_codes[prop], u->utf8, u->utf8_len, u->off[i], PCRE2_NO_UTF_CHECK, u->md,
                       NULL) >= 0;
}

/* ---------- RFC 5892 rules ------------------------------------------------------ */

static int in_list(uint32_t c, const uint32_t *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] == c)
            return 1;
    return 0;
}

/* RFC 5892 2.6 */
static const uint32_t exc_pvalid[] = {0x00df, 0x03c2, 0x06fd, 0x06fe, 0x0f0b, 0x3007};
static const uint32_t exc_disallowed[] = {0x0640, 0x07fa, 0x302e, 0x302f, 0x3031, 0x3032,
                                          0x3033, 0x3034, 0x3035, 0x303b};

/* Canonical_Combining_Class 9 (Virama) */
static const uint32_t viramas[] = {
    0x094d,  0x09cd,  0x0a4d,  0x0acd,  0x0b4d,  0x0bcd,  0x0c4d,  0x0ccd,  0x0d3b,  0x0d3c,
    0x0d4d,  0x0dca,  0x0e3a,  0x0eba,  0x0f84,  0x1039,  0x103a,  0x1714,  0x1715,  0x1734,
    0x17d2,  0x1a60,  0x1b44,  0x1baa,  0x1bab,  0x1bf2,  0x1bf3,  0x2d7f,  0xa806,  0xa82c,
    0xa8c4,  0xa953,  0xa9c0,  0xaaf6,  0xabed,  0x10a3f, 0x11046, 0x11070, 0x1107f, 0x110b9,
    0x11133, 0x11134, 0x111c0, 0x11235, 0x112ea, 0x1134d, 0x11442, 0x114c2, 0x115bf, 0x1163f,
    0x116b6, 0x1172b, 0x11839, 0x1193d, 0x1193e, 0x119e0, 0x11a34, 0x11a47, 0x11a99, 0x11c3f,
    0x11d44, 0x11d45, 0x11d97,
};

/* Arabic letters that do not join to the following letter: Joining_Type R
 * (and U for HAMZA / HIGH HAMZA), as ranges */
static const uint32_t arabic_no_left_join[][2] = {
    {0x0621, 0x0625}, {0x0627, 0x0627}, {0x0629, 0x0629}, {0x062f, 0x0632}, {0x0648, 0x0648},
    {0x0671, 0x0677}, {0x0688, 0x0699}, {0x06c0, 0x06c0}, {0x06c3, 0x06cb}, {0x06cd, 0x06cd},
    {0x06cf, 0x06cf}, {0x06d2, 0x06d3}, {0x06d5, 0x06d5}, {0x06ee, 0x06ef}, {0x0759, 0x075b},
    {0x076b, 0x076c}, {0x0771, 0x0771}, {0x0773, 0x0774}, {0x0778, 0x0779},
};

static int arabic_joins_left(uint32_t c)
{
    for (size_t i = 0; i < sizeof arabic_no_left_join / sizeof arabic_no_left_join[0]; i++)
        if (c >= arabic_no_left_join[i][0] && c <= arabic_no_left_join[i][1])
            return 0;
    return 1;
}

/* RFC 5892 A.1: (Joining_Type:{L,D})(Joining_Type:T)*\u200C
 * (Joining_Type:T)*(Joining_Type:{R,D}) */
static int zwnj_between_joiners(const ulabel_t *u, int i)
{
    int b = i - 1, a = i + 1;
    while (b >= 0 && ul_has(u, b, UP_TRANSPARENT))
        b--;
    while (a < u->n && ul_has(u, a, UP_TRANSPARENT))
        a++;
    if (b < 0 || a >= u->n)
        return 0;
    /* HAMZA (U+0621) and HIGH HAMZA (U+0674) join on neither side */
    return ul_has(u, b, UP_JOINING) && arabic_joins_left(u->cp[b]) && ul_has(u, a, UP_JOINING) &&
           u->cp[a] != 0x0621 && u->cp[a] != 0x0674;
}

static int label_has_range(const ulabel_t *u, uint32_t lo, uint32_t hi)
{
    for (int j = 0; j < u->n; j++)
        if (u->cp[j] >= lo && u->cp[j] <= hi)
            return 1;
    return 0;
}

/* the rule for code point i that is not ASCII; 1 = allowed */
static int cp_allowed(const ulabel_t *u, int i)
{
    uint32_t c = u->cp[i];
    int n = u->n;
    if (in_list(c, exc_disallowed, sizeof exc_disallowed / sizeof exc_disallowed[0]))
        return 0;
    if (in_list(c, exc_pvalid, sizeof exc_pvalid / sizeof exc_pvalid[0]))
        return 1;
    switch (c) {
    case 0x00b7: /* MIDDLE DOT: only in "l·l" (Catalan) */
        return i > 0 && u->cp[i - 1] == 'l' && i + 1 < n && u->cp[i + 1] == 'l';
    case 0x0375: /* GREEK LOWER NUMERAL SIGN: followed by Greek */
        return i + 1 < n && ul_has(u, i + 1, UP_GREEK);
    case 0x05f3: /* HEBREW PUNCTUATION GERESH / GERSHAYIM: preceded by Hebrew */
    case 0x05f4:
        return i > 0 && ul_has(u, i - 1, UP_HEBREW);
    case 0x30fb: /* KATAKANA MIDDLE DOT: with some Hiragana, Katakana or Han */
        for (int j = 0; j < n; j++)
            if (u->cp[j] != 0x30fb && ul_has(u, j, UP_KANA_HAN))
                return 1;
        return 0;
    case 0x200d: /* ZERO WIDTH JOINER: after a virama */
        return i > 0 && in_list(u->cp[i - 1], viramas, sizeof viramas / sizeof viramas[0]);
    case 0x200c: /* ZERO WIDTH NON-JOINER: after a virama, or between joining letters */
        return (i > 0 && in_list(u->cp[i - 1], viramas, sizeof viramas / sizeof viramas[0])) ||
               zwnj_between_joiners(u, i);
    default:
        break;
    }
    /* the two sets of Arabic digits must not be mixed */
    if (c >= 0x0660 && c <= 0x0669)
        return !label_has_range(u, 0x06f0, 0x06f9);
    if (c >= 0x06f0 && c <= 0x06f9)
        return !label_has_range(u, 0x0660, 0x0669);
    return ul_has(u, i, UP_LETTER_DIGIT);
}

/* RFC 3492 section 6.3, counting only: the length of the punycode form of
 * cp[0..n) (without "xn--"), or -1 on overflow. */
static int pc_encoded_len(const uint32_t *cp, int n)
{
    uint32_t h = 0, out = 0;
    for (int j = 0; j < n; j++)
        if (cp[j] < 0x80)
            h++;
    out = h + (h > 0);
    uint32_t b = h, m, c = PC_INITIAL_N, delta = 0, bias = PC_INITIAL_BIAS;
    while (h < (uint32_t)n) {
        m = 0x10ffff + 1;
        for (int j = 0; j < n; j++)
            if (cp[j] >= c && cp[j] < m)
                m = cp[j];
        if ((m - c) > (PC_MAXINT - delta) / (h + 1))
            return -1;
        delta += (m - c) * (h + 1);
        c = m;
        for (int j = 0; j < n; j++) {
            if (cp[j] < c && ++delta == 0)
                return -1;
            if (cp[j] != c)
                continue;
            uint32_t q = delta;
            for (uint32_t k = PC_BASE;; k += PC_BASE) {
                uint32_t t = k <= bias ? PC_TMIN : k >= bias + PC_TMAX ? PC_TMAX : k - bias;
                if (q < t)
                    break;
                out++;
                q = (q - t) / (PC_BASE - t);
            }
            out++;
            bias = pc_adapt(delta, h + 1, h == b);
            delta = 0;
            h++;
        }
        delta++;
        c++;
    }
    return out > IDNA_MAX_CPS ? -1 : (int)out;
}

/* ---------- RFC 5893 Bidi rule ---------------------------------------------------- */

static int ul_bidi(const ulabel_t *u, int i)
{
    for (int b = UP_BIDI_L; b < UP_COUNT; b++)
        if (ul_has(u, i, b))
            return b;
    return UP_COUNT; /* any other class (B, S, WS, LRE, ...) */
}

static int ul_is_rtl(const ulabel_t *u)
{
    for (int i = 0; i < u->n; i++) {
        if (u->cp[i] < 0x80)
            continue;
        int b = ul_bidi(u, i);
        if (b == UP_BIDI_R || b == UP_BIDI_AL || b == UP_BIDI_AN)
            return 1;
    }
    return 0;
}

/* the six conditions of RFC 5893 section 2, for a label of a domain name
 * that has a right-to-left label */
static int ul_bidi_ok(const ulabel_t *u)
{
    int first = ul_bidi(u, 0);
    int rtl = first == UP_BIDI_R || first == UP_BIDI_AL;
    if (!rtl && first != UP_BIDI_L)
        return 0;
    int en = 0, an = 0, last = -1;
    for (int i = 0; i < u->n; i++) {
        int b = ul_bidi(u, i);
        switch (b) {
        case UP_BIDI_R:
        case UP_BIDI_AL:
        case UP_BIDI_AN:
            if (!rtl)
                return 0;
            break;
        case UP_BIDI_L:
            if (rtl)
                return 0;
            break;
        case UP_BIDI_EN:
        case UP_BIDI_ES:
        case UP_BIDI_CS:
        case UP_BIDI_ET:
        case UP_BIDI_ON:
        case UP_BIDI_BN:
        case UP_BIDI_NSM:
            break;
        default:
            return 0;
        }
        en |= b == UP_BIDI_EN;
        an |= b == UP_BIDI_AN;
        if (b != UP_BIDI_NSM)
            last = b;
    }
    if (rtl)
        return !(en && an) && (last == UP_BIDI_R || last == UP_BIDI_AL || last == UP_BIDI_EN ||
                               last == UP_BIDI_AN);
    return last == UP_BIDI_L || last == UP_BIDI_EN;
}

/* ---------- labels and domain names ---------------------------------------------- */

/* RFC 5891 4.2.3 and RFC 5892 on the code points of a U-label */
static int ul_valid(ulabel_t *u)
{
    int non_ascii = 0;
    for (int i = 0; i < u->n; i++) {
        uint32_t c = u->cp[i];
        /* DNS compares ASCII without case, so an upper-case letter is read as
         * its lower-case form; other ASCII must be LDH */
        if (c >= 'A' && c <= 'Z')
            u->cp[i] = c + ('a' - 'A');
        else if (c < 0x80 && !(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '-')
            return 0;
        non_ascii |= c >= 0x80;
    }
    int n = u->n;
    /* RFC 5890: a U-label has a non-ASCII character; RFC 5891 4.2.3.1: no
     * hyphen first, last, or in both the 3rd and 4th position */
    if (!non_ascii || u->cp[0] == '-' || u->cp[n - 1] == '-' ||
        (n >= 4 && u->cp[2] == '-' && u->cp[3] == '-'))
        return 0;
    ul_encode(u);
    /* RFC 5891 4.2.3.2: no combining mark first */
    if (ul_has(u, 0, UP_MARK))
        return 0;
    for (int i = 0; i < n; i++)
        if (u->cp[i] >= 0x80 && !cp_allowed(u, i))
            return 0;
    return 1;
}

/* next code point of valid UTF-8 (jansson strings are) */
static uint32_t utf8_next(const unsigned char *s, size_t n, size_t *i)
{
    uint32_t c = s[*i];
    int extra = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0;
    c &= extra ? 0x3fu >> extra : 0x7f;
    (*i)++;
    for (; extra && *i < n; extra--)
        c = (c << 6) | (s[(*i)++] & 0x3f);
    return c;
}

static int is_ldh(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* Checks one label s[0..n); fills u with its U-label (ASCII labels too, for
 * the Bidi rule) and *alen with the length of its ASCII form. */
static int label_ok(const unsigned char *s, size_t n, int unicode, ulabel_t *u, size_t *alen)
{
    int ascii = 1;
    for (size_t i = 0; i < n; i++)
        ascii &= s[i] < 0x80;
    if (n == 0)
        return 0;
    if (ascii) {
        if (n > 63 || s[0] == '-' || s[n - 1] == '-')
            return 0;
        for (size_t i = 0; i < n; i++)
            if (!is_ldh(s[i]))
                return 0;
        *alen = n;
        if (n >= 4 && s[2] == '-' && s[3] == '-') {
            /* RFC 5891 4.2.3.1: "--" at positions 3-4 only in A-labels */
            if ((s[0] != 'x' && s[0] != 'X') || (s[1] != 'n' && s[1] != 'N'))
                return 0;
            u->n = pc_decode((const char *)s + 4, n - 4, u->cp);
            return u->n > 0 && ul_valid(u);
        }
        for (size_t i = 0; i < n; i++)
            u->cp[i] = s[i];
        u->n = (int)n;
        ul_encode(u);
        return 1;
    }
    if (!unicode)
        return 0;
    u->n = 0;
    for (size_t i = 0; i < n;) {
        if (u->n == IDNA_MAX_CPS)
            return 0;
        u->cp[u->n++] = utf8_next(s, n, &i);
    }
    int plen = pc_encoded_len(u->cp, u->n);
    if (plen < 0 || plen + 4 > 63)
        return 0;
    *alen = (size_t)plen + 4;
    return ul_valid(u);
}

/* length of the label separator at s[i], 0 if none: '.', and with unicode
 * also U+3002, U+FF0E, U+FF61 (RFC 3490 3.1, kept by IDNA2008 lookups) */
static size_t separator_len(const unsigned char *s, size_t n, size_t i, int unicode)
{
    if (s[i] == '.')
        return 1;
    if (!unicode || i + 3 > n)
        return 0;
    if ((s[i] == 0xe3 && s[i + 1] == 0x80 && s[i + 2] == 0x82) ||
        (s[i] == 0xef && s[i + 1] == 0xbc && s[i + 2] == 0x8e) ||
        (s[i] == 0xef && s[i + 1] == 0xbd && s[i + 2] == 0xa1))
        return 3;
    return 0;
}

/* One walk over the labels.  bidi < 0: validate every label and report in
 * *rtl whether one is right-to-left; bidi > 0: apply the Bidi rule. */
static int domain_walk(const unsigned char *s, size_t n, int unicode, int bidi, int *rtl,
                       pcre2_match_data *md)
{
    ulabel_t u;
    u.md = md;
    size_t total = 0, st = 0;
    for (size_t i = 0; i <= n;) {
        size_t sep = i < n ? separator_len(s, n, i, unicode) : 1;
        if (!sep) {
            i++;
            continue;
        }
        size_t alen = 0;
        if (!label_ok(s + st, i - st, unicode, &u, &alen))
            return 0;
        if (bidi > 0 && !ul_bidi_ok(&u))
            return 0;
        if (bidi < 0 && !*rtl)
            *rtl = ul_is_rtl(&u);
        total += alen + (i < n);
        i += sep;
        st = i;
    }
    return total <= 253;
}

int js_idna_hostname_ok(const char *s, size_t n, int unicode)
{
    pthread_once(&up_once, up_init);
    pcre2_match_data *md = js_match_data();
    if (!up_ready || !md || n == 0)
        return 0;
    const unsigned char *us = (const unsigned char *)s;
    int rtl = 0;
    return domain_walk(us, n, unicode, -1, &rtl, md) &&
           (!rtl || domain_walk(us, n, unicode, 1, &rtl, md));
}
