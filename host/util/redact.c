/* redact — see redact.h.  One pass, no allocation: log lines call it. */
#include "util/redact.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#define MASK "***"

typedef struct out {
    char *p;
    size_t n, cap; /* cap excludes the NUL */
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (n > o->cap - o->n)
        n = o->cap - o->n;
    memcpy(o->p + o->n, s, n);
    o->n += n;
}

/* Where a URL's authority ends: the first '/', '?', '#', blank, quote or
 * bracket after "://", or the end. */
static size_t authority_end(const char *s, size_t i, size_t len)
{
    while (i < len && !strchr("/?#\"'<>()[]{},;", s[i]) && !isspace((unsigned char)s[i]))
        i++;
    return i;
}

static bool scheme_is_redis(const char *s, size_t colon)
{
    size_t b = colon;
    while (b > 0 && (isalnum((unsigned char)s[b - 1]) || strchr("+.-", s[b - 1])))
        b--;
    size_t n = colon - b;
    return (n == 5 && !strncasecmp(s + b, "redis", 5)) ||
           (n == 6 && !strncasecmp(s + b, "rediss", 6));
}

/* A value after "password=": quoted, or up to a blank or a separator. */
static size_t value_end(const char *s, size_t i, size_t len)
{
    if (i < len && (s[i] == '\'' || s[i] == '"')) {
        char q = s[i++];
        while (i < len && s[i] != q)
            i += (s[i] == '\\' && i + 1 < len) ? 2 : 1;
        return i < len ? i + 1 : i;
    }
    while (i < len && !strchr("&;,\"'", s[i]) && !isspace((unsigned char)s[i]))
        i++;
    return i;
}

size_t redact_secrets(const char *in, size_t len, char *outbuf, size_t outlen)
{
    if (outlen == 0)
        return 0;
    out_t o = {outbuf, 0, outlen - 1};
    size_t i = 0, copied = 0; /* in[copied..i) is waiting to be copied */
    while (i < len) {
        if (in[i] == ':' && i + 2 < len && in[i + 1] == '/' && in[i + 2] == '/') {
            size_t a = i + 3, end = authority_end(in, a, len), at = end;
            while (at > a && in[at - 1] != '@')
                at--;
            if (at > a) { /* userinfo is in[a .. at-1) */
                const char *colon = memchr(in + a, ':', at - 1 - a);
                size_t from = colon ? (size_t)(colon - in) + 1 : a;
                if (colon || scheme_is_redis(in, i)) {
                    put(&o, in + copied, from - copied);
                    if (at - 1 > from)
                        put(&o, MASK, strlen(MASK));
                    copied = at - 1; /* the '@' */
                }
            }
            i = end;
            continue;
        }
        if ((in[i] == 'p' || in[i] == 'P') && len - i > 9 && !strncasecmp(in + i, "password=", 9) &&
            (i == 0 || !isalnum((unsigned char)in[i - 1]))) {
            size_t v = i + 9, end = value_end(in, v, len);
            put(&o, in + copied, v - copied);
            if (end > v)
                put(&o, MASK, strlen(MASK));
            copied = i = end;
            continue;
        }
        if ((in[i] == 'B' || in[i] == 'b') && len - i > 7 && !strncasecmp(in + i, "bearer ", 7)) {
            size_t v = i + 7, end = v;
            while (end < len && !isspace((unsigned char)in[end]) && !strchr("\"',", in[end]))
                end++;
            put(&o, in + copied, v - copied);
            if (end > v)
                put(&o, MASK, strlen(MASK));
            copied = i = end;
            continue;
        }
        i++;
    }
    put(&o, in + copied, len - copied);
    o.p[o.n] = '\0';
    return o.n;
}
