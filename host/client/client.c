/*
 * client — the connection (URL parsing, lazy connect, reconnect after I/O
 * errors) and the publish paths: one event, a pipelined batch, raw bytes.
 *
 * Batches bypass hiredis' command formatting and reply objects: the XADD
 * protocol is written into one buffer, sent and read on the context's
 * socket without blocking while more commands are built, and the replies
 * (bulk ids or errors) are parsed in place.  The context is left with
 * nothing pending, or dropped after any I/O or protocol failure.
 *
 * Publishing never retries by itself: after a Redis failure the caller
 * decides (an XADD whose reply was lost may or may not have been written,
 * and only the caller knows whether a duplicate is acceptable).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "client_internal.h"
#include "cluster.h"
#include "partition.h"
#include "retention_lua.h"

enum { CONNECT_TIMEOUT_MS = 2000, COMMAND_TIMEOUT_MS = 5000 };

int evbus__io_fail(evbus_client_t *c, char *err, size_t errlen, const char *what)
{
    const char *why = c->ctx && c->ctx->errstr[0] ? c->ctx->errstr : "connection lost";
    evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "redis: %s: %s", what, why);
    evbus__drop(c);
    return EVBUS_CLIENT_EREDIS;
}

void evbus__drop(evbus_client_t *c)
{
    if (c->cl)
        evbus_cluster_reset(c->cl);
    else if (c->ctx)
        redisFree(c->ctx);
    c->ctx = NULL;
}

void evbus__wait_replicas(evbus_client_t *c)
{
    if (!c->wait_n || !c->ctx || c->cl)
        return;
    c->waits++;
    redisReply *r = redisCommand(c->ctx, "WAIT %u %u", c->wait_n, c->wait_ms);
    if (!r || r->type != REDIS_REPLY_INTEGER || r->integer < (long long)c->wait_n)
        c->wait_short++;
    if (r) {
        freeReplyObject(r);
    } else {
        redisFree(c->ctx); /* out of step or gone: the next call reconnects */
        c->ctx = NULL;
    }
}

void evbus_client_set_wait_replicas(evbus_client_t *c, unsigned replicas, uint32_t timeout_ms)
{
    c->wait_n = replicas;
    c->wait_ms = timeout_ms ? timeout_ms : 1000;
}

uint64_t evbus_client_wait_short(const evbus_client_t *c, uint64_t *waits)
{
    if (waits)
        *waits = c->waits;
    return c->wait_short;
}

static const char GUARD_LUA[] = EVBUS_RETENTION_LUA_PUBLISH;

int evbus__xadd_head(const evbus_client_t *c, const char *stream, const char **argv,
                     size_t *lens, int argc, evbus__head_t *h)
{
    if (c->guard != 1) {
        argv[argc] = "XADD", lens[argc++] = 4;
        argv[argc] = stream, lens[argc++] = strlen(stream);
        argv[argc] = "*", lens[argc++] = 1;
        return argc;
    }
    snprintf(h->policy, sizeof h->policy, "%s:retention", stream);
    snprintf(h->full, sizeof h->full, "%s:retention:full", stream);
    snprintf(h->max, sizeof h->max, "%u", evbus__guard_max(c));
    argv[argc] = "EVALSHA", lens[argc++] = 7;
    argv[argc] = c->guard_sha, lens[argc++] = strlen(c->guard_sha);
    argv[argc] = "3", lens[argc++] = 1;
    argv[argc] = stream, lens[argc++] = strlen(stream);
    argv[argc] = h->policy, lens[argc++] = strlen(h->policy);
    argv[argc] = h->full, lens[argc++] = strlen(h->full);
    argv[argc] = h->max, lens[argc++] = strlen(h->max);
    return argc;
}

bool evbus__is_full(const char *s, size_t len)
{
    return len >= 9 && memcmp(s, "EVBUSFULL", 9) == 0;
}

static const char *part_stream(evbus_client_t *c, unsigned p);

/* Takes the policy hash's HMGET reply r (max_entries max_bytes on_full
 * block_ms): whether XADDs go through the guard, and on_full. */
static void apply_policy(evbus_client_t *c, const redisReply *r)
{
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 4) {
        long long me = r->element[0]->str ? strtoll(r->element[0]->str, NULL, 10) : 0;
        long long mb = r->element[1]->str ? strtoll(r->element[1]->str, NULL, 10) : 0;
        c->guard = me > 0 || mb > 0;
        c->guard_max = 0; /* the guard reads the hash itself */
        c->block = r->element[2]->str && !strcmp(r->element[2]->str, "block");
        c->block_ms = r->element[3]->str ? strtoull(r->element[3]->str, NULL, 10) : 0;
    } else {
        c->guard = 0;
    }
}

/* The stream's retention policy, as evbusd publishes it: decides whether
 * this client's XADDs go through the guard.  Unless the caller decided
 * (evbus_client_set_retention).  Called when a connection opens.  With
 * partitions, evbusd writes one policy per partition, the same but for
 * the caps' shares: partition 0's decides, and the guard of each
 * partition reads its own caps from its own hash. */
static void read_policy(evbus_client_t *c)
{
    if (!c->ctx)
        return;
    redisReply *r = NULL;
    if (!c->guard_explicit) {
        const char *first = part_stream(c, 0);
        if (!first) {
            c->guard = 0; /* out of memory: the publish reports it */
            return;
        }
        r = redisCommand(c->ctx, "HMGET %s:retention max_entries max_bytes on_full block_ms",
                         first);
        if (!r)
            return; /* the next command reports the connection */
    }
    if (r) {
        apply_policy(c, r);
        freeReplyObject(r);
    }
    if (c->guard != 1)
        return;
    /* the guard runs by its SHA: the script text (a few KB) is sent once
     * per connection, not once per event */
    const char *argv[3] = {"SCRIPT", "LOAD", GUARD_LUA};
    r = redisCommandArgv(c->ctx, 3, argv, NULL);
    if (r && r->type == REDIS_REPLY_STRING)
        snprintf(c->guard_sha, sizeof c->guard_sha, "%s", r->str);
    else
        snprintf(c->guard_sha, sizeof c->guard_sha, "0"); /* fails visibly: NOSCRIPT */
    if (r)
        freeReplyObject(r);
}

void evbus_client_set_retention(evbus_client_t *c, uint32_t max_entries, int on_full_block,
                                uint64_t block_ms)
{
    c->guard_explicit = true;
    c->guard = 1;
    c->guard_max = max_entries;
    c->block = on_full_block != 0;
    c->block_ms = block_ms;
}

/* A client of `stream` with nothing to reach it yet (evbus_client_new and
 * evbus_client_new_cluster fill that in); NULL with the reason in err. */
static evbus_client_t *client_alloc(const char *stream, char *err, size_t errlen)
{
    if (!stream || !*stream) {
        evbus__fail(NULL, err, errlen, -1, "stream: empty name");
        return NULL;
    }
    evbus_client_t *c = calloc(1, sizeof *c);
    if (c && !(c->stream = strdup(stream))) {
        free(c);
        c = NULL;
    }
    if (!c) {
        evbus__fail(NULL, err, errlen, -1, "out of memory");
        return NULL;
    }
    c->partitions = 1;
    return c;
}

evbus_client_t *evbus_client_new(const char *redis_url, const char *stream, char *err,
                                 size_t errlen)
{
    if (!redis_url || !*redis_url) {
        evbus__fail(NULL, err, errlen, -1, "redis url: empty");
        return NULL;
    }
    evbus_client_t *c = client_alloc(stream, err, errlen);
    if (c && evbus__parse_url(c, redis_url, err, errlen) != 0) {
        evbus_client_free(c);
        return NULL;
    }
    return c;
}

int evbus_client_set_partitions(evbus_client_t *c, unsigned partitions)
{
    if (partitions < 1 || partitions > EVBUS_PARTITIONS_MAX)
        return evbus__fail(c, NULL, 0, EVBUS_CLIENT_EINVAL,
                           "partitions: %u is not a partition count (1..%d)", partitions,
                           EVBUS_PARTITIONS_MAX);
    if (c->part_names)
        for (unsigned p = 0; p < c->partitions; p++)
            free(c->part_names[p]);
    free(c->part_names);
    c->part_names = NULL;
    c->partitions = partitions;
    c->parts_ok = false;
    if (c->ctx) /* the next command compares on a new connection */
        evbus__drop(c);
    return 0;
}

/* The stream of partition p (made on first use); NULL when memory runs
 * out. */
static const char *part_stream(evbus_client_t *c, unsigned p)
{
    if (c->partitions <= 1)
        return c->stream;
    if (!c->part_names && !(c->part_names = calloc(c->partitions, sizeof *c->part_names)))
        return NULL;
    if (!c->part_names[p]) {
        int n = evbus_partition_key_name(NULL, 0, c->stream, p, true, "");
        if (n < 0 || !(c->part_names[p] = malloc((size_t)n + 1)))
            return NULL;
        evbus_partition_key_name(c->part_names[p], (size_t)n + 1, c->stream, p, true, "");
    }
    return c->part_names[p];
}

const char *evbus__event_stream(evbus_client_t *c, const json_t *ev)
{
    if (c->partitions <= 1)
        return c->stream;
    int p = evbus_event_partition(ev, c->partitions);
    return p < 0 ? NULL : part_stream(c, (unsigned)p);
}

/* The partition of the event text[0..len) among c->partitions (> 1), or
 * -1 when it has no key. */
static int text_partition(evbus_client_t *c, const char *text, size_t len)
{
    /* the scanner's values are the raw bytes of escape-free strings, so
     * they are the decoded keys; anything else goes through jansson */
    evbus__scan_t sc;
    if (evbus__scan_event(text, len, &sc) == 0) {
        static const int order[] = {EVBUS__A_PARTITIONKEY, EVBUS__A_TENANTID, EVBUS__A_ID};
        for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
            if (sc.val[order[i]] && sc.len[order[i]] > 0)
                return (int)evbus_partition_of(sc.val[order[i]], sc.len[order[i]],
                                               c->partitions);
        return -1;
    }
    json_t *ev = json_loadb(text, len, 0, NULL);
    int p = ev ? evbus_event_partition(ev, c->partitions) : -1;
    json_decref(ev);
    return p;
}

const char *evbus__text_stream(evbus_client_t *c, const char *text, size_t len)
{
    if (c->partitions <= 1)
        return c->stream;
    int p = text_partition(c, text, len);
    return p < 0 ? NULL : part_stream(c, (unsigned)p);
}

void evbus_client_free(evbus_client_t *c)
{
    if (!c)
        return;
    if (c->cl)
        evbus_cluster_free(c->cl);
    else if (c->ctx)
        redisFree(c->ctx);
    evbus__url_free(c);
    free(c->stream);
    if (c->part_names)
        for (unsigned p = 0; p < c->partitions; p++)
            free(c->part_names[p]);
    free(c->part_names);
    free(c->source);
    free(c->default_source);
    free(c);
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

/* Connect c->ctx with the given timeouts, AUTH and SELECT as the URL says. */
static redisContext *conn_open(evbus_client_t *c, int connect_ms, int command_ms, char *err,
                               size_t errlen)
{
    struct timeval ct = {connect_ms / 1000, (connect_ms % 1000) * 1000};
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
    struct timeval tt = {command_ms / 1000, (command_ms % 1000) * 1000};
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

redisContext *evbus__conn(evbus_client_t *c, char *err, size_t errlen)
{
    if (c->cl)
        return evbus__conn_key(c, c->stream, err, errlen);
    if (c->ctx && c->ctx->err == 0)
        return c->ctx;
    if (c->ctx) {
        redisFree(c->ctx);
        c->ctx = NULL;
    }
    if (!conn_open(c, CONNECT_TIMEOUT_MS, COMMAND_TIMEOUT_MS, err, errlen))
        return NULL;
    /* each connection compares the partition count first: a publisher
     * must never write to partitions the consumers do not read */
    unsigned recorded = 0;
    char why[600];
    int prc = evbus_partitions_check(c->ctx, c->stream, c->partitions, true, &recorded, why,
                                     sizeof why);
    if (prc != 0) {
        if (prc > 0)
            evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS,
                        "partitions: this client publishes with %u partition%s, but %s; see "
                        "docs/scale-out.md, \"The recorded partition count\"", c->partitions,
                        c->partitions == 1 ? "" : "s", why);
        else
            evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "%s", why);
        redisFree(c->ctx);
        c->ctx = NULL;
        return NULL;
    }
    read_policy(c);
    return c->ctx;
}

redisContext *evbus_redis_connect(const char *url, int connect_timeout_ms,
                                  int command_timeout_ms, char *err, size_t errlen)
{
    evbus_client_t *c = calloc(1, sizeof *c);
    if (!c) {
        evbus__fail(NULL, err, errlen, -1, "out of memory");
        return NULL;
    }
    redisContext *ctx = NULL;
    if (evbus__parse_url(c, url ? url : "", err, errlen) == 0)
        ctx = conn_open(c, connect_timeout_ms > 0 ? connect_timeout_ms : CONNECT_TIMEOUT_MS,
                        command_timeout_ms > 0 ? command_timeout_ms : COMMAND_TIMEOUT_MS, err,
                        errlen);
    c->ctx = NULL; /* the caller owns it now */
    evbus_client_free(c);
    return ctx;
}

redisContext *evbus_client_redis(evbus_client_t *c)
{
    if (c->cl) {
        evbus__fail(c, NULL, 0, EVBUS_CLIENT_EINVAL,
                    "redis: this client publishes to a Redis Cluster: it has no one connection "
                    "(each key's commands go to the node serving its slot)");
        return NULL;
    }
    return evbus__conn(c, NULL, 0);
}

/* ---------------------------------------------------------------- cluster */

/*
 * On a Redis Cluster (evbus_client_new_cluster) the client holds a cluster
 * handle (cluster.h) instead of one connection.  Every key of a partition
 * shares the hash tag "{<stream>:<p>}", so one event's XADD (or guard
 * script) is one slot, one node; batches and pipelines go through the
 * handle's pipelines, which write each node's commands in order, so the
 * events of one key (one partition, one slot, one node) land in publish
 * order.  A MOVED, ASK, TRYAGAIN or CLUSTERDOWN reply means the command did
 * not run: the handle follows or retries it within its budget.  A lost
 * reply is reported, never retried (the XADD may have run).
 */

evbus_client_t *evbus_client_new_cluster(const char *seeds, const char *stream, char *err,
                                         size_t errlen)
{
    if (!seeds || !*seeds) {
        evbus__fail(NULL, err, errlen, -1, "redis cluster: no seed node");
        return NULL;
    }
    evbus_client_t *c = client_alloc(stream, err, errlen);
    if (!c)
        return NULL;
    evbus_cluster_opts_t o = {.connect_timeout_ms = CONNECT_TIMEOUT_MS,
                              .command_timeout_ms = COMMAND_TIMEOUT_MS};
    if (!(c->cl = evbus_cluster_new(seeds, &o, err, errlen))) {
        evbus_client_free(c);
        return NULL;
    }
    return c;
}

bool evbus_client_is_cluster(const evbus_client_t *c)
{
    return c->cl != NULL;
}

redisContext *evbus_client_redis_key(evbus_client_t *c, const char *key)
{
    return evbus__conn_key(c, key, NULL, 0);
}

int evbus_client_check(evbus_client_t *c, char *err, size_t errlen)
{
    return evbus__conn(c, err, errlen) ? 0 : EVBUS_CLIENT_EREDIS;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* SCRIPT LOAD of the guard on every master of the map (scripts are per
 * node); its SHA into c->guard_sha ("0" when no node answered: the first
 * XADD then meets NOSCRIPT and loads it on its own node). */
static void cluster_load_guard(evbus_client_t *c)
{
    const char *argv[3] = {"SCRIPT", "LOAD", GUARD_LUA};
    char addr[300];
    snprintf(c->guard_sha, sizeof c->guard_sha, "0");
    for (size_t i = 0; evbus_cluster_master(c->cl, i, addr, sizeof addr) == 0; i++) {
        redisReply *r = evbus_cluster_command_node(c->cl, addr, 3, argv, NULL, NULL, 0);
        if (r && r->type == REDIS_REPLY_STRING)
            snprintf(c->guard_sha, sizeof c->guard_sha, "%s", r->str);
        if (r)
            freeReplyObject(r);
    }
}

/*
 * What one server does when a connection opens, done once on a cluster
 * (and again after evbus_client_set_partitions): the partition count
 * compared with the record — whose key and the stream's are in different
 * slots, so on two connections — then the retention policy of partition
 * 0 read and the guard loaded.  A redirect or an unreachable node during
 * the comparison is retried a few times after reading the map again.
 */
static int cluster_setup(evbus_client_t *c, char *err, size_t errlen)
{
    if (c->partitions < 2)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                           "partitions: a client on a Redis Cluster publishes with 2 or more "
                           "partitions (evbus_client_set_partitions; evbusd refuses 1 on a "
                           "cluster, since one stream would live on one master); see "
                           "docs/scale-out.md");
    char rkey[600];
    snprintf(rkey, sizeof rkey, "%s" EVBUS_PARTITIONS_RECORD_SUFFIX, c->stream);
    unsigned rslot = evbus_cluster_keyslot(rkey, strlen(rkey));
    unsigned sslot = evbus_cluster_keyslot(c->stream, strlen(c->stream));
    for (int attempt = 0;; attempt++) {
        char why[600] = "";
        unsigned recorded = 0;
        int prc = -1;
        redisContext *sc = evbus_cluster_slot_conn(c->cl, sslot, why, sizeof why);
        /* the record's connection last: getting it cannot close sc's, and
         * getting sc's first may have replaced a broken one of its node */
        redisContext *rc = sc ? evbus_cluster_slot_conn(c->cl, rslot, why, sizeof why) : NULL;
        if (rc && sc)
            prc = evbus_partitions_check_on(rc, sc, c->stream, c->partitions, true, &recorded,
                                            why, sizeof why);
        if (prc > 0)
            return evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS,
                               "partitions: this client publishes with %u partitions, but %s; "
                               "see docs/scale-out.md, \"The recorded partition count\"",
                               c->partitions, why);
        if (prc == 0)
            break;
        evbus_cluster_reset(c->cl);
        if (attempt >= 4)
            return evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "redis cluster: %s", why);
        sleep_ms(50L << attempt);
    }
    if (!c->guard_explicit) {
        const char *first = part_stream(c, 0);
        char key[600], why[400];
        if (!first)
            return evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "out of memory");
        snprintf(key, sizeof key, "%s:retention", first);
        const char *argv[6] = {"HMGET", key, "max_entries", "max_bytes", "on_full", "block_ms"};
        redisReply *r = evbus_cluster_command(c->cl, 6, argv, NULL, why, sizeof why);
        if (!r)
            return evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "redis: HMGET %s: %s", key,
                               why);
        apply_policy(c, r);
        freeReplyObject(r);
    }
    if (c->guard == 1)
        cluster_load_guard(c);
    c->parts_ok = true;
    return 0;
}

redisContext *evbus__conn_key(evbus_client_t *c, const char *key, char *err, size_t errlen)
{
    if (!c->cl)
        return evbus__conn(c, err, errlen);
    if (!c->parts_ok && cluster_setup(c, err, errlen) != 0)
        return NULL;
    char why[400];
    c->ctx = evbus_cluster_slot_conn(c->cl, evbus_cluster_keyslot(key, strlen(key)), why,
                                     sizeof why);
    if (!c->ctx)
        evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "%s", why);
    return c->ctx;
}

/* WAIT on the node serving `slot`, on the connection the writes went
 * through (the handle keeps one per node). */
static void cluster_wait_slot(evbus_client_t *c, unsigned slot)
{
    char n[16], ms[16];
    snprintf(n, sizeof n, "%u", c->wait_n);
    snprintf(ms, sizeof ms, "%u", c->wait_ms);
    const char *argv[3] = {"WAIT", n, ms};
    c->waits++;
    redisReply *r = evbus_cluster_command_slot(c->cl, slot, 3, argv, NULL, NULL, 0);
    if (!r || r->type != REDIS_REPLY_INTEGER || r->integer < (long long)c->wait_n)
        c->wait_short++;
    if (r)
        freeReplyObject(r);
}

/* One WAIT per node that a call wrote to: wrote[p] says partition p got an
 * event.  Nodes are told apart by address, so two partitions on one
 * master cost one WAIT. */
static void cluster_wait_parts(evbus_client_t *c, const bool *wrote)
{
    if (!c->wait_n)
        return;
    char(*done)[300] = calloc(c->partitions, sizeof *done);
    size_t ndone = 0;
    for (unsigned p = 0; p < c->partitions && done; p++) {
        const char *stream = wrote[p] ? part_stream(c, p) : NULL;
        if (!stream)
            continue;
        unsigned slot = evbus_cluster_keyslot(stream, strlen(stream));
        char addr[300];
        if (evbus_cluster_slot_owner(c->cl, slot, addr, sizeof addr) != 0)
            snprintf(addr, sizeof addr, "slot %u", slot);
        bool seen = false;
        for (size_t k = 0; k < ndone && !seen; k++)
            seen = !strcmp(done[k], addr);
        if (seen)
            continue;
        snprintf(done[ndone++], sizeof done[0], "%s", addr);
        cluster_wait_slot(c, slot);
    }
    free(done);
}

/* The guard's NOSCRIPT: a node that never had it (a replica promoted, a
 * restart, a node added by a reshard). */
static bool is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && r->len >= 8 && !memcmp(r->str, "NOSCRIPT", 8);
}

/*
 * One XADD (or guard script) on a cluster; fields are key/value pairs.  The
 * handle follows redirects and retries what did not run within its budget;
 * a node that answers NOSCRIPT gets SCRIPT LOAD and the command again
 * (once).  The reply, or NULL with the reason recorded (err).
 */
static redisReply *cluster_xadd(evbus_client_t *c, const char *stream, const char *const *fields,
                                const size_t *flens, int nfields, char *err, size_t errlen)
{
    unsigned slot = evbus_cluster_keyslot(stream, strlen(stream));
    for (int tries = 0;; tries++) {
        const char *argv[32];
        size_t lens[32];
        evbus__head_t h;
        int argc = evbus__xadd_head(c, stream, argv, lens, 0, &h);
        for (int i = 0; i < nfields; i++) {
            argv[argc] = fields[i];
            lens[argc++] = flens[i];
        }
        char why[400];
        redisReply *r = evbus_cluster_command(c->cl, argc, argv, lens, why, sizeof why);
        if (!r) {
            evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "redis: XADD %s: %s", stream, why);
            return NULL;
        }
        if (tries > 0 || c->guard != 1 || !is_noscript(r))
            return r;
        freeReplyObject(r);
        const char *load[3] = {"SCRIPT", "LOAD", GUARD_LUA};
        r = evbus_cluster_command_slot(c->cl, slot, 3, load, NULL, NULL, 0);
        if (r && r->type == REDIS_REPLY_STRING)
            snprintf(c->guard_sha, sizeof c->guard_sha, "%s", r->str);
        if (r)
            freeReplyObject(r);
    }
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
    if (r->type == REDIS_REPLY_ERROR && evbus__is_full(r->str, r->len))
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EFULL, "stream full: %s", r->str + 10);
    if (r->type == REDIS_REPLY_ERROR)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "redis: XADD %s: %s", c->stream,
                           r->str);
    return evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS,
                       "redis: XADD %s: unexpected reply type %d", c->stream, r->type);
}

/* Runs one XADD; fields are key/value pairs. */
static int xadd_argv(evbus_client_t *c, const char *stream, const char *const *fields,
                     const size_t *flens, int nfields, redisReply **reply)
{
    const char *argv[32];
    size_t lens[32];
    evbus__head_t h;
    int argc = evbus__xadd_head(c, stream, argv, lens, 0, &h);
    for (int i = 0; i < nfields; i++) {
        argv[argc] = fields[i];
        lens[argc++] = flens[i];
    }
    *reply = redisCommandArgv(c->ctx, argc, argv, lens);
    return *reply ? 0 : -1;
}

/* evbus__xadd on a cluster. */
static int cluster_xadd_publish(evbus_client_t *c, const char *stream, const char *const *fields,
                                const size_t *flens, int nfields, char *out_id, size_t out_len,
                                char *err, size_t errlen)
{
    int src = c->parts_ok ? 0 : cluster_setup(c, err, errlen);
    if (src != 0)
        return src;
    int64_t waited = 0;
    for (;;) {
        redisReply *r = cluster_xadd(c, stream, fields, flens, nfields, err, errlen);
        if (!r)
            return EVBUS_CLIENT_EREDIS;
        int rc = xadd_reply(c, r, out_id, out_len, err, errlen);
        freeReplyObject(r);
        if (rc == 0 && c->wait_n)
            cluster_wait_slot(c, evbus_cluster_keyslot(stream, strlen(stream)));
        if (rc != EVBUS_CLIENT_EFULL || !c->block || waited >= (int64_t)c->block_ms)
            return rc;
        sleep_ms(100);
        waited += 100;
    }
}

int evbus__xadd(evbus_client_t *c, const char *stream, const char *const *fields,
                const size_t *flens, int nfields, char *out_id, size_t out_len, char *err,
                size_t errlen)
{
    if (nfields > 16)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "too many extra fields");
    if (c->cl)
        return cluster_xadd_publish(c, stream, fields, flens, nfields, out_id, out_len, err,
                                    errlen);
    if (!evbus__conn(c, err, errlen))
        return EVBUS_CLIENT_EREDIS;
    /* on_full: block waits here, in steps, for the trimmer or the
     * consumers to make room, then reports the refusal */
    int64_t waited = 0;
    for (;;) {
        redisReply *r = NULL;
        if (xadd_argv(c, stream, fields, flens, nfields, &r) != 0)
            return evbus__io_fail(c, err, errlen, "XADD");
        int rc = xadd_reply(c, r, out_id, out_len, err, errlen);
        freeReplyObject(r);
        if (rc == 0)
            evbus__wait_replicas(c);
        if (rc != EVBUS_CLIENT_EFULL || !c->block || waited >= (int64_t)c->block_ms)
            return rc;
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
        waited += 100;
    }
}

/* Appends the compact JSON text of ev; jansson writes what the fast
 * writer leaves to it.  0 or -1. */
static int write_event(evbus__buf_t *b, const json_t *ev)
{
    if (evbus__json_write(b, ev) == 0)
        return 0;
    char *s = json_dumps(ev, JSON_COMPACT);
    if (!s)
        return -1;
    size_t n = strlen(s);
    int rc = evbus__buf_reserve(b, n);
    if (rc == 0) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
    free(s);
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
    evbus__buf_t body = {0};
    if (write_event(&body, ev) != 0) {
        free(body.p);
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "event: cannot serialize");
    }
    const char *stream = evbus__event_stream(c, ev);
    if (!stream) {
        free(body.p);
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "event: no partition (out of "
                           "memory?)");
    }
    const char *fields[2] = {"event", body.p};
    size_t flens[2] = {5, body.len};
    rc = evbus__xadd(c, stream, fields, flens, 2, out_id, out_len, err, errlen);
    free(body.p);
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
    const char *stream = evbus__text_stream(c, json, len);
    if (!stream)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                           "event: no partitionkey, tenantid or id to choose its partition by");
    return evbus__xadd(c, stream, fields, flens, n, out_id, out_len, err, errlen);
}

/* ------------------------------------------------------------ pipelines */

enum {
    PIPE_MAX_INFLIGHT = EVBUS_PIPELINE_MAX_INFLIGHT, /* commands without a reply */
    PIPE_SEND_AT = 64 * 1024,                        /* unsent bytes that trigger a send */
    PIPE_FIRST_SEND = 16 * 1024,                     /* the same for a pipe's first send: a
                                                        batch call starts Redis working
                                                        sooner (Redis reads 16 KB a turn) */
    PIPE_READ_MIN = 16 * 1024,                       /* free space wanted for one recv */
    PIPE_REPLY_MIN = 3,                              /* shortest RESP reply: "+\r\n" */
    PIPE_LOWAT_MAX = 16 * 1024,                      /* see pipe_lowat() */
    PIPE_GUESS_MS = 20                               /* see pipe_pump() */
};

typedef struct pipe pipe_t;
/* kind: '$' bulk (an id), '-' error, '+' status, ':' integer, 'n' nil. */
typedef void (*pipe_reply_fn)(pipe_t *p, char kind, const char *s, size_t len);

/*
 * XADD commands in flight on one connection: the protocol buffer, the reply
 * buffer and who hears about each reply.  Replies come back in the order
 * the commands were added, so `reply` only needs to count.  Owned by one
 * thread; the connection (c->ctx) is the client's.
 */
struct pipe {
    evbus_client_t *c;
    evbus__buf_t prefix;  /* "*N\r\n$4\r\nXADD\r\n..." up to the event's length */
    evbus__buf_t *prefixes; /* with partitions: one per partition stream, or NULL */
    evbus__buf_t body;    /* with partitions: the event, before its stream is known */
    evbus__buf_t out, in;
    size_t sent, parsed;  /* bytes of out sent, bytes of in consumed */
    size_t queued;        /* commands added and not yet answered */
    size_t send_at;       /* unsent bytes that trigger a send */
    int lowat;            /* the socket's SO_RCVLOWAT as last set (1: the default) */
    size_t reply_min;     /* bytes the next replies are expected to have at least */
    bool failed;          /* the connection failed; nothing more is sent */
    pipe_reply_fn reply;
    void *ud;
    char *err;            /* where the first failure's message goes */
    size_t errlen;
};

/* Records the reason, drops the connection; -1.  The caller reports the
 * unanswered commands. */
static int pipe_fail(pipe_t *p, const char *why)
{
    evbus__fail(p->c, p->err, p->errlen, EVBUS_CLIENT_EREDIS, "redis: XADD %s: %s", p->c->stream,
                why);
    redisFree(p->c->ctx);
    p->c->ctx = NULL;
    p->failed = true;
    return -1;
}

/*
 * The shortest reply the next XADDs can get, judged from an id just
 * returned: a stream's ids only grow, so later ids have at least as many
 * milliseconds digits and one sequence digit: "$<n>\r\n<ms>-<seq>\r\n".
 * A guess, not a bound (the stream may be deleted and recreated under us,
 * and error replies differ): pipe_pump() never trusts it for long.
 */
static size_t reply_guess(const char *id, size_t len)
{
    const char *dash = memchr(id, '-', len);
    if (!dash)
        return PIPE_REPLY_MIN;
    size_t body = (size_t)(dash - id) + 2;
    size_t digits = body >= 100 ? 3 : body >= 10 ? 2 : 1;
    return 1 + digits + 2 + body + 2;
}

/* Consumes every complete reply in p->in; -1 on a protocol error. */
static int pipe_parse(pipe_t *p)
{
    const char *last_id = NULL; /* the last id of this read: it sets the guess */
    size_t last_len = 0;
    for (;;) {
        const char *b = p->in.p + p->parsed;
        size_t avail = p->in.len - p->parsed;
        const char *cr = avail ? memchr(b, '\r', avail) : NULL;
        if (!cr || (size_t)(cr - b) + 2 > avail)
            break;
        if (cr[1] != '\n' || p->queued == 0)
            return -1;
        size_t line = (size_t)(cr - b);
        if (b[0] == '$') {
            if (line == 3 && b[1] == '-' && b[2] == '1') {
                p->parsed += line + 2;
                p->queued--;
                p->reply(p, 'n', NULL, 0);
                continue;
            }
            size_t blen = 0;
            for (size_t k = 1; k < line; k++) {
                if (b[k] < '0' || b[k] > '9' || blen > 1u << 28)
                    return -1;
                blen = blen * 10 + (size_t)(b[k] - '0');
            }
            if (line < 2)
                return -1;
            if (avail < line + 2 + blen + 2)
                break;
            p->parsed += line + 2 + blen + 2;
            p->queued--;
            last_id = cr + 2;
            last_len = blen;
            p->reply(p, '$', cr + 2, blen);
        } else if (b[0] == '-' || b[0] == '+' || b[0] == ':') {
            p->parsed += line + 2;
            p->queued--;
            p->reply(p, b[0], b + 1, line - 1);
        } else {
            return -1;
        }
    }
    if (last_id)
        p->reply_min = reply_guess(last_id, last_len);
    if (p->parsed == p->in.len)
        p->parsed = p->in.len = 0;
    return 0;
}

/*
 * Before sleeping for replies: asks the kernel not to wake this thread
 * until enough reply bytes are queued to bring the in-flight count down to
 * `keep`, counting p->reply_min bytes a reply.  Without it Redis pays a
 * wakeup of this thread for every few dozen replies it writes; measured on
 * loopback that was about a sixth of redis-server's CPU per XADD.  With
 * the guessed length (reply_guess) a batch waiting for its last replies is
 * woken about once instead of a dozen times; with PIPE_REPLY_MIN (the
 * shortest RESP reply) the threshold is always reached by the replies we
 * wait for: it can delay a wakeup, never miss one.
 */
static void pipe_lowat(pipe_t *p, int fd, size_t keep)
{
    size_t need = p->queued > keep ? p->queued - keep : 1;
    size_t have = p->in.len - p->parsed;
    size_t bytes = need * p->reply_min;
    bytes = bytes > have ? bytes - have : 1;
    if (bytes > PIPE_LOWAT_MAX)
        bytes = PIPE_LOWAT_MAX;
    int v = (int)bytes;
    if (v != p->lowat && setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof v) == 0)
        p->lowat = v;
}

/* Moves bytes both ways until at most `keep` commands await a reply (and
 * for keep 0, everything is sent).  Without `wait`, does one round that
 * never blocks.  0, or -1 after the connection failed. */
static int pipe_pump(pipe_t *p, size_t keep, bool wait)
{
    if (p->failed)
        return -1;
    int fd = p->c->ctx->fd;
    for (;;) {
        bool moved = false;
        if (p->sent < p->out.len) {
            ssize_t k = send(fd, p->out.p + p->sent, p->out.len - p->sent,
                             MSG_DONTWAIT | MSG_NOSIGNAL);
            if (k > 0) {
                p->sent += (size_t)k;
                moved = true;
            } else if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                return pipe_fail(p, strerror(errno));
            }
            if (p->sent == p->out.len)
                p->sent = p->out.len = 0;
        }
        if (p->queued > 0) {
            if (p->in.cap - p->in.len < PIPE_READ_MIN && p->parsed > 0) {
                memmove(p->in.p, p->in.p + p->parsed, p->in.len - p->parsed);
                p->in.len -= p->parsed;
                p->parsed = 0;
            }
            if (evbus__buf_reserve(&p->in, PIPE_READ_MIN) != 0)
                return pipe_fail(p, "out of memory");
            ssize_t k = recv(fd, p->in.p + p->in.len, p->in.cap - p->in.len, MSG_DONTWAIT);
            if (k > 0) {
                p->in.len += (size_t)k;
                moved = true;
                if (pipe_parse(p) != 0)
                    return pipe_fail(p, "protocol error in the replies");
            } else if (k == 0) {
                return pipe_fail(p, "Server closed the connection");
            } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                return pipe_fail(p, strerror(errno));
            }
        }
        if (p->queued <= keep && (keep > 0 || p->out.len == 0))
            return 0;
        if (!wait)
            return 0;
        if (!moved) {
            pipe_lowat(p, fd, keep);
            /* A threshold from a guessed reply length may never be
             * reached (shorter replies than guessed): after a short wait
             * it falls back to the safe PIPE_REPLY_MIN. */
            bool guessed = p->reply_min > PIPE_REPLY_MIN && p->lowat > 1;
            struct pollfd pfd = {fd, (short)(POLLIN | (p->sent < p->out.len ? POLLOUT : 0)), 0};
            int r = poll(&pfd, 1, guessed ? PIPE_GUESS_MS : COMMAND_TIMEOUT_MS);
            if (r == 0 && guessed) {
                p->reply_min = PIPE_REPLY_MIN;
                continue;
            }
            if (r == 0)
                return pipe_fail(p, "timed out waiting for Redis");
            if (r < 0 && errno != EINTR)
                return pipe_fail(p, strerror(errno));
        }
    }
}

/* Builds into *out the command prefix of an XADD to `stream`: everything
 * before the event's length, the same for every event of that stream.
 * 0, or -1 when memory runs out. */
static int build_prefix(evbus_client_t *c, const char *stream, evbus__buf_t *out)
{
    char head[512];
    evbus__head_t h;
    const char *argv[12];
    size_t lens[12];
    int argc = evbus__xadd_head(c, stream, argv, lens, 0, &h);
    argv[argc] = "event";
    lens[argc++] = 5;
    int hl = snprintf(head, sizeof head, "*%d\r\n", argc + 1);
    int ok = evbus__buf_reserve(out, (size_t)hl);
    if (ok == 0) {
        memcpy(out->p, head, (size_t)hl);
        out->len = (size_t)hl;
    }
    for (int a = 0; a < argc && ok == 0; a++) {
        hl = snprintf(head, sizeof head, "$%zu\r\n", lens[a]);
        ok = evbus__buf_reserve(out, (size_t)hl + lens[a] + 2);
        if (ok == 0) {
            memcpy(out->p + out->len, head, (size_t)hl);
            memcpy(out->p + out->len + hl, argv[a], lens[a]);
            memcpy(out->p + out->len + hl + lens[a], "\r\n", 2);
            out->len += (size_t)hl + lens[a] + 2;
        }
    }
    return ok;
}

/* Connects and builds the command prefix; 0 or -1 (message in p->err).
 * With partitions, the prefixes are per partition stream, built as
 * events need them. */
static int pipe_open(pipe_t *p, evbus_client_t *c, pipe_reply_fn reply, void *ud, char *err,
                     size_t errlen)
{
    *p = (pipe_t){.c = c,
                  .lowat = 1,
                  .reply_min = PIPE_REPLY_MIN,
                  .send_at = PIPE_FIRST_SEND,
                  .reply = reply,
                  .ud = ud,
                  .err = err,
                  .errlen = errlen};
    if (!evbus__conn(c, err, errlen))
        return -1;
    int ok = c->partitions > 1
                 ? ((p->prefixes = calloc(c->partitions, sizeof *p->prefixes)) ? 0 : -1)
                 : build_prefix(c, c->stream, &p->prefix);
    if (ok != 0) {
        evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "out of memory");
        return -1;
    }
    return 0;
}

/* The prefix of partition p's stream, built on first use; NULL when
 * memory runs out. */
static const evbus__buf_t *pipe_prefix(pipe_t *p, unsigned part)
{
    evbus__buf_t *b = &p->prefixes[part];
    const char *stream = b->len ? NULL : part_stream(p->c, part);
    if (!b->len && (!stream || build_prefix(p->c, stream, b) != 0))
        return NULL;
    return b;
}

/* After a successful drain: hiredis' blocking reads on this connection
 * must not wait for more than one byte.  Frees the buffers. */
static void pipe_close(pipe_t *p)
{
    int one = 1;
    if (!p->failed && p->c->ctx && p->lowat != 1)
        setsockopt(p->c->ctx->fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
    free(p->prefix.p);
    free(p->out.p);
    free(p->in.p);
    free(p->body.p);
    for (unsigned i = 0; p->prefixes && i < p->c->partitions; i++)
        free(p->prefixes[i].p);
    free(p->prefixes);
    p->prefixes = NULL;
    p->prefix.p = p->out.p = p->in.p = p->body.p = NULL;
}

/* Appends the body of item i (the event's JSON text): 0, -1 when it
 * cannot be serialized, or EVBUS_CLIENT_EINVAL with the reason in msg
 * when the item turns out to be bad (nothing appended). */
typedef int (*emit_fn)(evbus_client_t *c, const void *items, size_t i, evbus__buf_t *b,
                       char *msg, size_t msglen);

/*
 * Adds one XADD whose event body `emit` appends, then moves bytes without
 * blocking (or, with PIPE_MAX_INFLIGHT commands unanswered, until half of
 * them are).  Returns 0 when the command was queued, EVBUS_CLIENT_EINVAL
 * (msg says why) or -2 (cannot serialize, out of memory) when the item was
 * not, and -1 when the connection failed (the item may have been queued:
 * p->queued says what is unanswered).
 */
static int pipe_add(pipe_t *p, emit_fn emit, const void *items, size_t i, char *msg,
                    size_t msglen)
{
    enum { SLOT = 16 }; /* room kept for "$<length>\r\n" */
    if (p->failed)
        return -1;
    size_t mark = p->out.len;
    const evbus__buf_t *prefix = &p->prefix;
    if (p->prefixes) {
        /* the event's partition is known once it is complete (its id may
         * be its key): write it aside, then behind its stream's prefix */
        p->body.len = 0;
        int erc = emit(p->c, items, i, &p->body, msg, msglen);
        if (erc != 0)
            return erc == EVBUS_CLIENT_EINVAL ? EVBUS_CLIENT_EINVAL : -2;
        int part = text_partition(p->c, p->body.p, p->body.len);
        if (part < 0) {
            snprintf(msg, msglen, "no partitionkey, tenantid or id to choose its partition by");
            return EVBUS_CLIENT_EINVAL;
        }
        if (!(prefix = pipe_prefix(p, (unsigned)part)))
            return -2;
    }
    if (evbus__buf_reserve(&p->out, prefix->len + SLOT) != 0)
        return -2;
    memcpy(p->out.p + p->out.len, prefix->p, prefix->len);
    p->out.len += prefix->len + SLOT;
    int erc = 0;
    if (p->prefixes) {
        erc = evbus__buf_reserve(&p->out, p->body.len);
        if (erc == 0) {
            memcpy(p->out.p + p->out.len, p->body.p, p->body.len);
            p->out.len += p->body.len;
        }
    } else {
        erc = emit(p->c, items, i, &p->out, msg, msglen);
    }
    if (erc == 0)
        erc = evbus__buf_reserve(&p->out, 2);
    if (erc != 0) {
        p->out.len = mark;
        return erc == EVBUS_CLIENT_EINVAL ? EVBUS_CLIENT_EINVAL : -2;
    }
    char *slot = p->out.p + mark + prefix->len;
    size_t blen = p->out.len - (mark + prefix->len + SLOT);
    char len_s[SLOT], *d = len_s + SLOT;
    *--d = '\n';
    *--d = '\r';
    size_t v = blen;
    do {
        *--d = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    *--d = '$';
    size_t ll = (size_t)(len_s + SLOT - d);
    memmove(slot + ll, slot + SLOT, blen);
    memcpy(slot, d, ll);
    memcpy(slot + ll + blen, "\r\n", 2);
    p->out.len = mark + prefix->len + ll + blen + 2;
    p->queued++;
    if (p->queued >= PIPE_MAX_INFLIGHT)
        return pipe_pump(p, PIPE_MAX_INFLIGHT / 2, true);
    if (p->out.len - p->sent >= p->send_at) {
        p->send_at = PIPE_SEND_AT;
        return pipe_pump(p, SIZE_MAX, false);
    }
    return 0;
}

/* ---------------------------------------------------------------- batches */

/* After a connection failure: every item not confirmed by a reply failed. */
static ssize_t batch_abort(int *rc, char (*out_ids)[EVBUS_STREAM_ID_LEN], size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rc[i] != EVBUS_CLIENT_EINVAL && out_ids[i][0] == '\0')
            rc[i] = EVBUS_CLIENT_EREDIS;
    return -1;
}

/* ------------------------------------------------------ cluster batches */

enum { CHUNK_MAX = 512 }; /* events per evbus_cluster_pipe_exec */

/* What chunk_exec tells about each event, in the order added: rc 0 with
 * the stream id in text, or the code with the reason. */
typedef void (*chunk_fn)(void *ud, uint64_t tag, int rc, const char *text);

/*
 * Events of a batch or a pipeline on a cluster, sent CHUNK_MAX at a time
 * through one evbus_cluster_pipe: it groups them by node and writes each
 * node's in the order added, so one partition's events (one slot, one
 * node) land in order.  Their bodies stay here until the replies are in,
 * to run an event again on a node that answered NOSCRIPT — all of that
 * node's later events got the same answer, so running them again in order
 * keeps the order.  Owned by the thread that owns the client.
 */
typedef struct chunk {
    evbus_client_t *c;
    evbus_cluster_pipe_t *pipe;
    evbus__buf_t bodies;
    size_t off[CHUNK_MAX], len[CHUNK_MAX];
    unsigned part[CHUNK_MAX];
    uint64_t tag[CHUNK_MAX];
    int rc[CHUNK_MAX];
    char text[CHUNK_MAX][320];
    size_t n;
    bool *wrote;  /* per partition: an event landed there (for the WAIT) */
    bool no_reply; /* an event of the last exec got no reply */
} chunk_t;

static void chunk_free(chunk_t *ch)
{
    if (!ch)
        return;
    evbus_cluster_pipe_free(ch->pipe);
    free(ch->bodies.p);
    free(ch->wrote);
    free(ch);
}

/* A chunk for c, whose partition count was compared (cluster_setup);
 * NULL when memory runs out. */
static chunk_t *chunk_new(evbus_client_t *c)
{
    chunk_t *ch = calloc(1, sizeof *ch);
    if (!ch)
        return NULL;
    ch->c = c;
    ch->pipe = evbus_cluster_pipe_new(c->cl);
    ch->wrote = calloc(c->partitions, sizeof *ch->wrote);
    if (!ch->pipe || !ch->wrote) {
        chunk_free(ch);
        return NULL;
    }
    return ch;
}

/* Appends item i (emit writes its body): 0, EVBUS_CLIENT_EINVAL with the
 * reason in msg, or -2 when it cannot be serialized. */
static int chunk_add(chunk_t *ch, emit_fn emit, const void *items, size_t i, uint64_t tag,
                     char *msg, size_t msglen)
{
    size_t mark = ch->bodies.len;
    int erc = emit(ch->c, items, i, &ch->bodies, msg, msglen);
    if (erc != 0) {
        ch->bodies.len = mark;
        return erc == EVBUS_CLIENT_EINVAL ? EVBUS_CLIENT_EINVAL : -2;
    }
    int part = text_partition(ch->c, ch->bodies.p + mark, ch->bodies.len - mark);
    if (part < 0) {
        ch->bodies.len = mark;
        snprintf(msg, msglen, "no partitionkey, tenantid or id to choose its partition by");
        return EVBUS_CLIENT_EINVAL;
    }
    ch->off[ch->n] = mark;
    ch->len[ch->n] = ch->bodies.len - mark;
    ch->part[ch->n] = (unsigned)part;
    ch->tag[ch->n++] = tag;
    return 0;
}

/* The verdict on reply r to event k's XADD. */
static void chunk_judge(chunk_t *ch, size_t k, const char *stream, const redisReply *r)
{
    char *t = ch->text[k];
    size_t tl = sizeof ch->text[k];
    if (r->type == REDIS_REPLY_STRING) {
        ch->rc[k] = 0;
        snprintf(t, tl, "%s", r->str);
        ch->wrote[ch->part[k]] = true;
    } else if (r->type == REDIS_REPLY_ERROR && evbus__is_full(r->str, r->len)) {
        ch->rc[k] = EVBUS_CLIENT_EFULL;
        snprintf(t, tl, "stream full: %s", r->str + 10);
    } else if (r->type == REDIS_REPLY_ERROR) {
        ch->rc[k] = EVBUS_CLIENT_EREDIS;
        snprintf(t, tl, "redis: XADD %s: %.200s", stream, r->str);
    } else {
        ch->rc[k] = EVBUS_CLIENT_EREDIS;
        snprintf(t, tl, "redis: XADD %s: unexpected reply type %d", stream, r->type);
    }
}

/*
 * Sends the chunk's events and tells fn about each, in the order added.
 * ch->no_reply says whether one of them got no reply (a node unreachable
 * after the retries, or a reply lost: it may have been written).
 */
static void chunk_exec(chunk_t *ch, chunk_fn fn, void *ud)
{
    evbus_client_t *c = ch->c;
    long pi[CHUNK_MAX]; /* event k's index in the pipe, -1: not appended */
    long np = 0;
    ch->no_reply = false;
    for (size_t k = 0; k < ch->n; k++) {
        const char *stream = part_stream(c, ch->part[k]);
        const char *argv[12];
        size_t lens[12];
        evbus__head_t h;
        pi[k] = -1;
        ch->rc[k] = EVBUS_CLIENT_EREDIS;
        snprintf(ch->text[k], sizeof ch->text[k], "out of memory");
        if (!stream)
            continue;
        int argc = evbus__xadd_head(c, stream, argv, lens, 0, &h);
        argv[argc] = "event", lens[argc++] = 5;
        argv[argc] = ch->bodies.p + ch->off[k], lens[argc++] = ch->len[k];
        if (evbus_cluster_pipe_append(ch->pipe, argc, argv, lens, ch->text[k],
                                      sizeof ch->text[k]) == 0)
            pi[k] = np++;
    }
    char why[300] = "";
    int missing = np ? evbus_cluster_pipe_exec(ch->pipe, why, sizeof why) : 0;
    bool rerun[CHUNK_MAX];
    for (size_t k = 0; k < ch->n; k++) {
        const char *stream = part_stream(c, ch->part[k]);
        redisReply *r = pi[k] >= 0 && missing >= 0 ? evbus_cluster_pipe_reply(ch->pipe,
                                                                              (size_t)pi[k])
                                                   : NULL;
        rerun[k] = r && c->guard == 1 && is_noscript(r);
        if (r && !rerun[k]) {
            chunk_judge(ch, k, stream, r);
        } else if (!r && pi[k] >= 0) {
            ch->no_reply = true;
            snprintf(ch->text[k], sizeof ch->text[k], "redis: XADD %s: %s", stream,
                     missing < 0 ? why : evbus_cluster_pipe_error(ch->pipe, (size_t)pi[k]));
        }
    }
    for (size_t k = 0; k < ch->n; k++) {
        if (!rerun[k])
            continue;
        const char *stream = part_stream(c, ch->part[k]);
        const char *fields[2] = {"event", ch->bodies.p + ch->off[k]};
        size_t flens[2] = {5, ch->len[k]};
        redisReply *r = cluster_xadd(c, stream, fields, flens, 2, ch->text[k],
                                     sizeof ch->text[k]);
        if (r) {
            chunk_judge(ch, k, stream, r);
            freeReplyObject(r);
        } else {
            ch->no_reply = true;
        }
    }
    for (size_t k = 0; k < ch->n; k++)
        fn(ud, ch->tag[k], ch->rc[k], ch->text[k]);
    ch->n = 0;
    ch->bodies.len = 0;
}

/* A batch on a cluster: which items are answered, and the first
 * failure's message. */
typedef struct cbatch {
    evbus_client_t *c;
    int *rc;
    char (*ids)[EVBUS_STREAM_ID_LEN];
    size_t published;
    bool have_err;
    char *err;
    size_t errlen;
} cbatch_t;

static void cbatch_reply(void *ud, uint64_t tag, int rc, const char *text)
{
    cbatch_t *b = ud;
    size_t i = (size_t)tag;
    b->rc[i] = rc;
    if (rc == 0) {
        snprintf(b->ids[i], EVBUS_STREAM_ID_LEN, "%s", text);
        b->published++;
    } else if (!b->have_err) {
        b->have_err = true;
        evbus__fail(b->c, b->err, b->errlen, rc, "event %zu: %s", i, text);
    }
}

/* batch_run on a cluster: -1 when nothing could be sent (setup failed) or
 * an event got no reply (as a failed connection on one server). */
static ssize_t cluster_batch_run(evbus_client_t *c, const void *items, size_t n, emit_fn emit,
                                 char (*out_ids)[EVBUS_STREAM_ID_LEN], int *rc, bool have_err,
                                 char *err, size_t errlen)
{
    if (!c->parts_ok && cluster_setup(c, err, errlen) != 0)
        return batch_abort(rc, out_ids, n);
    chunk_t *ch = chunk_new(c);
    if (!ch) {
        evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "out of memory");
        return batch_abort(rc, out_ids, n);
    }
    cbatch_t b = {.c = c, .rc = rc, .ids = out_ids, .have_err = have_err, .err = err,
                  .errlen = errlen};
    bool no_reply = false;
    for (size_t i = 0; i < n; i++) {
        if (rc[i] == EVBUS_CLIENT_EINVAL)
            continue;
        char msg[256];
        rc[i] = EVBUS_CLIENT_EREDIS; /* until its reply says otherwise */
        int erc = chunk_add(ch, emit, items, i, i, msg, sizeof msg);
        if (erc != 0) {
            rc[i] = EVBUS_CLIENT_EINVAL;
            if (!b.have_err)
                evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "event %zu: %s", i,
                            erc == EVBUS_CLIENT_EINVAL ? msg : "cannot serialize");
            b.have_err = true;
        }
        if (ch->n == CHUNK_MAX) {
            chunk_exec(ch, cbatch_reply, &b);
            no_reply |= ch->no_reply;
        }
    }
    if (ch->n) {
        chunk_exec(ch, cbatch_reply, &b);
        no_reply |= ch->no_reply;
    }
    if (b.published)
        cluster_wait_parts(c, ch->wrote);
    chunk_free(ch);
    return no_reply ? -1 : (ssize_t)b.published;
}

/* A batch's answers: which item the next reply belongs to. */
typedef struct batch {
    int *rc;
    char (*ids)[EVBUS_STREAM_ID_LEN];
    size_t next; /* EINVAL items were not sent and get no reply */
    size_t published;
    bool have_err;
} batch_t;

static void batch_reply(pipe_t *p, char kind, const char *s, size_t len)
{
    batch_t *b = p->ud;
    while (b->rc[b->next] == EVBUS_CLIENT_EINVAL)
        b->next++;
    size_t i = b->next++;
    if (kind == '$') {
        size_t n = len < EVBUS_STREAM_ID_LEN ? len : EVBUS_STREAM_ID_LEN - 1;
        memcpy(b->ids[i], s, n);
        b->ids[i][n] = '\0';
        b->rc[i] = 0;
        b->published++;
        return;
    }
    bool full = kind == '-' && evbus__is_full(s, len);
    b->rc[i] = full ? EVBUS_CLIENT_EFULL : EVBUS_CLIENT_EREDIS;
    if (b->have_err)
        return;
    b->have_err = true;
    if (full)
        evbus__fail(p->c, p->err, p->errlen, EVBUS_CLIENT_EFULL, "event %zu: stream full: %.*s",
                    i, (int)(len - 10 > 300 ? 300 : len - 10), s + 10);
    else if (kind == '-')
        evbus__fail(p->c, p->err, p->errlen, EVBUS_CLIENT_EREDIS,
                    "event %zu: redis: XADD %s: %.*s", i, p->c->stream, (int)(len > 200 ? 200 : len),
                    s);
    else
        evbus__fail(p->c, p->err, p->errlen, EVBUS_CLIENT_EREDIS,
                    "event %zu: redis: XADD %s: unexpected reply type %d", i, p->c->stream,
                    kind == '+' ? REDIS_REPLY_STATUS : kind == ':' ? REDIS_REPLY_INTEGER
                                                                   : REDIS_REPLY_NIL);
}

/* After the per-item checks (rc[i] EINVAL = skip): builds, sends and
 * answers every other item. */
static ssize_t batch_run(evbus_client_t *c, const void *items, size_t n, emit_fn emit,
                         char (*out_ids)[EVBUS_STREAM_ID_LEN], int *rc, bool have_err, char *err,
                         size_t errlen)
{
    if (c->cl)
        return cluster_batch_run(c, items, n, emit, out_ids, rc, have_err, err, errlen);
    batch_t b = {.rc = rc, .ids = out_ids, .have_err = have_err};
    pipe_t p;
    /* A connection failure replaces any earlier message: it is what the
     * -1 return reports. */
    if (pipe_open(&p, c, batch_reply, &b, err, errlen) != 0) {
        pipe_close(&p);
        return batch_abort(rc, out_ids, n);
    }
    int failed = 0;
    for (size_t i = 0; i < n && !failed; i++) {
        if (rc[i] == EVBUS_CLIENT_EINVAL)
            continue;
        char msg[256];
        rc[i] = EVBUS_CLIENT_EREDIS; /* until its reply says otherwise */
        int erc = pipe_add(&p, emit, items, i, msg, sizeof msg);
        if (erc == -1) {
            failed = 1;
        } else if (erc != 0) {
            /* Bad, not serializable or out of memory: this one is simply
             * not sent; the others go on. */
            rc[i] = EVBUS_CLIENT_EINVAL;
            if (!b.have_err) {
                if (erc == EVBUS_CLIENT_EINVAL)
                    evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "event %zu: %s", i, msg);
                else
                    evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "event %zu: cannot serialize",
                                i);
                b.have_err = true;
            }
        }
    }
    if (!failed)
        failed = pipe_pump(&p, 0, true);
    pipe_close(&p);
    if (failed)
        return batch_abort(rc, out_ids, n);
    if (b.published)
        evbus__wait_replicas(c); /* one WAIT covers the whole batch */
    return (ssize_t)b.published;
}

/* Completing an event right before serializing it touches its json_t
 * once while it is in the cache, which matters for big batches. */
static int emit_json(evbus_client_t *c, const void *items, size_t i, evbus__buf_t *b, char *msg,
                     size_t msglen)
{
    json_t *ev = ((json_t *const *)items)[i];
    if (evbus_event_complete(c, ev, msg, msglen) != 0)
        return EVBUS_CLIENT_EINVAL;
    return write_event(b, ev);
}

/* Whether item i is bad (EVBUS_CLIENT_EINVAL), asked of the items a batch
 * could not send. */
typedef bool (*item_bad_fn)(evbus_client_t *c, const void *items, size_t i);

/*
 * A batch whose items are completed as they are written (json_t events,
 * raw texts): rc and out_ids reset, then batch_run.  When the connection
 * fails (-1), the items not answered are still judged: bad ones are
 * EVBUS_CLIENT_EINVAL, the rest EVBUS_CLIENT_EREDIS, and err keeps the
 * connection failure's message.
 */
static ssize_t batch_publish(evbus_client_t *c, const void *items, size_t n, emit_fn emit,
                             item_bad_fn bad, char (*out_ids)[EVBUS_STREAM_ID_LEN], int *rc,
                             char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        out_ids[i][0] = '\0';
        rc[i] = 0;
    }
    ssize_t r = batch_run(c, items, n, emit, out_ids, rc, false, err, errlen);
    if (r < 0)
        for (size_t i = 0; i < n; i++)
            if (rc[i] != EVBUS_CLIENT_EINVAL && out_ids[i][0] == '\0')
                rc[i] = bad(c, items, i) ? EVBUS_CLIENT_EINVAL : EVBUS_CLIENT_EREDIS;
    return r;
}

/* Completes the event as sending would have (so a retry publishes the
 * same id). */
static bool json_bad(evbus_client_t *c, const void *items, size_t i)
{
    char msg[256];
    return evbus_event_complete(c, ((json_t *const *)items)[i], msg, sizeof msg) != 0;
}

ssize_t evbus_publish_batch(evbus_client_t *c, json_t *const *evs, size_t n,
                            char (*out_ids)[EVBUS_STREAM_ID_LEN], int *rc, char *err,
                            size_t errlen)
{
    return batch_publish(c, evs, n, emit_json, json_bad, out_ids, rc, err, errlen);
}

static int emit_text(evbus_client_t *c, const void *items, size_t i, evbus__buf_t *b, char *msg,
                     size_t msglen)
{
    (void)c;
    (void)msg;
    (void)msglen;
    const evbus_text_event_t *ev = &((const evbus_text_event_t *)items)[i];
    if (evbus__buf_reserve(b, ev->head_len + ev->tail_len) != 0)
        return -1;
    memcpy(b->p + b->len, ev->head, ev->head_len);
    if (ev->tail_len)
        memcpy(b->p + b->len + ev->head_len, ev->tail, ev->tail_len);
    b->len += ev->head_len + ev->tail_len;
    return 0;
}

ssize_t evbus_publish_batch_text(evbus_client_t *c, const evbus_text_event_t *evs, size_t n,
                                 char (*out_ids)[EVBUS_STREAM_ID_LEN], int *rc, char *err,
                                 size_t errlen)
{
    bool have_err = false;
    if (err && errlen)
        err[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        out_ids[i][0] = '\0';
        rc[i] = evs[i].mem ? 0 : EVBUS_CLIENT_EINVAL;
        if (rc[i] != 0 && !have_err) {
            evbus__fail(c, err, errlen, rc[i], "event %zu: not completed", i);
            have_err = true;
        }
    }
    return batch_run(c, evs, n, emit_text, out_ids, rc, have_err, err, errlen);
}

/* Completes text i right into the protocol buffer: completing overlaps
 * Redis' work on the commands already sent. */
static int emit_raw(evbus_client_t *c, const void *items, size_t i, evbus__buf_t *b, char *msg,
                    size_t msglen)
{
    const evbus_text_t *t = &((const evbus_text_t *)items)[i];
    return evbus__text_emit(c, t->text, t->len, b, msg, msglen);
}

/* (c not passed: it would record the message, and err keeps the
 * connection failure's) */
static bool raw_bad(evbus_client_t *c, const void *items, size_t i)
{
    (void)c;
    const evbus_text_t *t = &((const evbus_text_t *)items)[i];
    char msg[256];
    return evbus_event_text_check(NULL, t->text, t->len, msg, sizeof msg) != 0;
}

ssize_t evbus_publish_texts(evbus_client_t *c, const evbus_text_t *texts, size_t n,
                            char (*out_ids)[EVBUS_STREAM_ID_LEN], int *rc, char *err,
                            size_t errlen)
{
    return batch_publish(c, texts, n, emit_raw, raw_bad, out_ids, rc, err, errlen);
}

/* -------------------------------------------------------------- streaming */

struct evbus_pipeline {
    pipe_t p;     /* one server */
    chunk_t *ch;  /* a cluster: the events not sent yet (chunk_exec) */
    bool cfailed; /* a cluster: an event got no reply; further adds fail */
    evbus_pipeline_fn fn;
    void *ud;
    uint64_t next_seq;   /* of the next event added */
    uint64_t answer_seq; /* of the next reply */
    char err[256];
};

static void stream_reply(pipe_t *p, char kind, const char *s, size_t len)
{
    evbus_pipeline_t *pl = p->ud;
    uint64_t seq = pl->answer_seq++;
    if (kind == '$') {
        char id[EVBUS_STREAM_ID_LEN];
        size_t n = len < sizeof id ? len : sizeof id - 1;
        memcpy(id, s, n);
        id[n] = '\0';
        pl->fn(pl->ud, seq, 0, id);
        return;
    }
    char why[400];
    bool full = kind == '-' && evbus__is_full(s, len);
    if (full)
        snprintf(why, sizeof why, "stream full: %.*s", (int)(len - 10 > 300 ? 300 : len - 10),
                 s + 10);
    else if (kind == '-')
        snprintf(why, sizeof why, "redis: XADD %s: %.*s", p->c->stream,
                 (int)(len > 200 ? 200 : len), s);
    else
        snprintf(why, sizeof why, "redis: XADD %s: unexpected reply", p->c->stream);
    pl->fn(pl->ud, seq, full ? EVBUS_CLIENT_EFULL : EVBUS_CLIENT_EREDIS, why);
}

/* The connection failed: every unanswered event is reported, in order. */
static void stream_fail_rest(evbus_pipeline_t *pl)
{
    while (pl->answer_seq < pl->next_seq)
        pl->fn(pl->ud, pl->answer_seq++, EVBUS_CLIENT_EREDIS, pl->err);
    pl->p.queued = 0;
}

evbus_pipeline_t *evbus_pipeline_new(evbus_client_t *c, evbus_pipeline_fn fn, void *ud,
                                     char *err, size_t errlen)
{
    evbus_pipeline_t *pl = calloc(1, sizeof *pl);
    if (!pl) {
        evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "out of memory");
        return NULL;
    }
    pl->fn = fn;
    pl->ud = ud;
    if (c->cl) {
        pl->p.c = c;
        if (!c->parts_ok && cluster_setup(c, err, errlen) != 0) {
            free(pl);
            return NULL;
        }
        if (!(pl->ch = chunk_new(c))) {
            evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "out of memory");
            free(pl);
            return NULL;
        }
        return pl;
    }
    if (pipe_open(&pl->p, c, stream_reply, pl, pl->err, sizeof pl->err) != 0) {
        if (err && errlen)
            snprintf(err, errlen, "%s", pl->err);
        pipe_close(&pl->p);
        free(pl);
        return NULL;
    }
    return pl;
}

static void chunk_stream_reply(void *ud, uint64_t tag, int rc, const char *text)
{
    evbus_pipeline_t *pl = ud;
    pl->answer_seq = tag + 1;
    pl->fn(pl->ud, tag, rc, text);
}

/* Sends a cluster pipeline's chunk; 0, or EVBUS_CLIENT_EREDIS when an event
 * got no reply (the pipeline then refuses further adds). */
static int chunk_stream_flush(evbus_pipeline_t *pl)
{
    if (pl->ch->n)
        chunk_exec(pl->ch, chunk_stream_reply, pl);
    if (pl->ch->no_reply && !pl->cfailed) {
        pl->cfailed = true;
        snprintf(pl->err, sizeof pl->err, "redis: XADD %s: an event got no reply (see its "
                 "report); nothing more is sent on this pipeline", pl->p.c->stream);
    }
    return pl->cfailed ? EVBUS_CLIENT_EREDIS : 0;
}

/* stream_add on a cluster: events wait in the chunk until it is full. */
static int chunk_stream_add(evbus_pipeline_t *pl, emit_fn emit, const void *items, char *err,
                            size_t errlen)
{
    char msg[256];
    if (pl->cfailed) {
        if (err && errlen)
            snprintf(err, errlen, "%s", pl->err);
        return EVBUS_CLIENT_EREDIS;
    }
    int rc = chunk_add(pl->ch, emit, items, 0, pl->next_seq, msg, sizeof msg);
    if (rc != 0) {
        if (err && errlen)
            snprintf(err, errlen, "%s",
                     rc == EVBUS_CLIENT_EINVAL ? msg : "cannot serialize (out of memory?)");
        return EVBUS_CLIENT_EINVAL;
    }
    pl->next_seq++;
    if (pl->ch->n == CHUNK_MAX && chunk_stream_flush(pl) != 0) {
        if (err && errlen)
            snprintf(err, errlen, "%s", pl->err);
        return EVBUS_CLIENT_EREDIS;
    }
    return 0;
}

/* Queues the item emit appends, with the add functions' return codes. */
static int stream_add(evbus_pipeline_t *pl, emit_fn emit, const void *items, char *err,
                      size_t errlen)
{
    if (pl->ch)
        return chunk_stream_add(pl, emit, items, err, errlen);
    if (pl->p.failed) {
        if (err && errlen)
            snprintf(err, errlen, "%s", pl->err);
        return EVBUS_CLIENT_EREDIS;
    }
    char msg[256];
    pl->next_seq++;
    int rc = pipe_add(&pl->p, emit, items, 0, msg, sizeof msg);
    if (rc == -1) {
        stream_fail_rest(pl);
        if (err && errlen)
            snprintf(err, errlen, "%s", pl->err);
        return EVBUS_CLIENT_EREDIS;
    }
    if (rc != 0) {
        pl->next_seq--; /* not queued: it gets no sequence number */
        if (err && errlen)
            snprintf(err, errlen, "%s",
                     rc == EVBUS_CLIENT_EINVAL ? msg : "cannot serialize (out of memory?)");
        return EVBUS_CLIENT_EINVAL;
    }
    return 0;
}

int evbus_pipeline_add_text(evbus_pipeline_t *pl, const evbus_text_event_t *ev, char *err,
                            size_t errlen)
{
    if (!ev->mem) {
        if (err && errlen)
            snprintf(err, errlen, "event not completed");
        return EVBUS_CLIENT_EINVAL;
    }
    return stream_add(pl, emit_text, ev, err, errlen);
}

int evbus_pipeline_add(evbus_pipeline_t *pl, json_t *ev, char *err, size_t errlen)
{
    json_t *items[1] = {ev};
    return stream_add(pl, emit_json, items, err, errlen);
}

int evbus_pipeline_wait(evbus_pipeline_t *pl, char *err, size_t errlen)
{
    if (pl->ch) {
        int rc = chunk_stream_flush(pl);
        if (rc == 0) {
            cluster_wait_parts(pl->p.c, pl->ch->wrote);
            memset(pl->ch->wrote, 0, pl->p.c->partitions * sizeof *pl->ch->wrote);
        } else if (err && errlen) {
            snprintf(err, errlen, "%s", pl->err);
        }
        return rc;
    }
    if (!pl->p.failed && pipe_pump(&pl->p, 0, true) == 0) {
        /* every reply is read: the connection is in step for one WAIT,
         * which covers everything written so far (read like any reply:
         * the socket's low-water mark back to one byte first) */
        if (pl->p.c->wait_n && pl->p.c->ctx) {
            int one = 1;
            if (pl->p.lowat != 1 &&
                setsockopt(pl->p.c->ctx->fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one) == 0)
                pl->p.lowat = 1;
            evbus__wait_replicas(pl->p.c);
        }
        return 0;
    }
    stream_fail_rest(pl);
    if (err && errlen)
        snprintf(err, errlen, "%s", pl->err);
    return EVBUS_CLIENT_EREDIS;
}

uint64_t evbus_pipeline_unanswered(const evbus_pipeline_t *pl)
{
    return pl->next_seq - pl->answer_seq;
}

void evbus_pipeline_free(evbus_pipeline_t *pl)
{
    if (!pl)
        return;
    if (pl->ch) {
        /* events still in the chunk were never sent */
        for (size_t k = 0; k < pl->ch->n; k++)
            pl->fn(pl->ud, pl->ch->tag[k], EVBUS_CLIENT_EREDIS,
                   "not sent: the pipeline was freed before evbus_pipeline_wait");
        chunk_free(pl->ch);
        free(pl);
        return;
    }
    if (pl->answer_seq < pl->next_seq) {
        /* freed with commands in flight: their replies will never be read,
         * so the connection is out of step and must not be reused */
        if (!pl->p.failed)
            pipe_fail(&pl->p, "pipeline freed before its replies were read");
        stream_fail_rest(pl);
    }
    pipe_close(&pl->p);
    free(pl);
}
