/*
 * evbusctl pending — the consumer group's pending entries: what each host
 * read and has not acknowledged, and a hand quarantine for an entry that
 * keeps crashing hosts before max_deliveries takes it.
 *
 *   evbusctl pending list [--limit N] [--json]
 *   evbusctl pending quarantine ENTRY_ID [--reason TEXT] [--json]
 *
 * quarantine moves the entry to the dead-letter stream (reason
 * `quarantined`, the original bytes unchanged, the same fields as the
 * host's dead letters) and acknowledges it, in one MULTI/EXEC: it is in
 * exactly one of the two places at every instant.
 *
 * With partitions (docs/scale-out.md) list reads every partition's group
 * and names an entry ENTRY_ID:PARTITION, the form quarantine takes; the
 * MULTI/EXEC then touches that partition's stream and dead-letter stream.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/evbus_client.h"
#include "client/partition.h"
#include "ctl/ctl.h"
#include "util/clock.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: evbusctl pending list [--limit N] [--json]\n"
               "       evbusctl pending quarantine ENTRY_ID [--reason TEXT] [--json]\n\n"
               "list: the group's pending entries (read, not yet acknowledged): id, consumer,\n"
               "idle ms, deliveries; oldest first, at most N (default 100, up to 10000).\n"
               "quarantine: move one pending entry to the dead-letter stream (reason\n"
               "`quarantined`) and acknowledge it, atomically; for an entry that crashes hosts\n"
               "before reclaim.max_deliveries takes it.  `evbusctl dlq retry` brings it back.\n"
               "With partitions above 1, list reads every partition and names an entry\n"
               "ENTRY_ID:PARTITION, the form quarantine takes.\n"
               "Exit status: 0 done, 1 not found / not pending / Redis failed, 2 usage.\n");
}

/* A client and the connection of `key` (partition 0's stream when NULL):
 * on a Redis Cluster the node serving the key's slot, and every command of
 * a partition goes to its own (evbus_client_redis_key). */
static redisContext *connect_or_fail(evbus_client_t **c, const char *key)
{
    char err[256];
    const ctl_env_t *env = ctl_env();
    *c = NULL;
    if (!env->redis_url && !env->redis_cluster) {
        ctl_no_config("pending", "Redis", "--redis URL (or EVBUS_REDIS_URL)");
        return NULL;
    }
    *c = ctl_client(env, err, sizeof err);
    if (!*c) {
        ctl_usage_error("pending", "%s", err);
        return NULL;
    }
    char first[600];
    if (!key)
        evbus_partition_key_name(first, sizeof first, env->stream, 0, env->partitions > 1, "");
    redisContext *r = evbus_client_redis_key(*c, key ? key : first);
    if (!r)
        ctl_fail("pending", "%s", evbus_client_error(*c));
    return r;
}

/* The name of partition p's key with suffix ("" for the stream): today's
 * names with one partition.  Into buf (at least 600 bytes). */
static const char *part_key(const ctl_env_t *env, unsigned p, const char *suffix, char *buf,
                            size_t len)
{
    evbus_partition_key_name(buf, len, env->stream, p, env->partitions > 1, suffix);
    return buf;
}

/* A pending entry of some partition, for ordering them oldest first. */
typedef struct pend {
    unsigned long long ms, seq;
    unsigned part;
    json_t *row; /* {id, consumer, idle_ms, deliveries[, partition]} */
} pend_t;

typedef struct pends {
    pend_t *v;
    size_t n, cap;
} pends_t;

static int pend_cmp(const void *a, const void *b)
{
    const pend_t *x = a, *y = b;
    if (x->ms != y->ms)
        return x->ms < y->ms ? -1 : 1;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return x->part < y->part ? -1 : x->part > y->part;
}

/* Appends partition p's pending entries (at most limit) to out, the id
 * being ENTRY_ID:PARTITION with partitions. */
static int read_pending(evbus_client_t *c, const ctl_env_t *env, unsigned p, long limit,
                        pends_t *out)
{
    char stream[600];
    part_key(env, p, "", stream, sizeof stream);
    redisContext *r = evbus_client_redis_key(c, stream);
    if (!r)
        return ctl_fail("pending", "%s", evbus_client_error(c));
    redisReply *x = redisCommand(r, "XPENDING %s %s - + %ld", stream, env->group, limit);
    if (!x || x->type != REDIS_REPLY_ARRAY) {
        int rc = ctl_fail("pending", "XPENDING %s %s: %s", stream, env->group,
                          x && x->type == REDIS_REPLY_ERROR ? x->str : "no answer");
        if (x)
            freeReplyObject(x);
        return rc;
    }
    if (out->n + x->elements > out->cap) {
        size_t cap = (out->n + x->elements) * 2;
        pend_t *v = realloc(out->v, cap * sizeof *v);
        if (!v) {
            freeReplyObject(x);
            return ctl_fail("pending", "out of memory");
        }
        out->v = v;
        out->cap = cap;
    }
    for (size_t i = 0; i < x->elements; i++) {
        redisReply *e = x->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 4)
            continue;
        char id[64];
        snprintf(id, sizeof id, env->partitions > 1 ? "%s:%u" : "%s", e->element[0]->str, p);
        pend_t *pe = &out->v[out->n++];
        evbus_stream_id_split(e->element[0]->str, &pe->ms, &pe->seq);
        pe->part = p;
        pe->row = json_pack("{s:s, s:s, s:I, s:I}", "id", id, "consumer", e->element[1]->str,
                            "idle_ms", (json_int_t)e->element[2]->integer, "deliveries",
                            (json_int_t)e->element[3]->integer);
        if (env->partitions > 1)
            json_object_set_new(pe->row, "partition", json_integer(p));
    }
    freeReplyObject(x);
    return CTL_OK;
}

static int list(int argc, char **argv)
{
    long limit = 100;
    bool json = false;
    for (int i = 2; i < argc; i++) {
        const char *v;
        int m = ctl_opt_value(argc, argv, &i, "--limit", &v);
        if (m < 0)
            return ctl_usage_error("pending", "--limit needs a value");
        if (m) {
            char *end;
            limit = strtol(v, &end, 10);
            if (*end || limit < 1 || limit > 10000)
                return ctl_usage_error("pending", "--limit: expected 1..10000, got '%s'", v);
        } else if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return CTL_OK;
        } else {
            return ctl_usage_error("pending", "unexpected argument '%s'", argv[i]);
        }
    }
    evbus_client_t *c;
    if (!connect_or_fail(&c, NULL)) {
        /* no client: the configuration or URL was refused (usage) */
        int rc = c ? CTL_FAIL : CTL_USAGE;
        evbus_client_free(c);
        return rc;
    }
    const ctl_env_t *env = ctl_env();
    int rc = CTL_OK;
    pends_t pe = {0};
    for (unsigned p = 0; p < env->partitions && rc == CTL_OK; p++)
        rc = read_pending(c, env, p, limit, &pe);
    evbus_client_free(c);
    /* oldest first over every partition, at most `limit` */
    if (pe.n > 1)
        qsort(pe.v, pe.n, sizeof *pe.v, pend_cmp);
    json_t *arr = json_array();
    for (size_t i = 0; rc == CTL_OK && i < pe.n && (long)i < limit; i++) {
        json_t *o = pe.v[i].row;
        if (json)
            json_array_append(arr, o);
        else
            printf("%-24s %-20s idle %10lld ms  delivered %lld\n",
                   json_string_value(json_object_get(o, "id")),
                   json_string_value(json_object_get(o, "consumer")),
                   (long long)json_integer_value(json_object_get(o, "idle_ms")),
                   (long long)json_integer_value(json_object_get(o, "deliveries")));
    }
    if (rc == CTL_OK && json) {
        char *s = json_dumps(arr, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
    }
    json_decref(arr);
    for (size_t i = 0; i < pe.n; i++)
        json_decref(pe.v[i].row);
    free(pe.v);
    return rc;
}

static int quarantine(int argc, char **argv)
{
    const char *id = NULL, *why = NULL;
    bool json = false;
    for (int i = 2; i < argc; i++) {
        const char *v;
        int m = ctl_opt_value(argc, argv, &i, "--reason", &v);
        if (m < 0)
            return ctl_usage_error("pending", "--reason needs a text");
        if (m)
            why = v;
        else if (!strcmp(argv[i], "--json"))
            json = true;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return CTL_OK;
        } else if (argv[i][0] == '-' || id)
            return ctl_usage_error("pending", "unexpected argument '%s'", argv[i]);
        else
            id = argv[i];
    }
    if (!id)
        return ctl_usage_error("pending", "quarantine needs the ENTRY_ID (see `evbusctl pending "
                                          "list`)");
    const ctl_env_t *env = ctl_env();
    const char *shown = id; /* as given: ENTRY_ID:PARTITION with partitions */
    char plain[EVBUS_STREAM_ID_LEN], stream[600], dlq[600];
    size_t part = 0;
    if (env->partitions > 1) {
        if (evbus_dlq_merged_id(id, env->partitions, plain, &part) != 0)
            return ctl_usage_error("pending", "'%s': an entry of a partitioned stream is "
                                   "ENTRY_ID:PARTITION (evbusctl pending list prints them)", id);
        id = plain;
        part_key(env, (unsigned)part, ":dlq", dlq, sizeof dlq);
    } else {
        snprintf(dlq, sizeof dlq, "%s", env->dlq_stream);
    }
    part_key(env, (unsigned)part, "", stream, sizeof stream);
    size_t dash = strspn(id, "0123456789");
    if (!dash || id[dash] != '-' || !id[dash + 1] || strspn(id + dash + 1, "0123456789") !=
                                                          strlen(id + dash + 1))
        return ctl_usage_error("pending", "'%s' is not a stream entry id (ms-seq)", id);
    evbus_client_t *c;
    /* the entry's stream and its dead-letter stream share the partition's
     * tag: one node, one MULTI */
    redisContext *r = connect_or_fail(&c, stream);
    if (!r) {
        /* no client: the configuration or URL was refused (usage) */
        int rc = c ? CTL_FAIL : CTL_USAGE;
        evbus_client_free(c);
        return rc;
    }
    int rc = CTL_OK;
    redisReply *p = redisCommand(r, "XPENDING %s %s %s %s 1", stream, env->group, id, id);
    redisReply *e = NULL;
    if (!p || p->type != REDIS_REPLY_ARRAY) {
        rc = ctl_fail("pending", "XPENDING: %s", p && p->type == REDIS_REPLY_ERROR ? p->str
                                                                                  : "no answer");
        goto out;
    }
    if (p->elements != 1) {
        rc = ctl_fail("pending", "entry %s is not pending in group %s of %s", id, env->group,
                      stream);
        goto out;
    }
    long long deliveries = p->element[0]->element[3]->integer;
    e = redisCommand(r, "XRANGE %s %s %s", stream, id, id);
    const char *raw = "";
    size_t raw_len = 0;
    if (e && e->type == REDIS_REPLY_ARRAY && e->elements == 1) {
        redisReply *fv = e->element[0]->element[1];
        for (size_t k = 0; fv && k + 1 < fv->elements; k += 2)
            if (!strcmp(fv->element[k]->str, "event")) {
                raw = fv->element[k + 1]->str;
                raw_len = fv->element[k + 1]->len;
            }
    }
    /* the envelope's identity, when it parses: the DLQ tools filter on it */
    json_t *ev = json_loadb(raw, raw_len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, NULL);
    const char *eid = json_string_value(json_object_get(ev, "id"));
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *tenant = json_string_value(json_object_get(ev, "tenantid"));
    char attempts[24], now[CLOCK_RFC3339_LEN], error[600];
    snprintf(attempts, sizeof attempts, "%lld", deliveries);
    clock_rfc3339(clock_wall_ms(), now);
    snprintf(error, sizeof error, "quarantined by hand after %lld deliveries%s%s", deliveries,
             why ? ": " : "", why ? why : "");
    const char *argv_x[] = {"XADD", dlq, "*", "event", raw, "stream", stream,
                            "id", id, "event_id", eid ? eid : "", "type", type ? type : "",
                            "tenant", tenant ? tenant : "", "reason",
                            evbus_dlq_reason_name(EVBUS_DLQ_QUARANTINED), "handlers", "[]",
                            "attempts", attempts, "error", error, "first_failure", now,
                            "last_failure", now};
    size_t lens[sizeof argv_x / sizeof argv_x[0]];
    for (size_t k = 0; k < sizeof argv_x / sizeof argv_x[0]; k++)
        lens[k] = k == 4 ? raw_len : strlen(argv_x[k]);
    redisAppendCommand(r, "MULTI");
    redisAppendCommandArgv(r, (int)(sizeof argv_x / sizeof argv_x[0]), argv_x, lens);
    redisAppendCommand(r, "XACK %s %s %s", stream, env->group, id);
    redisAppendCommand(r, "EXEC");
    redisReply *replies[4] = {0};
    bool ok = true;
    for (int k = 0; k < 4; k++)
        ok = redisGetReply(r, (void **)&replies[k]) == REDIS_OK && ok;
    redisReply *exec = replies[3];
    ok = ok && exec && exec->type == REDIS_REPLY_ARRAY && exec->elements == 2 &&
         exec->element[0]->type == REDIS_REPLY_STRING;
    if (!ok) {
        rc = ctl_fail("pending", "quarantine of %s failed (nothing changed)%s%s", id,
                      r->err ? ": " : "", r->err ? r->errstr : "");
    } else if (json) {
        printf("{\"quarantined\":\"%s\",\"dlq_id\":\"%s%s\",\"deliveries\":%lld}\n",
               shown, exec->element[0]->str, env->partitions > 1 ? strchr(shown, ':') : "",
               deliveries);
    } else {
        printf("entry %s quarantined as dead letter %s%s (after %lld deliveries)\n", shown,
               exec->element[0]->str, env->partitions > 1 ? strchr(shown, ':') : "", deliveries);
    }
    for (int k = 0; k < 4; k++)
        if (replies[k])
            freeReplyObject(replies[k]);
    json_decref(ev);
out:
    if (p)
        freeReplyObject(p);
    if (e)
        freeReplyObject(e);
    evbus_client_free(c);
    return rc;
}

int cmd_pending(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CTL_USAGE : CTL_OK;
    }
    if (!strcmp(argv[1], "list"))
        return list(argc, argv);
    if (!strcmp(argv[1], "quarantine"))
        return quarantine(argc, argv);
    return ctl_usage_error("pending", "unknown subcommand '%s' (list | quarantine)", argv[1]);
}
