/*
 * The cluster client (host/client/cluster.h) against a real local Redis
 * Cluster (tests/support/harness_cluster.h): its slot hashing agrees with
 * CLUSTER KEYSLOT, commands reach the master that serves their key, a slot
 * moved mid-use is followed through ASK and then MOVED, and a failover —
 * a manual one and a killed master — is followed by reading the map
 * again.  Every test starts its own cluster (3 masters, 3 replicas; a few
 * seconds each).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/cluster.h"
#include "client/evbus_client.h"
#include "harness.h"
#include "harness_cluster.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* A random key: often built of braces and a few letters (so tags, empty
 * tags, nested and unclosed braces all occur), sometimes random bytes. */
static size_t random_key(char *out, size_t max)
{
    size_t n = rng() % max;
    bool bytes = rng() % 4 == 0;
    static const char alphabet[] = "{}{}{}ab";
    for (size_t i = 0; i < n; i++)
        out[i] = bytes ? (char)(rng() & 0xff) : alphabet[rng() % (sizeof alphabet - 1)];
    return n;
}

Test(cluster_keyslot, agrees_with_cluster_keyslot_for_10000_random_keys, .timeout = 120)
{
    harness_cluster_t hc;
    cr_assert_eq(harness_cluster_start_alone(&hc), 0);
    redisContext *ctx = harness_cluster_connect(&hc, 0);
    cr_assert(ctx);
    enum { N = 10000 };
    static char keys[N][40];
    static size_t lens[N];
    size_t tagged = 0, empty_tag = 0;
    for (int i = 0; i < N; i++) {
        lens[i] = random_key(keys[i], sizeof keys[i]);
        const char *o = memchr(keys[i], '{', lens[i]);
        const char *cl = o ? memchr(o + 1, '}', lens[i] - (size_t)(o + 1 - keys[i])) : NULL;
        tagged += cl && cl > o + 1;
        empty_tag += cl && cl == o + 1;
        const char *argv[3] = {"CLUSTER", "KEYSLOT", keys[i]};
        size_t al[3] = {7, 7, lens[i]};
        redisAppendCommandArgv(ctx, 3, argv, al);
    }
    cr_assert_gt(tagged, 1000, "the keys exercise hash tags");
    cr_assert_gt(empty_tag, 1000, "and empty tags");
    for (int i = 0; i < N; i++) {
        void *vr = NULL;
        cr_assert_eq(redisGetReply(ctx, &vr), REDIS_OK);
        redisReply *r = vr;
        cr_assert_eq(r->type, REDIS_REPLY_INTEGER);
        cr_assert_eq((unsigned)r->integer, evbus_cluster_keyslot(keys[i], lens[i]),
                     "key %d (%zu bytes)", i, lens[i]);
        freeReplyObject(r);
    }
    redisFree(ctx);
    harness_cluster_stop(&hc);
}

static harness_cluster_t HC;

static void cluster_up(void)
{
    cr_assert_eq(harness_cluster_start(&HC, 3, 1), 0, "cluster did not start (logs in %s)",
                 HC.dir);
}

static void cluster_down(void)
{
    harness_cluster_stop(&HC);
}

static evbus_cluster_t *client(int budget_ms)
{
    char err[300];
    evbus_cluster_opts_t o = {.retry_budget_ms = budget_ms};
    evbus_cluster_t *c = evbus_cluster_new(HC.seeds, &o, err, sizeof err);
    cr_assert(c, "%s", err);
    return c;
}

static redisReply *run(evbus_cluster_t *c, int argc, const char **argv)
{
    char err[400] = "";
    redisReply *r = evbus_cluster_command(c, argc, argv, NULL, err, sizeof err);
    cr_assert(r, "%s: %s", argv[0], err);
    cr_assert_neq(r->type, REDIS_REPLY_ERROR, "%s: %s", argv[0], r->str);
    return r;
}

static void set(evbus_cluster_t *c, const char *k, const char *v)
{
    const char *argv[] = {"SET", k, v};
    freeReplyObject(run(c, 3, argv));
}

static void assert_get(evbus_cluster_t *c, const char *k, const char *want)
{
    const char *argv[] = {"GET", k};
    redisReply *r = run(c, 2, argv);
    cr_assert_eq(r->type, REDIS_REPLY_STRING, "GET %s", k);
    cr_assert_str_eq(r->str, want, "GET %s", k);
    freeReplyObject(r);
}

/* The value of k read on node i directly (no redirect followed); NULL
 * when i does not hold it (MOVED, ASK or nil). */
static char *get_on(int i, const char *k)
{
    redisContext *ctx = harness_cluster_connect(&HC, i);
    cr_assert(ctx);
    redisReply *r = redisCommand(ctx, "GET %s", k);
    char *v = r && r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    redisFree(ctx);
    return v;
}

static int port_of(const char *addr)
{
    return atoi(strrchr(addr, ':') + 1);
}

static evbus_cluster_stats_t stats(evbus_cluster_t *c)
{
    evbus_cluster_stats_t st;
    evbus_cluster_stats(c, &st);
    return st;
}

TestSuite(cluster_real, .init = cluster_up, .fini = cluster_down, .timeout = 180);

Test(cluster_real, commands_reach_the_master_serving_their_slot)
{
    evbus_cluster_t *c = client(0);
    char k[32], v[32], owner[64];
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof k, "key:%d", i);
        snprintf(v, sizeof v, "v%d", i);
        set(c, k, v);
    }
    bool seen[HARNESS_CLUSTER_MAX] = {0};
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof k, "key:%d", i);
        snprintf(v, sizeof v, "v%d", i);
        cr_assert_eq(evbus_cluster_slot_owner(c, evbus_cluster_keyslot(k, strlen(k)), owner,
                                              sizeof owner),
                     0);
        int node = harness_cluster_node_of_port(&HC, port_of(owner));
        cr_assert_geq(node, 0);
        cr_assert(harness_cluster_is_master(&HC, node));
        char *got = get_on(node, k);
        cr_assert(got && !strcmp(got, v), "%s is on %s", k, owner);
        free(got);
        seen[node] = true;
    }
    int masters = 0;
    for (int i = 0; i < HC.n; i++)
        masters += seen[i];
    cr_assert_eq(masters, 3, "the keys spread over the 3 masters");
    cr_assert_eq(stats(c).moved + stats(c).ask, 0, "routed without a redirect");

    /* a script and a pipeline whose keys share a tag: one slot, no CROSSSLOT */
    const char *eval[] = {"EVAL",
                          "redis.call('XADD', KEYS[1], '*', 'event', ARGV[1]); "
                          "redis.call('ZADD', KEYS[2], 1, ARGV[1]); "
                          "return redis.call('XLEN', KEYS[1])",
                          "2", "{p7}:stream", "{p7}:retry", "e1"};
    redisReply *r = run(c, 6, eval);
    cr_assert_eq(r->integer, 1);
    freeReplyObject(r);
    evbus_cluster_pipe_t *p = evbus_cluster_pipe_new(c);
    char err[400] = "";
    for (int i = 0; i < 30; i++) {
        char pk[32];
        snprintf(pk, sizeof pk, "{p%d}:stream", i % 12);
        const char *xadd[] = {"XADD", pk, "*", "event", "x"};
        cr_assert_eq(evbus_cluster_pipe_append(p, 5, xadd, NULL, err, sizeof err), 0, "%s", err);
    }
    cr_assert_eq(evbus_cluster_pipe_exec(p, err, sizeof err), 0, "%s", err);
    for (size_t i = 0; i < evbus_cluster_pipe_count(p); i++) {
        redisReply *x = evbus_cluster_pipe_reply(p, i);
        cr_assert(x && x->type == REDIS_REPLY_STRING, "XADD %zu: %s", i,
                  x ? x->str : evbus_cluster_pipe_error(p, i));
    }
    evbus_cluster_pipe_free(p);
    const char *xlen[] = {"XLEN", "{p7}:stream"};
    r = run(c, 2, xlen);
    cr_assert_eq(r->integer, 1 + 2, "the script's entry and the pipeline's two for p7");
    freeReplyObject(r);
    evbus_cluster_free(c);
}

/* Runs a command on node i and asserts it succeeded. */
static void on(int i, const char *fmt, ...)
{
    char why[600];
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = harness_cluster_vcommand(&HC, i, why, sizeof why, fmt, ap);
    va_end(ap);
    cr_assert(r, "%s", why);
    freeReplyObject(r);
}

Test(cluster_real, a_slot_moved_while_in_use_is_followed_through_ask_then_moved)
{
    evbus_cluster_t *c = client(0);
    const char *old_key = "{moving}old", *new_key = "{moving}new";
    unsigned slot = evbus_cluster_keyslot("moving", 6);
    set(c, old_key, "1");
    char owner[64], src_id[41], dst_id[41];
    evbus_cluster_slot_owner(c, slot, owner, sizeof owner);
    int src = harness_cluster_node_of_port(&HC, port_of(owner)), dst = -1;
    for (int i = 0; i < HC.n && dst < 0; i++)
        if (i != src && harness_cluster_is_master(&HC, i))
            dst = i;
    cr_assert(src >= 0 && dst >= 0);
    cr_assert_eq(harness_cluster_node_id(&HC, src, src_id), 0);
    cr_assert_eq(harness_cluster_node_id(&HC, dst, dst_id), 0);

    /* the migration begins: a key the source no longer has is asked of the
     * target, an old one is still served by the source */
    on(dst, "CLUSTER SETSLOT %u IMPORTING %s", slot, src_id);
    on(src, "CLUSTER SETSLOT %u MIGRATING %s", slot, dst_id);
    set(c, new_key, "2");
    cr_assert_eq(stats(c).ask, 1);
    assert_get(c, old_key, "1");
    cr_assert_eq(stats(c).ask, 1, "the old key is still at the source");
    char *there = get_on(src, new_key);
    cr_assert_null(there, "the new key was written on the target");
    /* the old key moves: now it is asked of the target too */
    on(src, "MIGRATE 127.0.0.1 %d %s 0 5000 KEYS %s", HC.port[dst], "", old_key);
    assert_get(c, old_key, "1");
    cr_assert_eq(stats(c).ask, 2);
    char now[64];
    evbus_cluster_slot_owner(c, slot, now, sizeof now);
    cr_assert_str_eq(now, owner, "ASK leaves the map alone");

    /* the migration ends: the source answers MOVED, the map follows */
    for (int i = 0; i < HC.n; i++)
        if (harness_cluster_is_master(&HC, i))
            on(i, "CLUSTER SETSLOT %u NODE %s", slot, dst_id);
    assert_get(c, new_key, "2");
    cr_assert_eq(stats(c).moved, 1);
    evbus_cluster_slot_owner(c, slot, now, sizeof now);
    cr_assert_eq(port_of(now), HC.port[dst]);
    assert_get(c, old_key, "1");
    cr_assert_eq(stats(c).moved, 1, "the next command goes straight to the new owner");
    cr_assert_eq(stats(c).ask, 2);
    evbus_cluster_free(c);
}

static int wait_master(int i, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    while (harness_now_ms() < deadline) {
        if (harness_cluster_is_master(&HC, i))
            return 0;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return -1;
}

Test(cluster_real, a_failover_is_followed_by_reading_the_map_again)
{
    evbus_cluster_t *c = client(15000);
    char owner[64];
    const char *k = "{fo}k";
    unsigned slot = evbus_cluster_keyslot("fo", 2);
    set(c, k, "before");
    const char *wait[] = {"WAIT", "1", "2000"};
    char err[400] = "";
    redisReply *w = evbus_cluster_command_slot(c, slot, 3, wait, NULL, err, sizeof err);
    cr_assert(w && w->type == REDIS_REPLY_INTEGER && w->integer == 1, "%s", err);
    freeReplyObject(w);
    evbus_cluster_slot_owner(c, slot, owner, sizeof owner);
    int master = harness_cluster_node_of_port(&HC, port_of(owner));
    int replica = harness_cluster_replica_of(&HC, master);
    cr_assert_geq(replica, 0);

    /* 1. a manual failover: the old master turns replica and answers
     * MOVED; the handle reads the map again and names the new master */
    uint64_t refreshes = stats(c).refreshes;
    on(replica, "CLUSTER FAILOVER");
    cr_assert_eq(wait_master(replica, 20000), 0, "the replica was promoted");
    /* and the old master knows it (else it would still take the writes) */
    long long until = harness_now_ms() + 20000;
    while (harness_cluster_is_master(&HC, master) && harness_now_ms() < until) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cr_assert(!harness_cluster_is_master(&HC, master), "the old master turned replica");
    assert_get(c, k, "before");
    set(c, k, "after-failover");
    evbus_cluster_slot_owner(c, slot, owner, sizeof owner);
    cr_assert_eq(port_of(owner), HC.port[replica]);
    cr_assert_gt(stats(c).refreshes, refreshes, "the map was read again");

    /* 2. the new master crashes: the handle keeps reading the map until
     * the old one (its replica again) is promoted, within its budget */
    redisReply *w2 = evbus_cluster_command_slot(c, slot, 3, wait, NULL, err, sizeof err);
    cr_assert(w2 && w2->integer == 1, "%s", err);
    freeReplyObject(w2);
    harness_cluster_kill(&HC, replica);
    uint64_t conn_errors = stats(c).conn_errors;
    assert_get(c, k, "after-failover");
    evbus_cluster_slot_owner(c, slot, owner, sizeof owner);
    cr_assert_eq(port_of(owner), HC.port[master], "the first master serves the slot again");
    cr_assert_gt(stats(c).conn_errors, conn_errors);
    evbus_cluster_free(c);
}
