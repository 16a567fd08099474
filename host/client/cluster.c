/*
 * cluster — the Redis Cluster client of cluster.h: key slots, the slot map,
 * routing, redirects, retries and pipelines, on blocking hiredis contexts.
 *
 * Nodes are kept in one array for the handle's life (an index is a stable
 * name for a node; a node that left the cluster just stays unused), and
 * the map is an array of 16384 node indexes that a refresh replaces whole.
 * It deliberately knows nothing of streams or evbus's keys: the layers
 * above decide keys and hash tags.
 */
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "client_internal.h"
#include "cluster.h"

enum {
    CONNECT_MS = 2000,
    COMMAND_MS = 5000,
    MAX_REDIRECTS = 16,
    RETRY_BUDGET_MS = 5000,
    BACKOFF_FIRST_MS = 10,
    BACKOFF_MAX_MS = 500,
};

/* ---- slots -------------------------------------------------------------- */

uint16_t evbus_cluster_crc16(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned evbus_cluster_keyslot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1)
            return evbus_cluster_crc16(open + 1, (size_t)(close - open - 1)) & 16383;
    }
    return evbus_cluster_crc16(key, len) & 16383;
}

/* snprintf for messages, where truncation is acceptable; returns the
 * bytes written (at most len - 1). */
static size_t say(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static size_t say(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
}

/* Formats err (when given) and returns code. */
static int fail_to(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail_to(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* A key as messages show it: at most 64 bytes, non-printables as '?'. */
static const char *key_text(const char *k, size_t n, char out[80])
{
    size_t o = 0;
    for (size_t i = 0; i < n && o < 64; i++)
        out[o++] = isprint((unsigned char)k[i]) ? k[i] : '?';
    if (n > 64) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

int evbus_cluster_same_slot(size_t n, const char *const *keys, const size_t *lens, char *err,
                            size_t errlen)
{
    if (n == 0)
        return fail_to(err, errlen, EVBUS_CLIENT_EINVAL, "no key to route by");
    size_t l0 = lens ? lens[0] : strlen(keys[0]);
    unsigned slot = evbus_cluster_keyslot(keys[0], l0);
    for (size_t i = 1; i < n; i++) {
        size_t li = lens ? lens[i] : strlen(keys[i]);
        unsigned s = evbus_cluster_keyslot(keys[i], li);
        if (s != slot) {
            char a[80], b[80];
            return fail_to(err, errlen, EVBUS_CLIENT_EINVAL,
                           "CROSSSLOT refused before sending: key \"%s\" is in slot %u and key "
                           "\"%s\" in slot %u; keys one command or script touches must share a "
                           "hash tag {...}",
                           key_text(keys[0], l0, a), slot, key_text(keys[i], li, b), s);
        }
    }
    return (int)slot;
}

/* ---- where a command's keys are ----------------------------------------- */

typedef enum { K_NONE, K_RANGE, K_NUMKEYS, K_STREAMS } key_kind_t;

typedef struct keyspec {
    const char *name;
    key_kind_t kind;
    signed char first, last, step; /* K_RANGE: last < 0 counts from the end */
} keyspec_t;

#define ONE(n) {n, K_RANGE, 1, 1, 1}
static const keyspec_t COMMANDS[] = {
    ONE("GET"), ONE("SET"), ONE("SETNX"), ONE("SETEX"), ONE("PSETEX"), ONE("GETSET"),
    ONE("GETDEL"), ONE("GETEX"), ONE("INCR"), ONE("INCRBY"), ONE("INCRBYFLOAT"), ONE("DECR"),
    ONE("DECRBY"), ONE("APPEND"), ONE("STRLEN"), ONE("SETRANGE"), ONE("GETRANGE"),
    ONE("HSET"), ONE("HSETNX"), ONE("HGET"), ONE("HMGET"), ONE("HMSET"), ONE("HDEL"),
    ONE("HGETALL"), ONE("HLEN"), ONE("HEXISTS"), ONE("HINCRBY"), ONE("HINCRBYFLOAT"),
    ONE("HKEYS"), ONE("HVALS"), ONE("HSCAN"), ONE("HSTRLEN"), ONE("HRANDFIELD"),
    ONE("ZADD"), ONE("ZREM"), ONE("ZRANGE"), ONE("ZRANGEBYSCORE"), ONE("ZRANGEBYLEX"),
    ONE("ZREVRANGE"), ONE("ZREVRANGEBYSCORE"), ONE("ZREMRANGEBYSCORE"), ONE("ZREMRANGEBYRANK"),
    ONE("ZCARD"), ONE("ZSCORE"), ONE("ZMSCORE"), ONE("ZCOUNT"), ONE("ZINCRBY"), ONE("ZPOPMIN"),
    ONE("ZPOPMAX"), ONE("ZRANK"), ONE("ZREVRANK"), ONE("ZSCAN"),
    ONE("SADD"), ONE("SREM"), ONE("SMEMBERS"), ONE("SCARD"), ONE("SISMEMBER"), ONE("SPOP"),
    ONE("SRANDMEMBER"), ONE("SSCAN"),
    ONE("LPUSH"), ONE("RPUSH"), ONE("LPOP"), ONE("RPOP"), ONE("LRANGE"), ONE("LLEN"),
    ONE("LTRIM"), ONE("LINDEX"), ONE("LSET"), ONE("LREM"),
    ONE("XADD"), ONE("XACK"), ONE("XCLAIM"), ONE("XAUTOCLAIM"), ONE("XPENDING"), ONE("XRANGE"),
    ONE("XREVRANGE"), ONE("XLEN"), ONE("XTRIM"), ONE("XDEL"), ONE("XSETID"),
    ONE("EXPIRE"), ONE("PEXPIRE"), ONE("EXPIREAT"), ONE("PEXPIREAT"), ONE("TTL"), ONE("PTTL"),
    ONE("PERSIST"), ONE("TYPE"), ONE("DUMP"), ONE("RESTORE"),
    /* subcommand first, then the key (XGROUP HELP and the like: none) */
    {"XGROUP", K_RANGE, 2, 2, 1}, {"XINFO", K_RANGE, 2, 2, 1}, {"OBJECT", K_RANGE, 2, 2, 1},
    {"DEL", K_RANGE, 1, -1, 1}, {"UNLINK", K_RANGE, 1, -1, 1}, {"EXISTS", K_RANGE, 1, -1, 1},
    {"MGET", K_RANGE, 1, -1, 1}, {"TOUCH", K_RANGE, 1, -1, 1}, {"SUNION", K_RANGE, 1, -1, 1},
    {"SINTER", K_RANGE, 1, -1, 1}, {"SDIFF", K_RANGE, 1, -1, 1},
    {"MSET", K_RANGE, 1, -1, 2}, {"MSETNX", K_RANGE, 1, -1, 2},
    {"RENAME", K_RANGE, 1, 2, 1}, {"RENAMENX", K_RANGE, 1, 2, 1}, {"SMOVE", K_RANGE, 1, 2, 1},
    {"LMOVE", K_RANGE, 1, 2, 1}, {"RPOPLPUSH", K_RANGE, 1, 2, 1}, {"COPY", K_RANGE, 1, 2, 1},
    {"EVAL", K_NUMKEYS, 0, 0, 0}, {"EVALSHA", K_NUMKEYS, 0, 0, 0},
    {"EVAL_RO", K_NUMKEYS, 0, 0, 0}, {"EVALSHA_RO", K_NUMKEYS, 0, 0, 0},
    {"FCALL", K_NUMKEYS, 0, 0, 0}, {"FCALL_RO", K_NUMKEYS, 0, 0, 0},
    {"XREAD", K_STREAMS, 0, 0, 0}, {"XREADGROUP", K_STREAMS, 0, 0, 0},
    {"PING", K_NONE, 0, 0, 0}, {"ECHO", K_NONE, 0, 0, 0}, {"INFO", K_NONE, 0, 0, 0},
    {"TIME", K_NONE, 0, 0, 0}, {"SCRIPT", K_NONE, 0, 0, 0}, {"CLUSTER", K_NONE, 0, 0, 0},
    {"WAIT", K_NONE, 0, 0, 0}, {"DBSIZE", K_NONE, 0, 0, 0}, {"CONFIG", K_NONE, 0, 0, 0},
    {"CLIENT", K_NONE, 0, 0, 0}, {"COMMAND", K_NONE, 0, 0, 0}, {"FUNCTION", K_NONE, 0, 0, 0},
    {"ROLE", K_NONE, 0, 0, 0},
};
#undef ONE

static size_t arg_len(const char *const *argv, const size_t *lens, int i)
{
    return lens ? lens[i] : strlen(argv[i]);
}

static bool arg_is(const char *const *argv, const size_t *lens, int i, const char *word)
{
    size_t n = arg_len(argv, lens, i);
    return n == strlen(word) && strncasecmp(argv[i], word, n) == 0;
}

/* The argument as a non-negative integer, or -1. */
static long arg_count(const char *const *argv, const size_t *lens, int i)
{
    char buf[24];
    size_t n = arg_len(argv, lens, i);
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, argv[i], n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    long v = strtol(buf, &end, 10);
    return errno || *end || v < 0 ? -1 : v;
}

int evbus_cluster_command_keys(int argc, const char *const *argv, const size_t *lens, int *idx,
                               int max)
{
    if (argc < 1)
        return fail_to(NULL, 0, EVBUS_CLIENT_EINVAL, "empty command");
    const keyspec_t *k = NULL;
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0] && !k; i++)
        if (arg_is(argv, lens, 0, COMMANDS[i].name))
            k = &COMMANDS[i];
    if (!k)
        return EVBUS_CLIENT_EINVAL;
    int first = 0, last = -1, step = 1;
    switch (k->kind) {
    case K_NONE:
        return 0;
    case K_RANGE:
        first = k->first;
        last = k->last < 0 ? argc + k->last : k->last;
        step = k->step;
        if (last >= argc)
            last = argc - 1;
        break;
    case K_NUMKEYS: {
        long nk = argc > 2 ? arg_count(argv, lens, 2) : -1;
        if (nk < 0 || nk > argc - 3)
            return EVBUS_CLIENT_EINVAL;
        first = 3;
        last = 2 + (int)nk;
        break;
    }
    case K_STREAMS: {
        int s = 1;
        while (s < argc && !arg_is(argv, lens, s, "STREAMS"))
            s++;
        int rest = argc - s - 1;
        if (s >= argc || rest <= 0 || rest % 2)
            return EVBUS_CLIENT_EINVAL;
        first = s + 1;
        last = s + rest / 2;
        break;
    }
    }
    int n = 0;
    for (int i = first; i <= last && i < argc; i += step) {
        if (n >= max)
            return EVBUS_CLIENT_EINVAL;
        idx[n++] = i;
    }
    return n;
}

/* The slot a command is routed by: its keys' common slot, -1 for a
 * keyless command, or EVBUS_CLIENT_EINVAL with a message (< -1). */
static int command_slot(int argc, const char *const *argv, const size_t *lens, char *err,
                        size_t errlen)
{
    int idx[256];
    int n = evbus_cluster_command_keys(argc, argv, lens, idx, 256);
    if (n < 0) {
        char name[80];
        return fail_to(err, errlen, EVBUS_CLIENT_EINVAL,
                       "%s: not a command the cluster client can route (unknown, not supported "
                       "on a cluster, or malformed keys); route it with "
                       "evbus_cluster_command_slot",
                       argc > 0 ? key_text(argv[0], arg_len(argv, lens, 0), name) : "(none)");
    }
    if (n == 0)
        return -1;
    const char *keys[256];
    size_t klens[256];
    for (int i = 0; i < n; i++) {
        keys[i] = argv[idx[i]];
        klens[i] = arg_len(argv, lens, idx[i]);
    }
    return evbus_cluster_same_slot((size_t)n, keys, klens, err, errlen);
}

/* ---- seeds -------------------------------------------------------------- */

typedef struct seed {
    char *host;
    int port;
    char *user, *password;
} seed_t;

/* Parses one seed URL (a copy of s[0..n)) into *out; 0 or EVBUS_CLIENT_EINVAL. */
static int seed_parse(const char *s, size_t n, seed_t *out, char *err, size_t errlen)
{
    char *url = strndup(s, n);
    evbus_client_t *tmp = calloc(1, sizeof *tmp);
    int rc = 0;
    char why[256];
    if (!url || !tmp) {
        rc = fail_to(err, errlen, EVBUS_CLIENT_EINVAL, "out of memory");
    } else if (n == 0) {
        rc = fail_to(err, errlen, EVBUS_CLIENT_EINVAL, "redis.cluster: empty seed URL");
    } else if (strncmp(url, "redis://", 8) != 0) {
        rc = fail_to(err, errlen, EVBUS_CLIENT_EINVAL,
                     "redis.cluster: seed \"%s\" must start with redis:// (cluster nodes are "
                     "reached over TCP)",
                     url);
    } else if (evbus__parse_url(tmp, url, why, sizeof why) != 0) {
        rc = fail_to(err, errlen, EVBUS_CLIENT_EINVAL, "redis.cluster: %s", why);
    } else if (tmp->db != 0) {
        rc = fail_to(err, errlen, EVBUS_CLIENT_EINVAL,
                     "redis.cluster: seed \"%s\" selects database %d; a cluster has only "
                     "database 0",
                     url, tmp->db);
    } else if (out) {
        out->host = tmp->host;
        out->port = tmp->port;
        out->user = tmp->user;
        out->password = tmp->password;
        tmp->host = tmp->user = tmp->password = NULL;
    }
    free(url);
    if (tmp)
        evbus__url_free(tmp);
    free(tmp);
    return rc;
}

static void seed_free(seed_t *s)
{
    free(s->host);
    free(s->user);
    free(s->password);
}

int evbus_cluster_seeds_check(const char *seeds, char *err, size_t errlen)
{
    if (!seeds || !*seeds)
        return fail_to(err, errlen, EVBUS_CLIENT_EINVAL, "redis.cluster: no seed node");
    for (const char *p = seeds;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (seed_parse(p, n, NULL, err, errlen) != 0)
            return EVBUS_CLIENT_EINVAL;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

/* ---- the handle --------------------------------------------------------- */

typedef struct node {
    char *host;
    int port;
    char addr[300]; /* "host:port", for messages and lookups */
    bool seed;
    redisContext *ctx; /* NULL until needed; dropped after an I/O error */
} node_t;

struct evbus_cluster {
    evbus_cluster_opts_t o;
    char *user, *password; /* of the first seed, for every node */
    node_t *nodes;
    size_t n_nodes, cap_nodes;
    int16_t *map;  /* slot -> node index, -1 unserved; NULL before the first read */
    bool stale;    /* read the map again before the next routing */
    evbus_cluster_stats_t st;
    int errcode;
    char errbuf[512];
};

/* Records the message in the handle and err; returns code. */
static int fail(evbus_cluster_t *c, char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(evbus_cluster_t *c, char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errbuf, sizeof c->errbuf, fmt, ap);
    va_end(ap);
    c->errcode = code;
    if (err && errlen)
        snprintf(err, errlen, "%s", c->errbuf);
    return code;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* The index of node host:port, added when new; -1 when memory runs out. */
static int node_get(evbus_cluster_t *c, const char *host, size_t hlen, int port, bool *added)
{
    if (added)
        *added = false;
    for (size_t i = 0; i < c->n_nodes; i++)
        if (c->nodes[i].port == port && strlen(c->nodes[i].host) == hlen &&
            !memcmp(c->nodes[i].host, host, hlen))
            return (int)i;
    if (c->n_nodes >= INT16_MAX)
        return -1;
    if (c->n_nodes == c->cap_nodes) {
        size_t cap = c->cap_nodes ? c->cap_nodes * 2 : 8;
        node_t *n = realloc(c->nodes, cap * sizeof *n);
        if (!n)
            return -1;
        c->nodes = n;
        c->cap_nodes = cap;
    }
    node_t *n = &c->nodes[c->n_nodes];
    memset(n, 0, sizeof *n);
    n->host = strndup(host, hlen);
    if (!n->host)
        return -1;
    n->port = port;
    snprintf(n->addr, sizeof n->addr, "%s:%d", n->host, port);
    if (added)
        *added = true;
    return (int)c->n_nodes++;
}

evbus_cluster_t *evbus_cluster_new(const char *seeds, const evbus_cluster_opts_t *o, char *err,
                                   size_t errlen)
{
    if (evbus_cluster_seeds_check(seeds, err, errlen) != 0)
        return NULL;
    evbus_cluster_t *c = calloc(1, sizeof *c);
    if (!c) {
        fail_to(err, errlen, EVBUS_CLIENT_EINVAL, "out of memory");
        return NULL;
    }
    if (o)
        c->o = *o;
    if (c->o.connect_timeout_ms <= 0)
        c->o.connect_timeout_ms = CONNECT_MS;
    if (c->o.command_timeout_ms <= 0)
        c->o.command_timeout_ms = COMMAND_MS;
    if (c->o.max_redirects <= 0)
        c->o.max_redirects = MAX_REDIRECTS;
    if (c->o.retry_budget_ms <= 0)
        c->o.retry_budget_ms = RETRY_BUDGET_MS;
    for (const char *p = seeds;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        seed_t s = {0};
        int idx = -1;
        if (seed_parse(p, n, &s, err, errlen) == 0)
            idx = node_get(c, s.host, strlen(s.host), s.port, NULL);
        if (idx >= 0) {
            c->nodes[idx].seed = true;
            if (!c->password && s.password) {
                c->user = s.user;
                c->password = s.password;
                s.user = s.password = NULL;
            }
        }
        seed_free(&s);
        if (idx < 0) {
            fail_to(err, errlen, EVBUS_CLIENT_EINVAL, "out of memory");
            evbus_cluster_free(c);
            return NULL;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    return c;
}

static void node_drop(node_t *n)
{
    if (n->ctx) {
        redisFree(n->ctx);
        n->ctx = NULL;
    }
}

void evbus_cluster_free(evbus_cluster_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_nodes; i++) {
        node_drop(&c->nodes[i]);
        free(c->nodes[i].host);
    }
    free(c->nodes);
    free(c->map);
    free(c->user);
    free(c->password);
    free(c);
}

const char *evbus_cluster_error(const evbus_cluster_t *c)
{
    return c->errbuf;
}

int evbus_cluster_errcode(const evbus_cluster_t *c)
{
    return c->errcode;
}

void evbus_cluster_stats(const evbus_cluster_t *c, evbus_cluster_stats_t *out)
{
    *out = c->st;
}

/* Whether an idle connection is still open: between commands nothing is
 * owed, so anything readable is the peer's FIN or RST.  Checked before
 * each use so that a node that died between two commands makes the next
 * one go elsewhere instead of being lost after it was written. */
static bool idle_alive(redisContext *ctx)
{
    struct pollfd pf = {.fd = ctx->fd, .events = POLLIN | POLLRDHUP};
    return poll(&pf, 1, 0) == 0;
}

/* Node i's connection, opened (with AUTH) when needed; NULL with the
 * reason in why. */
static redisContext *node_conn(evbus_cluster_t *c, int i, char *why, size_t whylen)
{
    node_t *n = &c->nodes[i];
    if (n->ctx && n->ctx->err == 0 && idle_alive(n->ctx))
        return n->ctx;
    if (n->ctx && n->ctx->err == 0) {
        /* the node closed it while idle (it died, or restarted): nothing
         * was sent on it, so what comes next is safe to send elsewhere */
        c->st.conn_errors++;
        c->stale = true;
    }
    node_drop(n);
    int cms = c->o.connect_timeout_ms;
    struct timeval ct = {cms / 1000, (cms % 1000) * 1000};
    n->ctx = redisConnectWithTimeout(n->host, n->port, ct);
    if (!n->ctx || n->ctx->err) {
        say(why, whylen, "redis %s: connect: %s", n->addr,
            n->ctx ? n->ctx->errstr : "out of memory");
        node_drop(n);
        c->st.conn_errors++;
        return NULL;
    }
    c->st.connects++;
    int tms = c->o.command_timeout_ms;
    struct timeval tt = {tms / 1000, (tms % 1000) * 1000};
    redisSetTimeout(n->ctx, tt);
    if (c->password) {
        const char *argv[3] = {"AUTH", c->user ? c->user : c->password, c->password};
        redisReply *r = redisCommandArgv(n->ctx, c->user ? 3 : 2, argv, NULL);
        bool ok = r && r->type != REDIS_REPLY_ERROR;
        if (!ok) {
            say(why, whylen, "redis %s: AUTH: %s", n->addr, r ? r->str : n->ctx->errstr);
            c->st.conn_errors += r ? 0 : 1;
        }
        if (r)
            freeReplyObject(r);
        if (!ok) {
            node_drop(n);
            return NULL;
        }
    }
    return n->ctx;
}

/* ---- the slot map ------------------------------------------------------- */

/* An integer given as an integer or as a string (CLUSTER SLOTS on some
 * 7.0 builds); -1 when it is neither. */
static long long reply_int(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING && r->len > 0 && r->len < 20) {
        char *end;
        long long v = strtoll(r->str, &end, 10);
        return *end ? -1 : v;
    }
    return -1;
}

/* Builds a map from a CLUSTER SLOTS reply given by node `from`; NULL with
 * why when the reply is not one. */
static int16_t *map_from_reply(evbus_cluster_t *c, int from, const redisReply *r, char *why,
                               size_t whylen)
{
    if (r->type != REDIS_REPLY_ARRAY) {
        say(why, whylen, "redis %s: CLUSTER SLOTS: %s", c->nodes[from].addr,
            r->type == REDIS_REPLY_ERROR ? r->str : "not an array");
        return NULL;
    }
    int16_t *map = malloc(EVBUS_CLUSTER_SLOTS * sizeof *map);
    if (!map) {
        say(why, whylen, "out of memory");
        return NULL;
    }
    for (size_t s = 0; s < EVBUS_CLUSTER_SLOTS; s++)
        map[s] = -1;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        long long lo = -1, hi = -1, port = -1;
        const redisReply *m = NULL;
        if (e->type == REDIS_REPLY_ARRAY && e->elements >= 3) {
            lo = reply_int(e->element[0]);
            hi = reply_int(e->element[1]);
            m = e->element[2];
        }
        if (m && m->type == REDIS_REPLY_ARRAY && m->elements >= 2 &&
            m->element[0]->type == REDIS_REPLY_STRING)
            port = reply_int(m->element[1]);
        if (lo < 0 || hi < lo || hi >= EVBUS_CLUSTER_SLOTS || port < 1 || port > 65535) {
            say(why, whylen,
                "redis %s: CLUSTER SLOTS: entry %zu is not [start, end, [host, port, ...], ...]",
                c->nodes[from].addr, i);
            free(map);
            return NULL;
        }
        /* a node that does not know its own address says "" (or "?"): it
         * is the one that answered */
        const char *host = m->element[0]->str;
        size_t hlen = m->element[0]->len;
        if (hlen == 0 || (hlen == 1 && host[0] == '?')) {
            host = c->nodes[from].host;
            hlen = strlen(host);
        }
        int idx = node_get(c, host, hlen, (int)port, NULL);
        if (idx < 0) {
            say(why, whylen, "out of memory");
            free(map);
            return NULL;
        }
        for (long long s = lo; s <= hi; s++)
            map[s] = (int16_t)idx;
    }
    return map;
}

/* Asks node i for the map; 0 (map replaced) or -1 with why. */
static int refresh_from(evbus_cluster_t *c, int i, char *why, size_t whylen)
{
    redisContext *ctx = node_conn(c, i, why, whylen);
    if (!ctx)
        return -1;
    redisReply *r = redisCommand(ctx, "CLUSTER SLOTS");
    if (!r) {
        say(why, whylen, "redis %s: CLUSTER SLOTS: %s", c->nodes[i].addr, ctx->errstr);
        node_drop(&c->nodes[i]);
        c->st.conn_errors++;
        return -1;
    }
    int16_t *map = map_from_reply(c, i, r, why, whylen);
    freeReplyObject(r);
    if (!map)
        return -1;
    free(c->map);
    c->map = map;
    c->stale = false;
    c->st.refreshes++;
    return 0;
}

int evbus_cluster_refresh(evbus_cluster_t *c, char *err, size_t errlen)
{
    /* masters of the current map first (they are the likeliest to be
     * up), then every other node, the seeds last */
    size_t n = c->n_nodes;
    unsigned char *tried = calloc(n ? n : 1, 1);
    if (!tried)
        return fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "out of memory");
    char all[400] = "", why[300];
    size_t used = 0;
    for (int pass = 0; pass < 3; pass++) {
        for (size_t i = 0; i < n; i++) {
            bool master = false;
            if (pass == 0 && c->map)
                for (size_t s = 0; s < EVBUS_CLUSTER_SLOTS && !master; s++)
                    master = c->map[s] == (int16_t)i;
            if (tried[i] || (pass == 0 && !master) || (pass == 1 && c->nodes[i].seed))
                continue;
            tried[i] = 1;
            if (refresh_from(c, (int)i, why, sizeof why) == 0) {
                free(tried);
                return 0;
            }
            if (used < sizeof all)
                used += say(all + used, sizeof all - used, "%s%s", used ? "; " : "", why);
        }
    }
    free(tried);
    return fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "cannot read the cluster's slot map: %s",
                all[0] ? all : "no node known");
}

/* Node serving slot, reading the map first when there is none or it is
 * stale; -1 when no node serves it (why says so). */
static int slot_node(evbus_cluster_t *c, unsigned slot, char *why, size_t whylen)
{
    if ((!c->map || c->stale) && evbus_cluster_refresh(c, why, whylen) != 0 && !c->map)
        return -1;
    int i = c->map[slot];
    if (i < 0)
        say(why, whylen, "slot %u is not served by any master of the cluster's map", slot);
    return i;
}

static bool starts(const redisReply *r, const char *word);

redisContext *evbus_cluster_slot_conn(evbus_cluster_t *c, unsigned slot, char *err,
                                      size_t errlen)
{
    char why[512] = "";
    int i = slot_node(c, slot % EVBUS_CLUSTER_SLOTS, why, sizeof why);
    redisContext *ctx = i < 0 ? NULL : node_conn(c, i, why, sizeof why);
    if (!ctx) {
        c->stale = true; /* a failover may have moved the slot: ask again */
        fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "slot %u: %s", slot, why);
    }
    return ctx;
}

void evbus_cluster_reset(evbus_cluster_t *c)
{
    for (size_t i = 0; i < c->n_nodes; i++)
        node_drop(&c->nodes[i]);
    c->stale = true;
}

bool evbus_cluster_reply_is_redirect(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR &&
           (starts(r, "MOVED") || starts(r, "ASK") || starts(r, "TRYAGAIN") ||
            starts(r, "CLUSTERDOWN"));
}

int evbus_cluster_slot_owner(const evbus_cluster_t *c, unsigned slot, char *out, size_t len)
{
    if (!c->map || slot >= EVBUS_CLUSTER_SLOTS || c->map[slot] < 0)
        return -1;
    snprintf(out, len, "%s", c->nodes[c->map[slot]].addr);
    return 0;
}

int evbus_cluster_master(const evbus_cluster_t *c, size_t i, char *out, size_t len)
{
    if (!c->map)
        return -1;
    unsigned char *seen = calloc(c->n_nodes ? c->n_nodes : 1, 1);
    if (!seen)
        return -1;
    size_t n = 0;
    int rc = -1;
    for (size_t s = 0; s < EVBUS_CLUSTER_SLOTS && rc < 0; s++) {
        int16_t m = c->map[s];
        if (m < 0 || seen[m])
            continue;
        seen[m] = 1;
        if (n++ == i) {
            snprintf(out, len, "%s", c->nodes[m].addr);
            rc = 0;
        }
    }
    free(seen);
    return rc;
}

/* The lowest served slot, for keyless commands; -1 when none. */
static int any_slot(evbus_cluster_t *c, char *why, size_t whylen)
{
    if ((!c->map || c->stale) && evbus_cluster_refresh(c, why, whylen) != 0 && !c->map)
        return -1;
    for (unsigned s = 0; s < EVBUS_CLUSTER_SLOTS; s++)
        if (c->map[s] >= 0)
            return (int)s;
    say(why, whylen, "no slot of the cluster is served");
    return -1;
}

/* ---- redirects ---------------------------------------------------------- */

typedef enum { R_NONE, R_MOVED, R_ASK, R_TRYAGAIN, R_CLUSTERDOWN } redirect_t;

static bool starts(const redisReply *r, const char *word)
{
    size_t n = strlen(word);
    return r->len >= n && memcmp(r->str, word, n) == 0 && (r->len == n || r->str[n] == ' ');
}

/* What an error reply of node `from` asks for; for MOVED and ASK also the
 * node it names (added when new: *added).  An empty host (a node whose
 * preferred endpoint is unknown) means `from`'s host. */
static redirect_t redirect_of(evbus_cluster_t *c, int from, const redisReply *r, int *node,
                              bool *added)
{
    if (!r || r->type != REDIS_REPLY_ERROR)
        return R_NONE;
    if (starts(r, "TRYAGAIN"))
        return R_TRYAGAIN;
    if (starts(r, "CLUSTERDOWN"))
        return R_CLUSTERDOWN;
    redirect_t kind = starts(r, "MOVED") ? R_MOVED : starts(r, "ASK") ? R_ASK : R_NONE;
    if (kind == R_NONE)
        return R_NONE;
    /* "MOVED <slot> <host>:<port>"; the port follows the last ':' (an
     * IPv6 host has colons of its own) */
    const char *sp = memchr(r->str, ' ', r->len);
    const char *addr = sp ? memchr(sp + 1, ' ', r->len - (size_t)(sp + 1 - r->str)) : NULL;
    if (!addr)
        return R_NONE;
    addr++;
    size_t alen = r->len - (size_t)(addr - r->str);
    const char *colon = memrchr(addr, ':', alen);
    if (!colon)
        return R_NONE;
    char port[8];
    size_t plen = alen - (size_t)(colon + 1 - addr);
    if (plen == 0 || plen >= sizeof port)
        return R_NONE;
    memcpy(port, colon + 1, plen);
    port[plen] = '\0';
    int p = atoi(port);
    if (p < 1 || p > 65535)
        return R_NONE;
    if (colon == addr)
        *node = node_get(c, c->nodes[from].host, strlen(c->nodes[from].host), p, added);
    else
        *node = node_get(c, addr, (size_t)(colon - addr), p, added);
    return *node < 0 ? R_NONE : kind;
}

/* A MOVED of `slot` to node `to`: the map follows for that slot.  When
 * `to` is new or served no slot (a replica promoted, a master added) the
 * cluster changed shape, not just one slot: the whole map is read again
 * before the next command, so the failed master's other slots do not
 * cost a MOVED each. */
static void moved_to(evbus_cluster_t *c, unsigned slot, int to, bool added)
{
    bool serving = false;
    if (c->map) {
        for (size_t s = 0; s < EVBUS_CLUSTER_SLOTS && !serving; s++)
            serving = c->map[s] == (int16_t)to;
        c->map[slot] = (int16_t)to;
    }
    c->stale = c->stale || added || !serving;
}

/* Sends (ASKING and) the command to node i and reads its reply.  NULL
 * with why: *sent says whether the command may have reached the node
 * (its reply lost) or was never written (the connect failed). */
static redisReply *node_run(evbus_cluster_t *c, int i, bool asking, int argc,
                            const char *const *argv, const size_t *lens, bool *sent, char *why,
                            size_t whylen)
{
    *sent = false;
    redisContext *ctx = node_conn(c, i, why, whylen);
    if (!ctx)
        return NULL;
    if (asking)
        redisAppendCommand(ctx, "ASKING");
    redisAppendCommandArgv(ctx, argc, (const char **)argv, lens);
    *sent = true;
    redisReply *r = NULL;
    void *vr = NULL;
    if (asking) {
        if (redisGetReply(ctx, &vr) != REDIS_OK)
            goto io;
        freeReplyObject(vr);
        vr = NULL;
    }
    if (redisGetReply(ctx, &vr) != REDIS_OK)
        goto io;
    r = vr;
    return r;
io:;
    char name[80];
    say(why, whylen, "redis %s: %s: %s (the reply is lost: it may have run)", c->nodes[i].addr,
        key_text(argv[0], arg_len(argv, lens, 0), name), ctx->errstr);
    node_drop(&c->nodes[i]);
    c->st.conn_errors++;
    return NULL;
}

/* Backs off before the next attempt; false when the budget is spent. */
static bool backoff(long long deadline, int *delay)
{
    long long left = deadline - now_ms();
    if (left <= 0)
        return false;
    sleep_ms(*delay < left ? *delay : (int)left);
    *delay = *delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *delay * 2;
    return true;
}

/*
 * The routing loop: runs the command for `slot`, starting at node `node`
 * (-1: the map's) with ASKING when `asking`.  Follows MOVED and ASK,
 * retries TRYAGAIN, CLUSTERDOWN and unreachable nodes within the budget.
 */
static redisReply *routed(evbus_cluster_t *c, unsigned slot, int node, bool asking, int argc,
                          const char *const *argv, const size_t *lens, char *err, size_t errlen)
{
    char name[80], why[400] = "";
    key_text(argv[0], arg_len(argv, lens, 0), name);
    long long deadline = now_ms() + c->o.retry_budget_ms;
    int delay = BACKOFF_FIRST_MS, redirects = 0;
    for (;;) {
        if (node < 0 && (node = slot_node(c, slot, why, sizeof why)) < 0) {
            if (backoff(deadline, &delay)) {
                c->stale = true;
                continue;
            }
            break;
        }
        bool sent;
        redisReply *r = node_run(c, node, asking, argc, argv, lens, &sent, why, sizeof why);
        asking = false;
        if (!r) {
            /* a failover may be under way: the next map names the new
             * master.  Resend only what never left. */
            c->stale = true;
            if (!sent && backoff(deadline, &delay)) {
                node = -1;
                continue;
            }
            break;
        }
        int to = -1;
        bool added = false;
        redirect_t rd = redirect_of(c, node, r, &to, &added);
        if (rd == R_NONE)
            return r;
        say(why, sizeof why, "redis %s: %.*s", c->nodes[node].addr, (int)r->len, r->str);
        freeReplyObject(r);
        if (rd == R_MOVED || rd == R_ASK) {
            if (++redirects > c->o.max_redirects) {
                fail(c, err, errlen, EVBUS_CLIENT_EREDIS,
                     "%s (slot %u): more than %d redirects, the last: %s", name, slot,
                     c->o.max_redirects, why);
                return NULL;
            }
            if (rd == R_MOVED) {
                c->st.moved++;
                moved_to(c, slot, to, added);
            } else {
                c->st.ask++;
                asking = true;
            }
            node = to;
            continue;
        }
        if (rd == R_TRYAGAIN)
            c->st.tryagain++;
        else
            c->st.clusterdown++;
        if (!backoff(deadline, &delay))
            break;
        if (rd == R_CLUSTERDOWN) {
            c->stale = true;
            node = -1;
        }
    }
    fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "%s (slot %u): %s%s", name, slot, why,
         now_ms() >= deadline ? " (retried for the whole retry budget)" : "");
    return NULL;
}

/* ---- commands ----------------------------------------------------------- */

redisReply *evbus_cluster_command_slot(evbus_cluster_t *c, unsigned slot, int argc,
                                       const char *const *argv, const size_t *lens, char *err,
                                       size_t errlen)
{
    if (argc < 1 || slot >= EVBUS_CLUSTER_SLOTS) {
        fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "cluster command: %s",
             argc < 1 ? "empty command" : "slot out of range (0..16383)");
        return NULL;
    }
    return routed(c, slot, -1, false, argc, argv, lens, err, errlen);
}

redisReply *evbus_cluster_command(evbus_cluster_t *c, int argc, const char *const *argv,
                                  const size_t *lens, char *err, size_t errlen)
{
    char why[400];
    int slot = command_slot(argc, argv, lens, why, sizeof why);
    if (slot < -1) {
        fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "%s", why);
        return NULL;
    }
    if (slot == -1 && (slot = any_slot(c, why, sizeof why)) < 0) {
        fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "%s", why);
        return NULL;
    }
    return routed(c, (unsigned)slot, -1, false, argc, argv, lens, err, errlen);
}

redisReply *evbus_cluster_command_node(evbus_cluster_t *c, const char *addr, int argc,
                                       const char *const *argv, const size_t *lens, char *err,
                                       size_t errlen)
{
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    int port = colon ? atoi(colon + 1) : 0;
    if (argc < 1 || !colon || colon == addr || port < 1 || port > 65535) {
        fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "cluster command: node \"%s\" is not host:port",
             addr ? addr : "");
        return NULL;
    }
    int i = node_get(c, addr, (size_t)(colon - addr), port, NULL);
    if (i < 0) {
        fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "out of memory");
        return NULL;
    }
    bool sent;
    char why[400];
    redisReply *r = node_run(c, i, false, argc, argv, lens, &sent, why, sizeof why);
    if (!r) {
        c->stale = true;
        fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "%s", why);
    }
    return r;
}

/* ---- pipelines ---------------------------------------------------------- */

typedef struct pcmd {
    int argc;
    char **argv;
    size_t *lens;
    unsigned slot;
    bool keyless;  /* routed to any served slot at exec */
    int node;      /* at exec: where it went, -1 not sent */
    bool sent;
    redisReply *reply;
    char *err;     /* why there is no reply */
} pcmd_t;

struct evbus_cluster_pipe {
    evbus_cluster_t *c;
    pcmd_t *q; /* appended, not yet sent */
    size_t nq, capq;
    pcmd_t *res; /* the last exec's */
    size_t nres;
};

evbus_cluster_pipe_t *evbus_cluster_pipe_new(evbus_cluster_t *c)
{
    evbus_cluster_pipe_t *p = calloc(1, sizeof *p);
    if (p)
        p->c = c;
    return p;
}

static void pcmd_clear(pcmd_t *k)
{
    for (int i = 0; i < k->argc; i++)
        free(k->argv[i]);
    free(k->argv);
    free(k->lens);
    if (k->reply)
        freeReplyObject(k->reply);
    free(k->err);
}

static void res_clear(evbus_cluster_pipe_t *p)
{
    for (size_t i = 0; i < p->nres; i++)
        pcmd_clear(&p->res[i]);
    free(p->res);
    p->res = NULL;
    p->nres = 0;
}

void evbus_cluster_pipe_free(evbus_cluster_pipe_t *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nq; i++)
        pcmd_clear(&p->q[i]);
    free(p->q);
    res_clear(p);
    free(p);
}

static int pipe_add(evbus_cluster_pipe_t *p, int slot, int argc, const char *const *argv,
                    const size_t *lens, char *err, size_t errlen)
{
    if (p->nq == p->capq) {
        size_t cap = p->capq ? p->capq * 2 : 16;
        pcmd_t *q = realloc(p->q, cap * sizeof *q);
        if (!q)
            return fail(p->c, err, errlen, EVBUS_CLIENT_EINVAL, "out of memory");
        p->q = q;
        p->capq = cap;
    }
    pcmd_t k = {.argc = argc, .slot = slot < 0 ? 0 : (unsigned)slot, .keyless = slot < 0,
                .node = -1};
    k.argv = calloc((size_t)argc, sizeof *k.argv);
    k.lens = calloc((size_t)argc, sizeof *k.lens);
    bool ok = k.argv && k.lens;
    for (int i = 0; ok && i < argc; i++) {
        k.lens[i] = arg_len(argv, lens, i);
        k.argv[i] = malloc(k.lens[i] + 1);
        ok = k.argv[i] != NULL;
        if (ok) {
            memcpy(k.argv[i], argv[i], k.lens[i]);
            k.argv[i][k.lens[i]] = '\0';
        }
    }
    if (!ok) {
        k.argc = argc;
        pcmd_clear(&k);
        return fail(p->c, err, errlen, EVBUS_CLIENT_EINVAL, "out of memory");
    }
    p->q[p->nq++] = k;
    return 0;
}

int evbus_cluster_pipe_append(evbus_cluster_pipe_t *p, int argc, const char *const *argv,
                              const size_t *lens, char *err, size_t errlen)
{
    char why[400];
    int slot = command_slot(argc, argv, lens, why, sizeof why);
    if (slot < -1)
        return fail(p->c, err, errlen, EVBUS_CLIENT_EINVAL, "%s", why);
    return pipe_add(p, slot, argc, argv, lens, err, errlen);
}

int evbus_cluster_pipe_append_slot(evbus_cluster_pipe_t *p, unsigned slot, int argc,
                                   const char *const *argv, const size_t *lens, char *err,
                                   size_t errlen)
{
    if (argc < 1 || slot >= EVBUS_CLUSTER_SLOTS)
        return fail(p->c, err, errlen, EVBUS_CLIENT_EINVAL, "cluster pipeline: %s",
                    argc < 1 ? "empty command" : "slot out of range (0..16383)");
    return pipe_add(p, (int)slot, argc, argv, lens, err, errlen);
}

size_t evbus_cluster_pipe_count(const evbus_cluster_pipe_t *p)
{
    return p->nres;
}

redisReply *evbus_cluster_pipe_reply(const evbus_cluster_pipe_t *p, size_t i)
{
    return i < p->nres ? p->res[i].reply : NULL;
}

const char *evbus_cluster_pipe_error(const evbus_cluster_pipe_t *p, size_t i)
{
    return i < p->nres && p->res[i].err ? p->res[i].err : "";
}

/* Writes everything hiredis holds for ctx; false on an I/O error. */
static bool flush_all(redisContext *ctx)
{
    int done = 0;
    while (!done)
        if (redisBufferWrite(ctx, &done) != REDIS_OK)
            return false;
    return true;
}

int evbus_cluster_pipe_exec(evbus_cluster_pipe_t *p, char *err, size_t errlen)
{
    evbus_cluster_t *c = p->c;
    res_clear(p);
    p->res = p->q;
    p->nres = p->nq;
    p->q = NULL;
    p->nq = p->capq = 0;
    if (p->nres == 0)
        return 0;
    char why[400] = "";
    int any = -1;
    if ((!c->map || c->stale) && evbus_cluster_refresh(c, why, sizeof why) != 0 && !c->map)
        return fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "cluster pipeline: %s", why);
    for (unsigned s = 0; s < EVBUS_CLUSTER_SLOTS && any < 0; s++)
        if (c->map[s] >= 0)
            any = (int)s;
    /* 1. append each command to its node's buffer (connecting as needed;
     * a node that cannot be reached is tried once per exec) */
    unsigned char *down = calloc(c->n_nodes, 1);
    if (!down)
        return fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "out of memory");
    for (size_t i = 0; i < p->nres; i++) {
        pcmd_t *k = &p->res[i];
        if (k->keyless && any >= 0)
            k->slot = (unsigned)any;
        int n = c->map[k->slot];
        if (n < 0 || down[n])
            continue; /* run alone below: nothing was sent */
        if (!node_conn(c, n, why, sizeof why)) {
            down[n] = 1;
            continue;
        }
        redisAppendCommandArgv(c->nodes[n].ctx, k->argc, (const char **)k->argv, k->lens);
        k->node = n;
        k->sent = true;
    }
    free(down);
    /* 2. write every node's buffer before reading any reply */
    for (size_t n = 0; n < c->n_nodes; n++) {
        redisContext *ctx = c->nodes[n].ctx;
        if (ctx && ctx->err == 0 && !flush_all(ctx))
            c->st.conn_errors++;
    }
    /* 3. read the replies: each node's come in its append order */
    for (size_t i = 0; i < p->nres; i++) {
        pcmd_t *k = &p->res[i];
        if (!k->sent)
            continue;
        node_t *nd = &c->nodes[k->node];
        void *vr = NULL;
        if (nd->ctx && nd->ctx->err == 0 && redisGetReply(nd->ctx, &vr) == REDIS_OK) {
            k->reply = vr;
            continue;
        }
        char name[80];
        if (asprintf(&k->err, "redis %s: %s: %s (the reply is lost: it may have run)",
                     nd->addr, key_text(k->argv[0], k->lens[0], name),
                     nd->ctx ? nd->ctx->errstr : "connection lost") < 0)
            k->err = NULL;
        if (nd->ctx) {
            node_drop(nd);
            c->st.conn_errors++;
        }
        c->stale = true;
    }
    /* 4. what was redirected or never sent runs alone, through the
     * routing loop */
    int failed = 0;
    for (size_t i = 0; i < p->nres; i++) {
        pcmd_t *k = &p->res[i];
        int node = -1;
        bool asking = false;
        if (k->sent && !k->reply) {
            failed++;
            continue;
        }
        if (k->reply) {
            int to = -1;
            bool added = false;
            redirect_t rd = redirect_of(c, k->node, k->reply, &to, &added);
            if (rd == R_NONE)
                continue;
            if (rd == R_MOVED) {
                c->st.moved++;
                moved_to(c, k->slot, to, added);
                node = to;
            } else if (rd == R_ASK) {
                c->st.ask++;
                node = to;
                asking = true;
            } else {
                if (rd == R_TRYAGAIN)
                    c->st.tryagain++;
                else
                    c->st.clusterdown++;
            }
            freeReplyObject(k->reply);
            k->reply = NULL;
        }
        k->reply = routed(c, k->slot, node, asking, k->argc, (const char *const *)k->argv,
                          k->lens, why, sizeof why);
        if (!k->reply) {
            failed++;
            free(k->err);
            k->err = strdup(why);
        }
    }
    return failed;
}
