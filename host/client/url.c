/*
 * url — the redis:// and unix:// URLs of evbus_client_new (and the seeds
 * of a cluster, cluster.c): host, port, user, password and database into
 * a client's fields.  Parses only: connecting is client.c's.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

/* Decodes %XX escapes (passwords may contain '@' or ':'); NULL on OOM. */
static char *url_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2])) {
            char hex[3] = {s[i + 1], s[i + 2], '\0'};
            out[o++] = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

static int parse_db(const char *s, int *db)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > 1000000)
        return -1;
    *db = (int)v;
    return 0;
}

int evbus__parse_url(evbus_client_t *c, const char *url, char *err, size_t errlen)
{
    if (strncmp(url, "unix://", 7) == 0) {
        const char *path = url + 7;
        const char *q = strchr(path, '?');
        size_t plen = q ? (size_t)(q - path) : strlen(path);
        if (plen == 0 || path[0] != '/')
            return evbus__fail(NULL, err, errlen, -1,
                               "redis url \"%s\": unix:// needs an absolute socket path", url);
        if (q && (strncmp(q, "?db=", 4) != 0 || parse_db(q + 4, &c->db) != 0))
            return evbus__fail(NULL, err, errlen, -1,
                               "redis url \"%s\": only ?db=N may follow the socket path", url);
        c->unix_path = strndup(path, plen);
        return c->unix_path ? 0 : evbus__fail(NULL, err, errlen, -1, "out of memory");
    }
    if (strncmp(url, "redis://", 8) != 0)
        return evbus__fail(NULL, err, errlen, -1,
                           "redis url \"%s\": must start with redis:// or unix://", url);
    const char *p = url + 8;
    const char *slash = strchr(p, '/');
    const char *hostend = slash ? slash : p + strlen(p);
    const char *at = memrchr(p, '@', (size_t)(hostend - p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (colon > p)
                c->user = url_decode(p, (size_t)(colon - p));
            c->password = url_decode(colon + 1, (size_t)(at - colon - 1));
        } else {
            c->password = url_decode(p, (size_t)(at - p));
        }
        if (!c->password || (colon && colon > p && !c->user))
            return evbus__fail(NULL, err, errlen, -1, "out of memory");
        p = at + 1;
    }
    const char *portsep;
    const char *hs = p, *he;
    if (*p == '[') { /* [ipv6]:port */
        const char *close = memchr(p, ']', (size_t)(hostend - p));
        if (!close)
            return evbus__fail(NULL, err, errlen, -1, "redis url \"%s\": unclosed '['", url);
        hs = p + 1;
        he = close;
        portsep = close + 1 < hostend && close[1] == ':' ? close + 1 : NULL;
    } else {
        portsep = memchr(p, ':', (size_t)(hostend - p));
        he = portsep ? portsep : hostend;
    }
    if (he == hs)
        return evbus__fail(NULL, err, errlen, -1, "redis url \"%s\": missing host", url);
    c->host = strndup(hs, (size_t)(he - hs));
    if (!c->host)
        return evbus__fail(NULL, err, errlen, -1, "out of memory");
    c->port = 6379;
    if (portsep) {
        char buf[8];
        size_t n = (size_t)(hostend - portsep - 1);
        char *end;
        if (n == 0 || n >= sizeof buf)
            return evbus__fail(NULL, err, errlen, -1, "redis url \"%s\": bad port", url);
        memcpy(buf, portsep + 1, n);
        buf[n] = '\0';
        long port = strtol(buf, &end, 10);
        if (*end || port < 1 || port > 65535)
            return evbus__fail(NULL, err, errlen, -1, "redis url \"%s\": bad port", url);
        c->port = (int)port;
    }
    if (slash && slash[1] && parse_db(slash + 1, &c->db) != 0)
        return evbus__fail(NULL, err, errlen, -1,
                           "redis url \"%s\": database must be a number after '/'", url);
    return 0;
}

void evbus__url_free(evbus_client_t *c)
{
    free(c->host);
    free(c->unix_path);
    free(c->user);
    free(c->password);
    c->host = c->unix_path = c->user = c->password = NULL;
}
