/*
 * client — the connection (URL parsing, lazy connect, reconnect after I/O
 * errors) and the publish paths: one event, a pipelined batch, raw bytes.
 *
 * Publishing never retries by itself: after a Redis failure the caller
 * decides (an XADD whose reply was lost may or may not have been written,
 * and only the caller knows whether a duplicate is acceptable).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

enum { CONNECT_TIMEOUT_MS = 2000, COMMAND_TIMEOUT_MS = 5000 };

int evbus__fail(evbus_client_t *c, char *err, size_t errlen, int code, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c)
        snprintf(c->errbuf, sizeof c->errbuf, "%s", msg);
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    return code;
}

int evbus__io_fail(evbus_client_t *c, char *err, size_t errlen, const char *what)
{
    const char *why = c->ctx && c->ctx->errstr[0] ? c->ctx->errstr : "connection lost";
    evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "redis: %s: %s", what, why);
    if (c->ctx) {
        redisFree(c->ctx);
        c->ctx = NULL;
    }
    return EVBUS_CLIENT_EREDIS;
}

int evbus__maxlen_args(const evbus_client_t *c, const char **argv, size_t *lens, int argc,
                       char buf[24])
{
    if (c->maxlen == 0)
        return argc;
    snprintf(buf, 24, "%llu", (unsigned long long)c->maxlen);
    argv[argc] = "MAXLEN";
    lens[argc++] = 6;
    argv[argc] = "~";
    lens[argc++] = 1;
    argv[argc] = buf;
    lens[argc++] = strlen(buf);
    return argc;
}

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

static int parse_url(evbus_client_t *c, const char *url, char *err, size_t errlen)
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

evbus_client_t *evbus_client_new(const char *redis_url, const char *stream, char *err,
                                 size_t errlen)
{
    if (!redis_url || !*redis_url) {
        evbus__fail(NULL, err, errlen, -1, "redis url: empty");
        return NULL;
    }
    if (!stream || !*stream) {
        evbus__fail(NULL, err, errlen, -1, "stream: empty name");
        return NULL;
    }
    evbus_client_t *c = calloc(1, sizeof *c);
    if (!c) {
        evbus__fail(NULL, err, errlen, -1, "out of memory");
        return NULL;
    }
    if (parse_url(c, redis_url, err, errlen) != 0) {
        evbus_client_free(c);
        return NULL;
    }
    c->stream = strdup(stream);
    if (!c->stream) {
        evbus__fail(NULL, err, errlen, -1, "out of memory");
        evbus_client_free(c);
        return NULL;
    }
    return c;
}

void evbus_client_free(evbus_client_t *c)
{
    if (!c)
        return;
    if (c->ctx)
        redisFree(c->ctx);
    free(c->host);
    free(c->unix_path);
    free(c->user);
    free(c->password);
    free(c->stream);
    free(c->source);
    free(c);
}

void evbus_client_set_maxlen(evbus_client_t *c, uint64_t maxlen)
{
    c->maxlen = maxlen;
}

void evbus_client_set_id_kind(evbus_client_t *c, evbus_id_kind_t k)
{
    c->id_kind = k;
}

void evbus_client_set_source(evbus_client_t *c, const char *source)
{
    free(c->source);
    c->source = source && *source ? strdup(source) : NULL;
}

const char *evbus_client_error(const evbus_client_t *c)
{
    return c->errbuf;
}

const char *evbus_client_stream(const evbus_client_t *c)
{
    return c->stream;
}

/* Runs one setup command (AUTH, SELECT) on a fresh context. */
static int setup_command(evbus_client_t *c, char *err, size_t errlen, int argc,
                         const char **argv)
{
    redisReply *r = redisCommandArgv(c->ctx, argc, argv, NULL);
    if (!r)
        return evbus__io_fail(c, err, errlen, argv[0]);
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        rc = evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "redis: %s: %s", argv[0], r->str);
        redisFree(c->ctx);
        c->ctx = NULL;
    }
    freeReplyObject(r);
    return rc;
}

redisContext *evbus__conn(evbus_client_t *c, char *err, size_t errlen)
{
    if (c->ctx && c->ctx->err == 0)
        return c->ctx;
    if (c->ctx) {
        redisFree(c->ctx);
        c->ctx = NULL;
    }
    struct timeval ct = {CONNECT_TIMEOUT_MS / 1000, (CONNECT_TIMEOUT_MS % 1000) * 1000};
    c->ctx = c->unix_path ? redisConnectUnixWithTimeout(c->unix_path, ct)
                          : redisConnectWithTimeout(c->host, c->port, ct);
    if (!c->ctx) {
        evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "redis: out of memory");
        return NULL;
    }
    if (c->ctx->err) {
        if (c->unix_path)
            evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "redis %s: %s", c->unix_path,
                        c->ctx->errstr);
        else
            evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "redis %s:%d: %s", c->host,
                        c->port, c->ctx->errstr);
        redisFree(c->ctx);
        c->ctx = NULL;
        return NULL;
    }
    struct timeval tt = {COMMAND_TIMEOUT_MS / 1000, (COMMAND_TIMEOUT_MS % 1000) * 1000};
    redisSetTimeout(c->ctx, tt);
    if (c->password) {
        const char *argv[3] = {"AUTH", c->user ? c->user : c->password, c->password};
        if (setup_command(c, err, errlen, c->user ? 3 : 2, argv) != 0)
            return NULL;
    }
    if (c->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", c->db);
        const char *argv[2] = {"SELECT", db};
        if (setup_command(c, err, errlen, 2, argv) != 0)
            return NULL;
    }
    return c->ctx;
}

redisContext *evbus_client_redis(evbus_client_t *c)
{
    return evbus__conn(c, NULL, 0);
}

/* Interprets an XADD reply; 0 with the id copied, or EVBUS_CLIENT_EREDIS. */
static int xadd_reply(evbus_client_t *c, redisReply *r, char *out_id, size_t out_len, char *err,
                      size_t errlen)
{
    if (r->type == REDIS_REPLY_STRING) {
        if (out_id && out_len)
            snprintf(out_id, out_len, "%s", r->str);
        return 0;
    }
    if (r->type == REDIS_REPLY_ERROR)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "redis: XADD %s: %s", c->stream,
                           r->str);
    return evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS,
                       "redis: XADD %s: unexpected reply type %d", c->stream, r->type);
}

/* Appends (pipelined) or runs one XADD; fields are key/value pairs. */
static int xadd_argv(evbus_client_t *c, const char *stream, const char *const *fields,
                     const size_t *flens, int nfields, bool append, redisReply **reply)
{
    const char *argv[24];
    size_t lens[24];
    char mbuf[24];
    int argc = 0;
    argv[argc] = "XADD";
    lens[argc++] = 4;
    argv[argc] = stream;
    lens[argc++] = strlen(stream);
    argc = evbus__maxlen_args(c, argv, lens, argc, mbuf);
    argv[argc] = "*";
    lens[argc++] = 1;
    for (int i = 0; i < nfields; i++) {
        argv[argc] = fields[i];
        lens[argc++] = flens[i];
    }
    if (append)
        return redisAppendCommandArgv(c->ctx, argc, argv, lens) == REDIS_OK ? 0 : -1;
    *reply = redisCommandArgv(c->ctx, argc, argv, lens);
    return *reply ? 0 : -1;
}

int evbus__xadd(evbus_client_t *c, const char *stream, const char *const *fields,
                const size_t *flens, int nfields, char *out_id, size_t out_len, char *err,
                size_t errlen)
{
    if (nfields > 16)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "too many extra fields");
    if (!evbus__conn(c, err, errlen))
        return EVBUS_CLIENT_EREDIS;
    redisReply *r = NULL;
    if (xadd_argv(c, stream, fields, flens, nfields, false, &r) != 0)
        return evbus__io_fail(c, err, errlen, "XADD");
    int rc = xadd_reply(c, r, out_id, out_len, err, errlen);
    freeReplyObject(r);
    return rc;
}

int evbus_publish(evbus_client_t *c, json_t *ev, char *out_id, size_t out_len, char *err,
                  size_t errlen)
{
    if (out_id && out_len)
        out_id[0] = '\0';
    int rc = evbus_event_complete(c, ev, err, errlen);
    if (rc != 0)
        return rc;
    char *body = json_dumps(ev, JSON_COMPACT);
    if (!body)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "event: cannot serialize");
    const char *fields[2] = {"event", body};
    size_t flens[2] = {5, strlen(body)};
    rc = evbus__xadd(c, c->stream, fields, flens, 2, out_id, out_len, err, errlen);
    free(body);
    return rc;
}

int evbus_publish_raw(evbus_client_t *c, const char *json, size_t len,
                      const char *const *extra_fields, char *out_id, size_t out_len, char *err,
                      size_t errlen)
{
    if (out_id && out_len)
        out_id[0] = '\0';
    const char *fields[16] = {"event", json};
    size_t flens[16] = {5, len};
    int n = 2;
    for (size_t i = 0; extra_fields && extra_fields[i]; i += 2) {
        if (!extra_fields[i + 1])
            return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                               "extra field \"%s\" has no value", extra_fields[i]);
        if (n + 2 > 16)
            return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "too many extra fields");
        fields[n] = extra_fields[i];
        flens[n++] = strlen(extra_fields[i]);
        fields[n] = extra_fields[i + 1];
        flens[n++] = strlen(extra_fields[i + 1]);
    }
    return evbus__xadd(c, c->stream, fields, flens, n, out_id, out_len, err, errlen);
}

/* After a connection failure: every item not confirmed by a reply failed. */
static ssize_t batch_abort(int *rc, char (*out_ids)[EVBUS_STREAM_ID_LEN], size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rc[i] != EVBUS_CLIENT_EINVAL && out_ids[i][0] == '\0')
            rc[i] = EVBUS_CLIENT_EREDIS;
    return -1;
}

ssize_t evbus_publish_batch(evbus_client_t *c, json_t *const *evs, size_t n,
                            char (*out_ids)[EVBUS_STREAM_ID_LEN], int *rc, char *err,
                            size_t errlen)
{
    bool have_err = false;
    size_t published = 0;
    if (err && errlen)
        err[0] = '\0';
    for (size_t i = 0; i < n; i++)
        out_ids[i][0] = '\0';
    /* Every event is completed up front so that bad ones are reported even
     * when Redis is down. */
    for (size_t i = 0; i < n; i++) {
        char msg[256];
        rc[i] = evbus_event_complete(c, evs[i], msg, sizeof msg);
        if (rc[i] != 0 && !have_err) {
            evbus__fail(c, err, errlen, rc[i], "event %zu: %s", i, msg);
            have_err = true;
        }
    }
    /* A connection failure replaces any earlier message: it is what the
     * -1 return reports. */
    if (!evbus__conn(c, err, errlen))
        return batch_abort(rc, out_ids, n);

    for (size_t start = 0; start < n; start += EVBUS_PIPELINE_WINDOW) {
        size_t end = start + EVBUS_PIPELINE_WINDOW < n ? start + EVBUS_PIPELINE_WINDOW : n;
        for (size_t i = start; i < end; i++) {
            if (rc[i] == EVBUS_CLIENT_EINVAL)
                continue;
            rc[i] = EVBUS_CLIENT_EREDIS; /* until its reply says otherwise */
            char *body = json_dumps(evs[i], JSON_COMPACT);
            const char *fields[2] = {"event", body};
            size_t flens[2] = {5, body ? strlen(body) : 0};
            int arc = body ? xadd_argv(c, c->stream, fields, flens, 2, true, NULL) : -1;
            free(body);
            if (arc != 0) {
                /* Out of memory: the commands already appended still get
                 * their replies read below, this one is simply not sent. */
                rc[i] = EVBUS_CLIENT_EINVAL;
                if (!have_err) {
                    evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                                "event %zu: cannot serialize", i);
                    have_err = true;
                }
            }
        }
        for (size_t i = start; i < end; i++) {
            if (rc[i] == EVBUS_CLIENT_EINVAL)
                continue;
            redisReply *r = NULL;
            if (redisGetReply(c->ctx, (void **)&r) != REDIS_OK || !r) {
                evbus__io_fail(c, err, errlen, "XADD");
                return batch_abort(rc, out_ids, n);
            }
            char msg[256];
            rc[i] = xadd_reply(c, r, out_ids[i], EVBUS_STREAM_ID_LEN, msg, sizeof msg);
            freeReplyObject(r);
            if (rc[i] == 0) {
                published++;
            } else {
                out_ids[i][0] = '\0';
                if (!have_err) {
                    evbus__fail(c, err, errlen, rc[i], "event %zu: %s", i, msg);
                    have_err = true;
                }
            }
        }
    }
    return (ssize_t)published;
}
