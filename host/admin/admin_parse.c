/*
 * admin_parse — the pure request-text parsers of the admin server, moved
 * out of admin.c unchanged so that they can be fuzzed without a server
 * (tests/fuzz/fuzz_admin.c).  admin.c turns their verdicts into replies;
 * nothing here replies, logs or allocates.
 */
#include "admin/admin_parse.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin/api.h"
#include "store/store.h"

/* ---- cursors: base64url(payload) "." base64url(HMAC-SHA256) ------------- */

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void admin__b64u_encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = b64u[v >> 18 & 63];
        out[o++] = b64u[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = b64u[v >> 6 & 63];
        if (i + 2 < n)
            out[o++] = b64u[v & 63];
    }
    out[o] = '\0';
}

static int b64u_val(char c)
{
    const char *p = c ? strchr(b64u, c) : NULL;
    return p ? (int)(p - b64u) : -1;
}

/* -1 on a character outside the alphabet or an impossible length. */
long admin__b64u_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    if (n % 4 == 1)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        size_t k = 0;
        for (; k < 4 && i + k < n; k++) {
            int d = b64u_val(in[i + k]);
            if (d < 0)
                return -1;
            v |= (uint32_t)d << (18 - 6 * k);
        }
        size_t bytes = k - 1;
        if (o + bytes > cap)
            return -1;
        for (size_t b = 0; b < bytes; b++)
            out[o++] = (unsigned char)(v >> (16 - 8 * b));
    }
    return (long)o;
}

/* ---- paths ----------------------------------------------------------------- */

/* A path parameter's shape: ids, instance names, job ids.  Anything else
 * (empty, "..", slashes, controls) matches no route. */
bool admin__param_ok(const char *s, size_t n)
{
    if (n == 0 || n > 128 || (n <= 2 && s[0] == '.' && (n == 1 || s[1] == '.')))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("-_.:", s[i]))
            return false;
    return true;
}

/* Does path match pattern?  Captures {params} into out (n copies). */
bool admin__path_match(const char *pattern, const char *path, char out[][129], size_t *np)
{
    *np = 0;
    const char *p = pattern, *u = path;
    while (*p && *u) {
        if (*p == '{') {
            const char *pe = strchr(p, '}');
            size_t n = strcspn(u, "/");
            if (!pe || *np >= ADMIN_MAX_PARAMS || !admin__param_ok(u, n))
                return false;
            memcpy(out[*np], u, n);
            out[(*np)++][n] = '\0';
            p = pe + 1;
            u += n;
            continue;
        }
        if (*p != *u)
            return false;
        p++;
        u++;
    }
    return !*p && !*u;
}

/*
 * Percent-decoding of paths and query values, in place.  As
 * libmicrohttpd's own, except that "%00" stays as it is: a decoded NUL
 * would cut the C string and "/api/v1/config%00..." would reach the route
 * "/api/v1/config".  Left encoded, it matches no route (404) and no
 * parameter check accepts it.
 */
size_t admin__unescape(char *s)
{
    char *w = s;
    for (const char *p = s; *p; p++) {
        int hi, lo;
        if (*p == '%' && (hi = hexval(p[1])) >= 0 && (lo = hexval(p[2])) >= 0 && (hi | lo)) {
            *w++ = (char)(hi * 16 + lo);
            p += 2;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* ---- headers and bodies ------------------------------------------------- */

bool admin__is_json_ctype(const char *ct)
{
    if (!ct)
        return false;
    size_t n = strcspn(ct, ";");
    while (n && ct[n - 1] == ' ')
        n--;
    return n == 16 && strncasecmp(ct, "application/json", 16) == 0;
}

int admin__json_depth(const char *body, size_t len)
{
    int depth = 0, maxdepth = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char ch = body[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = false;
        } else if (ch == '"') {
            in_str = true;
        } else if (ch == '[' || ch == '{') {
            if (++depth > maxdepth)
                maxdepth = depth;
        } else if (ch == ']' || ch == '}') {
            depth--;
        }
    }
    return maxdepth;
}

/* ---- query values ----------------------------------------------------------- */

int admin__parse_long(const char *v, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (!*v || *end || errno || !(isdigit((unsigned char)v[0]) || v[0] == '-') || n < min ||
        n > max)
        return -1;
    *out = n;
    return 0;
}

int admin__parse_time(const char *v, int64_t *ms)
{
    return strlen(v) > 40 || store_parse_rfc3339(v, ms) != 0 || *ms <= 0 ? -1 : 0;
}

bool admin__word_ok(const char *v, size_t max)
{
    size_t n = strlen(v);
    bool ok = n > 0 && n <= max;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)v[i] > 0x20 && (unsigned char)v[i] < 0x7f;
    return ok;
}
