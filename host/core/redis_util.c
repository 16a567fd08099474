/* redis_util — see redis_util.h. */
#include "core/redis_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static int run_ok(redisContext *c, char *err, size_t errlen, const char *what, int argc,
                  const char **argv)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "%s: %s", what, r ? r->str : c->errstr);
        if (r)
            freeReplyObject(r);
        return -1;
    }
    freeReplyObject(r);
    return 0;
}

redisContext *rutil_connect(const char *url, int connect_ms, int command_ms, char *err,
                            size_t errlen)
{
    char host[256] = "127.0.0.1", pass[256] = "", path[512] = "";
    int port = 6379, db = 0;
    const char *p;
    if (strncmp(url, "unix://", 7) == 0) {
        snprintf(path, sizeof path, "%s", url + 7);
        char *q = strchr(path, '?');
        if (q) {
            if (strncmp(q, "?db=", 4) == 0)
                db = atoi(q + 4);
            *q = '\0';
        }
    } else if (strncmp(url, "redis://", 8) == 0) {
        p = url + 8;
        const char *at = strrchr(p, '@');
        if (at) {
            const char *colon = memchr(p, ':', (size_t)(at - p));
            const char *pw = colon ? colon + 1 : p;
            snprintf(pass, sizeof pass, "%.*s", (int)(at - pw), pw);
            p = at + 1;
        }
        size_t hl = strcspn(p, ":/");
        if (hl > 0)
            snprintf(host, sizeof host, "%.*s", (int)hl, p);
        p += hl;
        if (*p == ':') {
            char *end;
            long v = strtol(p + 1, &end, 10);
            if (end == p + 1 || v <= 0 || v > 65535) {
                snprintf(err, errlen, "%s: invalid port", url);
                return NULL;
            }
            port = (int)v;
            p = end;
        }
        if (*p == '/' && p[1])
            db = atoi(p + 1);
    } else {
        snprintf(err, errlen, "%s: not a redis:// or unix:// URL", url);
        return NULL;
    }
    struct timeval ctv = {connect_ms / 1000, (connect_ms % 1000) * 1000};
    redisContext *c = path[0] ? redisConnectUnixWithTimeout(path, ctv)
                              : redisConnectWithTimeout(host, port, ctv);
    if (!c || c->err) {
        snprintf(err, errlen, "connect %s: %s", path[0] ? path : host,
                 c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    int ms = command_ms > 0 ? command_ms : 5000;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    redisSetTimeout(c, tv);
    redisEnableKeepAlive(c);
    if (pass[0]) {
        const char *argv[] = {"AUTH", pass};
        if (run_ok(c, err, errlen, "AUTH", 2, argv) != 0) {
            redisFree(c);
            return NULL;
        }
    }
    if (db) {
        char dbs[16];
        snprintf(dbs, sizeof dbs, "%d", db);
        const char *argv[] = {"SELECT", dbs};
        if (run_ok(c, err, errlen, "SELECT", 2, argv) != 0) {
            redisFree(c);
            return NULL;
        }
    }
    return c;
}
