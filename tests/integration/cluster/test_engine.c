/*
 * evbusd on a real local Redis Cluster (docs/scale-out.md): 3 masters and
 * 3 replicas started by tests/support/harness_cluster.c, stream
 * "ce:events" in 6 partitions (12 for the scale run and the kill -9 one),
 * evbusd hosts (up to 4) with redis.cluster (the seeds)
 * running keyed.so as "ko" with ordering: per_key, each recording its
 * calls in its own file ("<key> <seq> <attempt> <start_us> <end_us>
 * <result>").  Events are published with XADD into their partition
 * streams through the cluster client, which routes each to its master.
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/cluster.h"
#include "client/evbus_client.h"
#include "client/partition.h"
#include "harness.h"
#include "harness_calls.h"
#include "harness_cluster.h"

#define STREAM "ce:events"
#define MAXP 12
#define MAXH 4

static harness_cluster_t hc;
static char *dir;
static evbus_cluster_t *cl;
static harness_proc_t hosts[MAXH];
static int ports[MAXH];
static char conf_dirs[MAXH][512], outs[MAXH][512], logs[MAXH][512];
static const char *redis_extra; /* more of the redis: section */
static bool publish_wait;       /* WAIT 1 after each XADD */
static int P;                   /* partitions: 6, or 12 for the scale run */
static int sleep_ms;            /* keyed.so's time per call */

static void setup(void)
{
    cr_assert_eq(harness_cluster_start(&hc, 3, 1), 0, "the cluster did not start (logs in %s)",
                 hc.dir);
    dir = harness_tmpdir("cluster-engine");
    char err[512];
    cl = evbus_cluster_new(hc.seeds, NULL, err, sizeof err);
    cr_assert_not_null(cl, "%s", err);
    for (int h = 0; h < MAXH; h++) {
        hosts[h].pid = 0;
        ports[h] = harness_free_port();
        snprintf(outs[h], sizeof outs[h], "%s/calls%d.tsv", dir, h);
        snprintf(logs[h], sizeof logs[h], "%s/evbusd%d.log", dir, h);
    }
    redis_extra = "";
    publish_wait = false;
    P = 6;
    sleep_ms = 1;
}

static void teardown(void)
{
    for (int h = 0; h < MAXH; h++)
        if (hosts[h].pid > 0)
            harness_kill(&hosts[h], SIGKILL, 5000);
    evbus_cluster_free(cl);
    for (int h = 0; h < MAXH; h++) {
        char *log = harness_read_file(logs[h]);
        if (log && getenv("CLUSTER_SHOW_LOG"))
            fprintf(stderr, "---- h%d ----\n%s\n", h, log);
        free(log);
    }
    harness_cluster_stop(&hc);
    harness_rmrf(dir);
    free(dir);
}

TestSuite(cluster_engine, .init = setup, .fini = teardown, .timeout = 300);

static void start_host(int h)
{
    char state[600];
    snprintf(conf_dirs[h], sizeof conf_dirs[h], "%s/conf%d", dir, h);
    snprintf(state, sizeof state, "%s/state%d", dir, h);
    mkdir(conf_dirs[h], 0777);
    mkdir(state, 0700);
    char *keyed = harness_build_path("plugins/testkit/keyed.so");
    char *schemas = harness_source_path("schemas");
    char *yaml = NULL;
    cr_assert_geq(asprintf(&yaml,
                           "redis: { cluster: \"%s\", command_timeout_ms: 2000%s }\n"
                           "stream: " STREAM "\n"
                           "partitions: %d\n"
                           "consumer: h%d\n"
                           "batch_size: 60\n"
                           "block_ms: 50\n"
                           "worker_threads: 3\n"
                           "state_dir: %s\n"
                           "schemas: { dir: %s, mode: off }\n"
                           "admin: { listen: \"127.0.0.1:%d\" }\n"
                           "ownership: { lease_ms: 1500 }\n"
                           "retry: { base_ms: 50, factor: 1, max_ms: 50, max_attempts: 5, "
                           "jitter: 0 }\n"
                           "reclaim: { min_idle_ms: 2000, interval_ms: 200 }\n"
                           "plugins:\n"
                           "  - name: ko\n"
                           "    plugin: %s\n"
                           "    config: { out: %s, sleep_ms: %d }\n"
                           "    subscriptions:\n"
                           "      - { pattern: \"test.**\", ordering: per_key }\n",
                           hc.seeds, redis_extra, P, h, state, schemas, ports[h], keyed,
                           outs[h], sleep_ms),
                  0);
    free(keyed);
    free(schemas);
    cr_assert_eq(harness_write_file(conf_dirs[h], "10-ce.yaml", yaml), 0);
    free(yaml);
    char *evbusd = harness_build_path("host/daemon/evbusd");
    char *argv[] = {evbusd, "-c", conf_dirs[h], NULL};
    cr_assert_eq(harness_spawn(&hosts[h], argv, NULL, logs[h]), 0);
    free(evbusd);
}

/* Events seq from..to-1 of keys k000..k<nkeys-1>, each XADDed to its
 * partition stream through the cluster client. */
static void publish(int nkeys, int from, int to)
{
    for (int s = from; s < to; s++)
        for (int i = 0; i < nkeys; i++) {
            char key[16], id[48], stream[64];
            snprintf(key, sizeof key, "k%03d", i);
            snprintf(id, sizeof id, "%s-%d", key, s);
            json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:{s:i}}", "specversion",
                                   "1.0", "id", id, "source", "tests/cluster", "type",
                                   "test.ce.step", "time", "2026-12-07T00:00:00Z", "tenantid",
                                   "tenant-a", "partitionkey", key, "data", "seq", s);
            snprintf(stream, sizeof stream, "{" STREAM ":%d}", evbus_event_partition(ev, P));
            char *text = json_dumps(ev, JSON_COMPACT);
            json_decref(ev);
            const char *argv[] = {"XADD", stream, "*", "event", text};
            char err[512] = "";
            redisReply *r = NULL;
            /* a master that died or is being replaced: the publisher tries
             * again (an XADD whose reply was lost may then be in the stream
             * twice: a duplicate, never a loss) */
            for (int tries = 0; tries < 100; tries++) {
                r = evbus_cluster_command(cl, 5, argv, NULL, err, sizeof err);
                if (r && r->type == REDIS_REPLY_STRING)
                    break;
                freeReplyObject(r);
                r = NULL;
                usleep(200 * 1000);
            }
            cr_assert(r, "XADD %s: %s", stream, err);
            freeReplyObject(r);
            if (publish_wait) {
                const char *wv[] = {"WAIT", "1", "1000"};
                r = evbus_cluster_command_slot(cl, evbus_cluster_keyslot(stream, strlen(stream)),
                                               3, wv, NULL, err, sizeof err);
                freeReplyObject(r);
            }
            free(text);
        }
}

/* The same events through a cluster pipeline, one round of nkeys XADDs
 * per seq (each partition's commands reach its master in append order, so
 * a key's events keep their order): the 100,000 events in seconds
 * instead of a round trip each.  Every XADD must be answered. */
static void publish_fast(int nkeys, int from, int to)
{
    evbus_cluster_pipe_t *pipe = evbus_cluster_pipe_new(cl);
    cr_assert_not_null(pipe);
    for (int s = from; s < to; s++) {
        for (int i = 0; i < nkeys; i++) {
            char key[16], stream[64], text[400];
            snprintf(key, sizeof key, "k%03d", i);
            snprintf(stream, sizeof stream, "{" STREAM ":%u}",
                     evbus_partition_of(key, strlen(key), (unsigned)P));
            snprintf(text, sizeof text,
                     "{\"specversion\":\"1.0\",\"id\":\"%s-%d\",\"source\":\"tests/cluster\","
                     "\"type\":\"test.ce.step\",\"time\":\"2026-12-07T00:00:00Z\","
                     "\"tenantid\":\"tenant-a\",\"partitionkey\":\"%s\",\"data\":{\"seq\":%d}}",
                     key, s, key, s);
            const char *argv[] = {"XADD", stream, "*", "event", text};
            char err[512] = "";
            cr_assert_eq(evbus_cluster_pipe_append(pipe, 5, argv, NULL, err, sizeof err), 0, "%s",
                         err);
        }
        char err[512] = "";
        int missing = evbus_cluster_pipe_exec(pipe, err, sizeof err);
        cr_assert_eq(missing, 0, "%d XADDs unanswered: %s", missing, err);
        for (size_t i = 0; i < evbus_cluster_pipe_count(pipe); i++) {
            redisReply *r = evbus_cluster_pipe_reply(pipe, i);
            cr_assert(r && r->type == REDIS_REPLY_STRING, "XADD %zu: %s", i,
                      r && r->str ? r->str : evbus_cluster_pipe_error(pipe, i));
        }
    }
    evbus_cluster_pipe_free(pipe);
}

static harness_calls_t read_calls(void)
{
    harness_calls_t c = {0};
    for (int h = 0; h < MAXH; h++)
        harness_calls_read(&c, outs[h], h);
    return c;
}

typedef struct want {
    int nkeys, nseq;
} want_t;

static bool all_handled(void *ud)
{
    const want_t *w = ud;
    harness_calls_t c = read_calls();
    size_t n = harness_calls_distinct_ok(&c, w->nkeys, w->nseq);
    harness_calls_free(&c);
    return n == (size_t)w->nkeys * (size_t)w->nseq;
}

/* Per-key order across hosts (harness_calls_order); the duplicates. */
static size_t expect_per_key_order(harness_calls_t *c)
{
    size_t dups = 0;
    char msg[1200];
    size_t bad = harness_calls_order(c, &dups, msg, sizeof msg);
    cr_expect_eq(bad, 0, "%zu per-key order violations: %s", bad, msg);
    return dups;
}

/* Calls per host, into per[MAXH]. */
static void count_per_host(const harness_calls_t *c, size_t per[MAXH])
{
    for (int h = 0; h < MAXH; h++)
        per[h] = 0;
    for (size_t i = 0; i < c->n; i++)
        per[c->v[i].host]++;
}

/* A run without failures: per-key order, no duplicate, and each of the
 * first nhosts hosts at least 20 % of the calls (per[] gets the counts). */
static void expect_ordered_spread(harness_calls_t *c, int nhosts, size_t per[MAXH])
{
    count_per_host(c, per);
    size_t dups = expect_per_key_order(c);
    cr_expect_eq(dups, 0, "%zu duplicates without a failure", dups);
    for (int h = 0; h < nhosts; h++)
        cr_expect_geq(per[h] * 5, c->n, "h%d handled %zu of %zu (< 20 %%)", h, per[h], c->n);
}

static int owned_by(int h)
{
    int status = 0;
    char *body = harness_http_get(ports[h], "/health", &status);
    json_t *j = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    json_t *owned = json_object_get(json_object_get(j, "ownership"), "owned");
    int n = json_is_array(owned) ? (int)json_array_size(owned) : -1;
    json_decref(j);
    return n;
}

/* The hosts of a set, and whether they share the partitions evenly. */
typedef struct hostset {
    int n, h[MAXH];
} hostset_t;

static bool split_among(void *ud)
{
    const hostset_t *hs = ud;
    int total = 0;
    for (int i = 0; i < hs->n; i++) {
        int k = owned_by(hs->h[i]);
        if (k < P / hs->n || k > (P + hs->n - 1) / hs->n)
            return false;
        total += k;
    }
    return total == P;
}

static bool split_evenly(void *ud)
{
    hostset_t hs = {.n = *(int *)ud};
    for (int i = 0; i < hs.n; i++)
        hs.h[i] = i;
    return split_among(&hs);
}

/* The masters the partitions' tags hash to. */
static int masters_used(void)
{
    char seen[MAXP][300];
    int n = 0;
    for (int p = 0; p < P; p++) {
        char tag[64], at[300];
        snprintf(tag, sizeof tag, "{" STREAM ":%d}", p);
        cr_assert_eq(evbus_cluster_slot_owner(cl, evbus_cluster_keyslot(tag, strlen(tag)), at,
                                              sizeof at),
                     0);
        bool known = false;
        for (int i = 0; i < n; i++)
            known |= !strcmp(seen[i], at);
        if (!known)
            snprintf(seen[n++], sizeof seen[0], "%s", at);
    }
    return n;
}

Test(cluster_engine, two_hosts_handle_every_event_in_per_key_order_on_a_cluster)
{
    start_host(0);
    start_host(1);
    int two = 2;
    cr_assert(harness_wait_until(split_evenly, &two, 30000), "the hosts never split the %d "
              "partitions", P);
    want_t w = {.nkeys = 30, .nseq = 40};
    publish(w.nkeys, 0, w.nseq);
    cr_expect_geq(masters_used(), 2, "the %d partitions all hash to one master", P);
    cr_assert(harness_wait_until(all_handled, &w, 120000), "not every event was handled");
    harness_calls_t c = read_calls();
    size_t per[MAXH];
    expect_ordered_spread(&c, 2, per);
    harness_calls_free(&c);
    /* evbusctl status works on a cluster (it asks the host's /health) */
    char *ctl = harness_build_path("host/ctl/evbusctl");
    char *cargv[] = {ctl, "-c", conf_dirs[1], "status", NULL};
    char *out = NULL, *err = NULL;
    int cst = harness_run(cargv, NULL, NULL, &out, &err, 30000);
    cr_expect(cst == 0 || cst == 1, "evbusctl status exited %d: %s", cst, err ? err : "");
    cr_expect(out && strstr(out, "hosts:        2 live: h0 h1; this host holds 3 partitions") &&
                  strstr(out, ", owner h"),
              "%s", out ? out : "");
    free(out);
    free(err);
    free(ctl);
    /* the recorded count is on the cluster too */
    const char *argv[] = {"GET", STREAM ":partitions"};
    redisReply *r = evbus_cluster_command(cl, 2, argv, NULL, NULL, 0);
    cr_expect(r && r->type == REDIS_REPLY_STRING && !strcmp(r->str, "6"), "no record");
    freeReplyObject(r);
    for (int h = 0; h < 2; h++) {
        cr_expect_eq(harness_kill(&hosts[h], SIGTERM, 20000), 0, "h%d did not stop cleanly", h);
        hosts[h].pid = 0;
    }
}

Test(cluster_engine, a_master_failover_loses_nothing)
{
    start_host(0);
    int one = 1;
    cr_assert(harness_wait_until(split_evenly, &one, 30000));
    want_t w = {.nkeys = 20, .nseq = 60};
    publish(w.nkeys, 0, 20);
    /* the master of partition 0's slot hands over to its replica while
     * events flow (a manual failover: no write acknowledged is lost) */
    char tag[64] = "{" STREAM ":0}", at[300];
    cr_assert_eq(evbus_cluster_slot_owner(cl, evbus_cluster_keyslot(tag, strlen(tag)), at,
                                          sizeof at),
                 0);
    int master = harness_cluster_node_of_port(&hc, atoi(strrchr(at, ':') + 1));
    int replica = harness_cluster_replica_of(&hc, master);
    cr_assert_geq(replica, 0);
    redisContext *rc = harness_cluster_connect(&hc, replica);
    redisReply *r = redisCommand(rc, "CLUSTER FAILOVER");
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "CLUSTER FAILOVER: %s", r ? r->str : "?");
    freeReplyObject(r);
    redisFree(rc);
    publish(w.nkeys, 20, 60); /* the client follows the MOVED to the new master */
    cr_assert(harness_wait_until(all_handled, &w, 120000), "an event was lost in the failover");
    harness_calls_t c = read_calls();
    size_t dups = expect_per_key_order(&c);
    fprintf(stderr, "cluster: CLUSTER FAILOVER mid-stream: %zu calls, %zu duplicates\n", c.n,
            dups);
    harness_calls_free(&c);
    cr_expect_eq(harness_kill(&hosts[0], SIGTERM, 20000), 0);
    hosts[0].pid = 0;
}

/* The index of the node serving `tag`'s slot. */
static int node_of(const char *tag)
{
    char at[300];
    evbus_cluster_refresh(cl, NULL, 0);
    cr_assert_eq(evbus_cluster_slot_owner(cl, evbus_cluster_keyslot(tag, strlen(tag)), at,
                                          sizeof at),
                 0);
    return harness_cluster_node_of_port(&hc, atoi(strrchr(at, ':') + 1));
}

Test(cluster_engine, a_crashed_master_is_replaced_and_with_wait_replicas_nothing_is_lost)
{
    redis_extra = ", wait_replicas: 1, wait_timeout_ms: 1000";
    publish_wait = true;
    start_host(0);
    int one = 1;
    cr_assert(harness_wait_until(split_evenly, &one, 30000));
    want_t w = {.nkeys = 20, .nseq = 40};
    publish(w.nkeys, 0, 15);
    int master = node_of("{" STREAM ":0}");
    redisContext *rc = harness_cluster_connect(&hc, master);
    redisReply *r = redisCommand(rc, "DEBUG SEGFAULT"); /* no reply: it dies */
    if (r)
        freeReplyObject(r);
    redisFree(rc);
    publish(w.nkeys, 15, 40);
    cr_assert(harness_wait_until(all_handled, &w, 120000),
              "an event acknowledged by a replica was lost when its master crashed");
    harness_calls_t c = read_calls();
    size_t dups = expect_per_key_order(&c);
    fprintf(stderr, "cluster: DEBUG SEGFAULT of a master mid-stream (wait_replicas 1): %zu "
            "calls, 0 lost, %zu duplicates\n", c.n, dups);
    harness_calls_free(&c);
    cr_expect_eq(harness_kill(&hosts[0], SIGTERM, 20000), 0);
    hosts[0].pid = 0;
}

typedef struct range {
    int nkeys, from, to; /* events seq from..to-1 */
} range_t;

static size_t handled_in(const range_t *g)
{
    harness_calls_t c = read_calls();
    size_t n = harness_calls_distinct_ok(&c, g->nkeys, g->to) -
               harness_calls_distinct_ok(&c, g->nkeys, g->from);
    harness_calls_free(&c);
    return n;
}

static bool range_handled(void *ud)
{
    const range_t *g = ud;
    return handled_in(g) == (size_t)g->nkeys * (size_t)(g->to - g->from);
}

Test(cluster_engine, a_crashed_master_without_wait_replicas_is_replaced_and_the_loss_reported)
{
    start_host(0);
    int one = 1;
    cr_assert(harness_wait_until(split_evenly, &one, 30000));
    range_t before = {.nkeys = 20, .from = 0, .to = 15}, after = {.nkeys = 20, .from = 15,
                                                                   .to = 40};
    publish(before.nkeys, before.from, before.to);
    int master = node_of("{" STREAM ":0}");
    redisContext *rc = harness_cluster_connect(&hc, master);
    redisReply *r = redisCommand(rc, "DEBUG SEGFAULT");
    if (r)
        freeReplyObject(r);
    redisFree(rc);
    publish(after.nkeys, after.from, after.to);
    /* evbusd recovers on its own: everything published after the crash is
     * handled */
    cr_assert(harness_wait_until(range_handled, &after, 120000),
              "events published after the failover were not all handled");
    /* what was published before may have been lost with the master: with
     * asynchronous replication, writes it had not sent to its replica */
    size_t lost = (size_t)before.nkeys * (size_t)(before.to - before.from) - handled_in(&before);
    harness_calls_t c = read_calls();
    size_t dups = expect_per_key_order(&c);
    fprintf(stderr, "cluster: DEBUG SEGFAULT of a master mid-stream without wait_replicas: %zu "
            "calls, %zu events lost with the master, %zu duplicates\n", c.n, lost, dups);
    harness_calls_free(&c);
    cr_expect_eq(harness_kill(&hosts[0], SIGTERM, 20000), 0);
    hosts[0].pid = 0;
}

/* Node i's slot range (a fresh cluster gives each master one). */
static void slots_of(int node, long *lo, long *hi)
{
    const char *argv[] = {"CLUSTER", "SLOTS"};
    redisReply *r = evbus_cluster_command(cl, 2, argv, NULL, NULL, 0);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    *lo = *hi = -1;
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *e = r->element[i];
        redisReply *m = e->element[2];
        if (harness_cluster_node_of_port(&hc, (int)m->element[1]->integer) == node) {
            *lo = (long)e->element[0]->integer;
            *hi = (long)e->element[1]->integer;
        }
    }
    freeReplyObject(r);
}

static bool contains(const char *path, const char *what)
{
    char *text = harness_read_file(path);
    bool yes = text && strstr(text, what);
    free(text);
    return yes;
}

Test(cluster_engine, a_reshard_during_the_run_loses_nothing)
{
    start_host(0);
    start_host(1);
    int two = 2;
    cr_assert(harness_wait_until(split_evenly, &two, 30000));
    want_t w = {.nkeys = 20, .nseq = 40};
    publish(w.nkeys, 0, 10);
    /* the partition whose slot is nearest the start of its master's range:
     * `redis-cli --cluster reshard` moves slots from the start, so moving
     * that many moves it */
    int best = -1, src = -1;
    long moves = 0;
    for (int p = 0; p < P; p++) {
        char tag[64];
        snprintf(tag, sizeof tag, "{" STREAM ":%d}", p);
        int n = node_of(tag);
        long lo, hi, slot = (long)evbus_cluster_keyslot(tag, strlen(tag));
        slots_of(n, &lo, &hi);
        if (lo >= 0 && (best < 0 || slot - lo + 1 < moves)) {
            best = p;
            src = n;
            moves = slot - lo + 1;
        }
    }
    cr_assert_geq(best, 0);
    int dst = -1;
    for (int i = 0; i < hc.n && dst < 0; i++)
        if (i != src && harness_cluster_is_master(&hc, i))
            dst = i;
    char src_id[41], dst_id[41], from[64], slots[32];
    cr_assert_eq(harness_cluster_node_id(&hc, src, src_id), 0);
    cr_assert_eq(harness_cluster_node_id(&hc, dst, dst_id), 0);
    snprintf(from, sizeof from, "127.0.0.1:%d", hc.port[src]);
    snprintf(slots, sizeof slots, "%ld", moves);
    char rlog[600];
    snprintf(rlog, sizeof rlog, "%s/reshard.log", dir);
    char *argv[] = {"/usr/bin/redis-cli", "--cluster", "reshard", from, "--cluster-from", src_id,
                    "--cluster-to", dst_id, "--cluster-slots", slots, "--cluster-yes", NULL};
    harness_proc_t rs;
    cr_assert_eq(harness_spawn(&rs, argv, NULL, rlog), 0);
    publish(w.nkeys, 10, 40); /* while the slots move */
    cr_assert_eq(harness_wait(&rs, 120000), 0, "the reshard failed (see %s)", rlog);
    char tag[64];
    snprintf(tag, sizeof tag, "{" STREAM ":%d}", best);
    cr_expect_eq(node_of(tag), dst, "partition %d did not move", best);
    cr_assert(harness_wait_until(all_handled, &w, 120000), "an event was lost in the reshard");
    harness_calls_t c = read_calls();
    size_t dups = expect_per_key_order(&c);
    fprintf(stderr, "cluster: reshard of %ld slots (partition %d moved) mid-stream: %zu calls, "
            "%zu duplicates\n", moves, best, c.n, dups);
    harness_calls_free(&c);
    for (int h = 0; h < 2; h++) {
        cr_expect(!contains(logs[h], "CROSSSLOT"), "h%d saw a CROSSSLOT", h);
        cr_expect_eq(harness_kill(&hosts[h], SIGTERM, 20000), 0);
        hosts[h].pid = 0;
    }
}

/* The scale run (#16 §5): 12 partitions over the 3 masters, 3
 * hosts, 100,000 events over 1,000 keys with ordering: per_key — every
 * event handled, in per-key order, and every host doing a share. */
Test(cluster_engine, three_hosts_handle_100k_events_of_1000_keys_in_order, .timeout = 600)
{
    P = 12;
    sleep_ms = 0;
    for (int h = 0; h < 3; h++)
        start_host(h);
    hostset_t three = {3, {0, 1, 2}};
    cr_assert(harness_wait_until(split_among, &three, 30000), "the hosts never split the %d "
              "partitions", P);
    want_t w = {.nkeys = 1000, .nseq = 100};
    long long t0 = harness_now_ms();
    publish_fast(w.nkeys, 0, w.nseq);
    long long t1 = harness_now_ms();
    cr_expect_eq(masters_used(), 3, "the %d partitions do not reach all 3 masters", P);
    cr_assert(harness_wait_until(all_handled, &w, 400000), "not every event was handled");
    long long t2 = harness_now_ms();
    harness_calls_t c = read_calls();
    size_t per[MAXH];
    expect_ordered_spread(&c, 3, per);
    fprintf(stderr, "cluster_engine: 12 partitions, 3 hosts, %zu calls (h0 %zu, h1 %zu, h2 %zu); "
            "published in %lld ms, all handled %lld ms later\n", c.n, per[0], per[1], per[2],
            t1 - t0, t2 - t1);
    harness_calls_free(&c);
    for (int h = 0; h < 3; h++) {
        cr_expect_eq(harness_kill(&hosts[h], SIGTERM, 20000), 0, "h%d did not stop cleanly", h);
        hosts[h].pid = 0;
    }
}

/* Whether host *ud has handled a hundred calls (and so is mid-stream). */
static bool host_busy(void *ud)
{
    harness_calls_t c = {0};
    harness_calls_read(&c, outs[*(int *)ud], *(int *)ud);
    bool busy = c.n >= 100;
    harness_calls_free(&c);
    return busy;
}

/* #16 §5: kill -9 one of three hosts mid-stream, then start a fourth: its
 * partitions are taken over when the leases expire, nothing is lost, each
 * key keeps its order, and the duplicates are what the killed host had in
 * flight. */
Test(cluster_engine, a_killed_host_is_taken_over_and_a_fourth_host_gets_a_share)
{
    P = 12;
    sleep_ms = 2; /* h1 has calls in flight when it is killed */
    for (int h = 0; h < 3; h++)
        start_host(h);
    hostset_t three = {3, {0, 1, 2}};
    cr_assert(harness_wait_until(split_among, &three, 30000), "the hosts never split the %d "
              "partitions", P);
    want_t w = {.nkeys = 100, .nseq = 60};
    publish_fast(w.nkeys, 0, 20);
    int h1 = 1;
    cr_assert(harness_wait_until(host_busy, &h1, 30000), "h1 never started handling");
    harness_kill(&hosts[1], SIGKILL, 5000); /* mid-stream: it holds entries in flight */
    hosts[1].pid = 0;
    publish_fast(w.nkeys, 20, 40);
    hostset_t two = {2, {0, 2}};
    cr_assert(harness_wait_until(split_among, &two, 30000), "h1's partitions were not taken "
              "over");
    start_host(3);
    hostset_t again = {3, {0, 2, 3}};
    cr_assert(harness_wait_until(split_among, &again, 30000), "the fourth host got no share");
    publish_fast(w.nkeys, 40, 60);
    cr_assert(harness_wait_until(all_handled, &w, 120000), "an event was lost");
    harness_calls_t c = read_calls();
    size_t dups = expect_per_key_order(&c);
    size_t by[MAXH];
    count_per_host(&c, by);
    cr_expect_gt(by[3], 0, "the fourth host handled nothing");
    /* at most what h1 had read and not acknowledged: one read of
     * batch_size (60) per partition it held (4) */
    fprintf(stderr, "cluster_engine: kill -9 of a host mid-stream, then a fourth: %zu calls "
            "(h0 %zu, h1 %zu, h2 %zu, h3 %zu), %zu duplicates\n", c.n, by[0], by[1], by[2],
            by[3], dups);
    cr_expect_leq(dups, 240, "%zu duplicates", dups);
    harness_calls_free(&c);
    for (int h = 0; h < MAXH; h++)
        if (hosts[h].pid > 0) {
            cr_expect_eq(harness_kill(&hosts[h], SIGTERM, 20000), 0, "h%d did not stop cleanly",
                         h);
            hosts[h].pid = 0;
        }
}
