/* js_format.c - "format" checkers, used only when format assertion is on.
 *
 * Each checker follows its RFC's grammar for the ASCII forms: date-time, date,
 * time and duration (RFC 3339 and its appendix A), uuid (RFC 4122), email
 * (RFC 5321 Mailbox, its domain checked as a hostname), ipv4, ipv6
 * (RFC 4291 text forms), uri and uri-reference (RFC 3986), json-pointer
 * (RFC 6901) and regex (ECMA-262 as evbus compiles it).  hostname and
 * idn-hostname are js_idna.c's.  It does not check idn-email, the iri*
 * formats or uri-template: those formats stay annotations.
 */
#include <stdlib.h>
#include <string.h>

#include "jsonschema/js_internal.h"

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

/* ---------- RFC 3339 ------------------------------------------------------------ */

static int check_date(const char *s, size_t n)
{
    int y, m, d;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (n != 10 || s[4] != '-' || s[7] != '-' || !digits(s, 4, &y) || !digits(s + 5, 2, &m) ||
        !digits(s + 8, 2, &d) || m < 1 || m > 12 || d < 1)
        return 0;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= mdays[m - 1] + (m == 2 && leap);
}

/* full-time: HH:MM:SS[.frac](Z|+HH:MM|-HH:MM); a leap second must fall on
 * 23:59:60 UTC */
static int check_time(const char *s, size_t n)
{
    int h, mi, se, oh = 0, om = 0;
    if (n < 9 || s[2] != ':' || s[5] != ':' || !digits(s, 2, &h) || !digits(s + 3, 2, &mi) ||
        !digits(s + 6, 2, &se) || h > 23 || mi > 59 || se > 60)
        return 0;
    size_t i = 8;
    if (i < n && s[i] == '.') {
        size_t f = ++i;
        while (i < n && is_digit(s[i]))
            i++;
        if (i == f)
            return 0;
    }
    int sign = 0;
    if (i + 1 == n && (s[i] == 'Z' || s[i] == 'z')) {
        sign = 0;
    } else if (i + 6 == n && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':' &&
               digits(s + i + 1, 2, &oh) && digits(s + i + 4, 2, &om) && oh <= 23 && om <= 59) {
        sign = s[i] == '+' ? 1 : -1;
    } else {
        return 0;
    }
    if (se == 60) {
        int utc = ((h * 60 + mi) - sign * (oh * 60 + om)) % 1440;
        if (utc < 0)
            utc += 1440;
        if (utc != 23 * 60 + 59)
            return 0;
    }
    return 1;
}

static int check_date_time(const char *s, size_t n)
{
    return n > 11 && (s[10] == 'T' || s[10] == 't') && check_date(s, 10) &&
           check_time(s + 11, n - 11);
}

/* duration per RFC 3339 appendix A: PnW, or P[nY][nM][nD][T[nH][nM][nS]] */
static int check_duration(const char *s, size_t n)
{
    if (n < 3 || s[0] != 'P')
        return 0;
    size_t i = 1;
    const char *units = "YMD";
    int in_time = 0, any = 0, any_time = 0, first = 1;
    while (i < n) {
        if (s[i] == 'T') {
            if (in_time)
                return 0;
            in_time = 1;
            first = 1;
            units = "HMS";
            i++;
            continue;
        }
        size_t st = i;
        while (i < n && is_digit(s[i]))
            i++;
        if (i == st || i == n)
            return 0;
        char u = s[i++];
        if (u == 'W' && !in_time) {
            return !any && i == n;
        }
        /* the ABNF chains units: Y may only be followed by M, M by D, ... */
        const char *p = first ? strchr(units, u) : (*units == u ? units : NULL);
        if (!p || !u)
            return 0;
        first = 0;
        units = p + 1;
        any = 1;
        any_time |= in_time;
    }
    return any && (!in_time || any_time);
}

/* ---------- identifiers ------------------------------------------------------------ */

/* 1 for the hex digits: the uuid check below loads one entry per byte and
 * branches once per group instead of per byte, because enforce mode runs it
 * on every event's id (docs/performance.md). */
static const unsigned char hex_digit[256] = {
    ['0' ... '9'] = 1,
    ['a' ... 'f'] = 1,
    ['A' ... 'F'] = 1,
};

static unsigned hex_run(const unsigned char *s, size_t n)
{
    unsigned ok = 1;
    for (size_t i = 0; i < n; i++)
        ok &= hex_digit[s[i]];
    return ok;
}

/* 8-4-4-4-12 hex digits */
static int check_uuid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-')
        return 0;
    return (int)(hex_run(u, 8) & hex_run(u + 9, 4) & hex_run(u + 14, 4) & hex_run(u + 19, 4) &
                 hex_run(u + 24, 12));
}

static int check_ipv4(const char *s, size_t n)
{
    int parts = 0;
    size_t i = 0;
    while (parts < 4) {
        size_t st = i;
        int v = 0;
        while (i < n && is_digit(s[i]) && i - st < 3)
            v = v * 10 + (s[i++] - '0');
        if (i == st || v > 255 || (i - st > 1 && s[st] == '0'))
            return 0;
        parts++;
        if (parts < 4) {
            if (i >= n || s[i] != '.')
                return 0;
            i++;
        }
    }
    return i == n;
}

static int check_ipv6(const char *s, size_t n)
{
    int groups = 0, compressed = 0;
    size_t i = 0;
    if (n >= 2 && s[0] == ':' && s[1] == ':') {
        compressed = 1;
        i = 2;
        if (i == n)
            return 1;
    } else if (n && s[0] == ':') {
        return 0;
    }
    while (i < n) {
        size_t st = i;
        while (i < n && is_hex(s[i]) && i - st < 5)
            i++;
        if (i < n && s[i] == '.') {
            /* embedded IPv4 takes the last two groups */
            if (!check_ipv4(s + st, n - st))
                return 0;
            groups += 2;
            i = n;
            break;
        }
        if (i == st || i - st > 4)
            return 0;
        groups++;
        if (i == n)
            break;
        if (s[i] != ':')
            return 0;
        i++;
        if (i < n && s[i] == ':') {
            if (compressed)
                return 0;
            compressed = 1;
            i++;
            if (i == n)
                break;
        } else if (i == n) {
            return 0;
        }
    }
    return compressed ? groups <= 7 : groups == 8;
}

static int check_hostname(const char *s, size_t n)
{
    return js_idna_hostname_ok(s, n, 0);
}

static int check_idn_hostname(const char *s, size_t n)
{
    return js_idna_hostname_ok(s, n, 1);
}

static int is_atext(char c)
{
    return is_alpha(c) || is_digit(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

static int check_email(const char *s, size_t n)
{
    size_t i = 0;
    if (n && s[0] == '"') {
        for (i = 1; i < n && s[i] != '"'; i++) {
            if (s[i] == '\\')
                i++;
            else if ((unsigned char)s[i] < 32 || (unsigned char)s[i] > 126)
                return 0;
        }
        if (i >= n)
            return 0;
        i++;
    } else {
        int prev_dot = 1;
        for (; i < n && s[i] != '@'; i++) {
            if (s[i] == '.') {
                if (prev_dot)
                    return 0;
                prev_dot = 1;
            } else if (is_atext(s[i])) {
                prev_dot = 0;
            } else {
                return 0;
            }
        }
        if (prev_dot)
            return 0;
    }
    if (i >= n || s[i] != '@' || i > 64)
        return 0;
    const char *d = s + i + 1;
    size_t dn = n - i - 1;
    if (dn >= 2 && d[0] == '[' && d[dn - 1] == ']') {
        if (dn > 7 && !strncmp(d + 1, "IPv6:", 5))
            return check_ipv6(d + 6, dn - 7);
        return check_ipv4(d + 1, dn - 2);
    }
    return check_hostname(d, dn);
}

/* ---------- RFC 3986 ------------------------------------------------------------------ */

static int is_unreserved(char c)
{
    return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static int is_subdelim(char c)
{
    return c && strchr("!$&'()*+,;=", c) != NULL;
}

/* every char is unreserved / sub-delim / one of extra / a valid %XX */
static int uri_chars(const char *s, size_t n, const char *extra)
{
    for (size_t i = 0; i < n; i++) {
        if (!s[i]) {
            return 0;
        } else if (s[i] == '%') {
            if (i + 2 >= n || !is_hex(s[i + 1]) || !is_hex(s[i + 2]))
                return 0;
            i += 2;
        } else if (!is_unreserved(s[i]) && !is_subdelim(s[i]) && !strchr(extra, s[i])) {
            return 0;
        }
    }
    return 1;
}

static int check_authority(const char *a, size_t n)
{
    const char *at = memchr(a, '@', n);
    if (at) {
        if (!uri_chars(a, (size_t)(at - a), ":"))
            return 0;
        n -= (size_t)(at - a) + 1;
        a = at + 1;
    }
    size_t hl;
    if (n && a[0] == '[') {
        const char *close = memchr(a, ']', n);
        if (!close)
            return 0;
        hl = (size_t)(close - a) + 1;
        if (!check_ipv6(a + 1, hl - 2) &&
            !(hl > 2 && (a[1] == 'v' || a[1] == 'V') && uri_chars(a + 2, hl - 3, ":")))
            return 0;
    } else {
        hl = 0;
        while (hl < n && a[hl] != ':')
            hl++;
        if (!uri_chars(a, hl, ""))
            return 0;
    }
    if (hl < n) {
        if (a[hl] != ':')
            return 0;
        for (size_t i = hl + 1; i < n; i++)
            if (!is_digit(a[i]))
                return 0;
    }
    return 1;
}

static int check_uri_ref(const char *s, size_t n, int need_scheme)
{
    size_t i = 0;
    while (i < n && (is_alpha(s[i]) || (i && (is_digit(s[i]) || strchr("+-.", s[i])))))
        i++;
    int has_scheme = i > 0 && i < n && s[i] == ':' && is_alpha(s[0]);
    if (need_scheme && !has_scheme)
        return 0;
    size_t p = has_scheme ? i + 1 : 0;
    if (!has_scheme) {
        /* a relative path's first segment may not contain ':' */
        size_t k = 0;
        while (k < n && !strchr("/?#", s[k]))
            k++;
        if (memchr(s, ':', k))
            return 0;
    }
    size_t hier_end = p;
    while (hier_end < n && s[hier_end] != '?' && s[hier_end] != '#')
        hier_end++;
    const char *h = s + p;
    size_t hn = hier_end - p;
    if (hn >= 2 && h[0] == '/' && h[1] == '/') {
        size_t ae = 2;
        while (ae < hn && h[ae] != '/')
            ae++;
        if (!check_authority(h + 2, ae - 2))
            return 0;
        h += ae;
        hn -= ae;
    }
    if (!uri_chars(h, hn, ":@/"))
        return 0;
    size_t q = hier_end;
    if (q < n && s[q] == '?') {
        size_t qe = q + 1;
        while (qe < n && s[qe] != '#')
            qe++;
        if (!uri_chars(s + q + 1, qe - q - 1, ":@/?"))
            return 0;
        q = qe;
    }
    if (q < n && s[q] == '#' && !uri_chars(s + q + 1, n - q - 1, ":@/?"))
        return 0;
    return 1;
}

static int check_uri(const char *s, size_t n)
{
    return check_uri_ref(s, n, 1);
}

static int check_uri_reference(const char *s, size_t n)
{
    return check_uri_ref(s, n, 0);
}

static int check_json_pointer(const char *s, size_t n)
{
    if (n && s[0] != '/')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '~' && (i + 1 >= n || (s[i + 1] != '0' && s[i + 1] != '1')))
            return 0;
    return 1;
}

static int check_regex(const char *s, size_t n)
{
    size_t tl;
    char *t = js_regex_translate(s, n, &tl);
    if (!t)
        return 0;
    int ec;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)t, tl, JS_PCRE2_OPTIONS, &ec, &off, NULL);
    free(t);
    pcre2_code_free(re);
    return re != NULL;
}

static const struct {
    const char *name;
    js_format_fn fn;
} formats[] = {
    {"date-time", check_date_time}, {"date", check_date},
    {"time", check_time},           {"duration", check_duration},
    {"uuid", check_uuid},           {"email", check_email},
    {"hostname", check_hostname},   {"idn-hostname", check_idn_hostname},
    {"ipv4", check_ipv4},
    {"ipv6", check_ipv6},           {"uri", check_uri},
    {"uri-reference", check_uri_reference}, {"json-pointer", check_json_pointer},
    {"regex", check_regex},
};

js_format_fn js_format_lookup(const char *name)
{
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (!strcmp(formats[i].name, name))
            return formats[i].fn;
    return NULL;
}
