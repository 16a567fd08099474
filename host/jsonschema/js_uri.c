/* js_uri.c - RFC 3986 reference resolution for $id / $ref.
 *
 * Only what schema identification needs: split a URI into its five parts,
 * resolve a reference against a base (section 5.2, with dot-segment removal)
 * and percent-decode fragments.  No normalisation of case or escapes beyond
 * that: identifiers are compared as the strings the schemas wrote.
 */
#include "jsonschema/js_uri.h"

#include <stdlib.h>
#include <string.h>

typedef struct part {
    const char *s;
    size_t n;
    int has;
} part_t;

typedef struct uri {
    part_t scheme, auth, path, query, frag;
} uri_t;

static int is_scheme_char(char c, int first)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return !first && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.');
}

static void uri_split(const char *s, uri_t *u)
{
    memset(u, 0, sizeof *u);
    const char *p = s;
    while (*p && is_scheme_char(*p, p == s))
        p++;
    if (p > s && *p == ':') {
        u->scheme = (part_t){s, (size_t)(p - s), 1};
        s = p + 1;
    }
    if (s[0] == '/' && s[1] == '/') {
        const char *a = s + 2, *e = a;
        while (*e && *e != '/' && *e != '?' && *e != '#')
            e++;
        u->auth = (part_t){a, (size_t)(e - a), 1};
        s = e;
    }
    const char *e = s;
    while (*e && *e != '?' && *e != '#')
        e++;
    u->path = (part_t){s, (size_t)(e - s), 1};
    s = e;
    if (*s == '?') {
        e = ++s;
        while (*e && *e != '#')
            e++;
        u->query = (part_t){s, (size_t)(e - s), 1};
        s = e;
    }
    if (*s == '#')
        u->frag = (part_t){s + 1, strlen(s + 1), 1};
}

int js_uri_is_absolute(const char *s)
{
    uri_t u;
    uri_split(s, &u);
    return u.scheme.has;
}

/* RFC 3986 5.2.4, on a NUL-terminated copy, in place */
static void remove_dot_segments(char *in)
{
    char *out = in, *p = in;
    size_t olen = 0;
    while (*p) {
        if (!strncmp(p, "../", 3)) {
            p += 3;
        } else if (!strncmp(p, "./", 2)) {
            p += 2;
        } else if (!strncmp(p, "/./", 3)) {
            p += 2;
        } else if (!strcmp(p, "/.")) {
            p[1] = '\0';
        } else if (!strncmp(p, "/../", 4) || !strcmp(p, "/..")) {
            if (p[3] == '/')
                p += 3;
            else {
                p += 2;
                *p = '/';
            }
            while (olen > 0 && out[olen - 1] != '/')
                olen--;
            if (olen > 0)
                olen--;
        } else if (!strcmp(p, ".") || !strcmp(p, "..")) {
            p += strlen(p);
        } else {
            size_t n = 0;
            if (p[0] == '/')
                n = 1;
            while (p[n] && p[n] != '/')
                n++;
            memmove(out + olen, p, n);
            olen += n;
            p += n;
        }
    }
    out[olen] = '\0';
}

typedef struct buf {
    char *s;
    size_t n;
} buf_t;

static void put(buf_t *b, const char *s, size_t n)
{
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void put_path(buf_t *b, const char *s, size_t n)
{
    size_t start = b->n;
    put(b, s, n);
    remove_dot_segments(b->s + start);
    b->n = start + strlen(b->s + start);
}

char *js_uri_resolve(const char *base, const char *ref)
{
    uri_t b, r;
    uri_split(base ? base : "", &b);
    uri_split(ref, &r);
    buf_t o = {malloc(strlen(base ? base : "") + strlen(ref) + 8), 0};
    if (!o.s)
        return NULL;
    o.s[0] = '\0';
    const part_t *scheme, *auth, *query;
    if (r.scheme.has) {
        scheme = &r.scheme;
        auth = &r.auth;
        query = &r.query;
    } else if (r.auth.has) {
        scheme = &b.scheme;
        auth = &r.auth;
        query = &r.query;
    } else {
        scheme = &b.scheme;
        auth = &b.auth;
        query = r.path.n == 0 && !r.query.has ? &b.query : &r.query;
    }
    if (scheme->has) {
        put(&o, scheme->s, scheme->n);
        put(&o, ":", 1);
    }
    if (auth->has) {
        put(&o, "//", 2);
        put(&o, auth->s, auth->n);
    }
    if (r.scheme.has || r.auth.has) {
        put_path(&o, r.path.s, r.path.n);
    } else if (r.path.n == 0) {
        put(&o, b.path.s, b.path.n);
    } else if (r.path.s[0] == '/') {
        put_path(&o, r.path.s, r.path.n);
    } else {
        /* merge: base path up to its last '/', then the reference */
        size_t start = o.n;
        if (b.auth.has && b.path.n == 0) {
            put(&o, "/", 1);
        } else {
            size_t keep = b.path.n;
            while (keep > 0 && b.path.s[keep - 1] != '/')
                keep--;
            put(&o, b.path.s, keep);
        }
        put(&o, r.path.s, r.path.n);
        remove_dot_segments(o.s + start);
        o.n = start + strlen(o.s + start);
    }
    if (query->has) {
        put(&o, "?", 1);
        put(&o, query->s, query->n);
    }
    if (r.frag.has) {
        put(&o, "#", 1);
        put(&o, r.frag.s, r.frag.n);
    }
    return o.s;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void js_uri_percent_decode(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        int h, l;
        if (p[0] == '%' && (h = hexval(p[1])) >= 0 && (l = hexval(p[2])) >= 0) {
            *o++ = (char)(h * 16 + l);
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}
