/*
 * Partition ownership across hosts (docs/scale-out.md, "Ownership and
 * rebalancing"), on one real redis-server.
 *
 * Up to four evbusd hosts ("h0".."h3", each its own admin port and
 * consumer name) consume stream "own:events" in P = 6 partitions.  Each
 * runs keyed.so as "ko" with ordering: per_key, recording every call in
 * its own file ("<key> <seq> <attempt> <start_us> <end_us> <result>",
 * start and end on CLOCK_MONOTONIC, so calls of different processes on
 * this machine compare).  Events are published with libevbus into their
 * partitions.  The tests read the files back and check: every event
 * handled, per key never out of order (no event handled before every
 * earlier event of its key was handled at least once) and never two
 * calls at once, and how the partitions are shared.
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

#include "client/evbus_client.h"
#include "client/partition.h"
#include "harness.h"
#include "harness_calls.h"

#define STREAM "own:events"
#define P 6
#define MAXH 4

static harness_redis_t redis;
static char *dir;
static redisContext *rc;
static evbus_client_t *pub;
static harness_proc_t hosts[MAXH];
static int ports[MAXH];
static char conf_dirs[MAXH][512], outs[MAXH][512], logs[MAXH][512];
static int sleep_ms; /* each handler call's duration */

static void write_config(int h)
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
                           "redis: { url: \"%s\" }\n"
                           "stream: " STREAM "\n"
                           "partitions: %d\n"
                           "consumer: h%d\n"
                           "batch_size: 60\n"
                           "block_ms: 50\n"
                           "worker_threads: 3\n"
                           "state_dir: %s\n"
                           "schemas: { dir: %s, mode: off }\n"
                           "admin: { listen: \"127.0.0.1:%d\" }\n"
                           "ownership: { lease_ms: 1500, drain_timeout_ms: 10000 }\n"
                           "retry: { base_ms: 50, factor: 1, max_ms: 50, max_attempts: 5, "
                           "jitter: 0 }\n"
                           "reclaim: { min_idle_ms: 2000, interval_ms: 200 }\n"
                           "plugins:\n"
                           "  - name: ko\n"
                           "    plugin: %s\n"
                           "    config: { out: %s, sleep_ms: %d }\n"
                           "    subscriptions:\n"
                           "      - { pattern: \"test.**\", ordering: per_key }\n",
                           redis.url, P, h, state, schemas, ports[h], keyed, outs[h], sleep_ms),
                  0);
    free(keyed);
    free(schemas);
    cr_assert_eq(harness_write_file(conf_dirs[h], "10-own.yaml", yaml), 0);
    free(yaml);
}

static void start_host(int h)
{
    write_config(h);
    char *evbusd = harness_build_path("host/daemon/evbusd");
    char *argv[] = {evbusd, "-c", conf_dirs[h], NULL};
    cr_assert_eq(harness_spawn(&hosts[h], argv, NULL, logs[h]), 0);
    free(evbusd);
}

static void stop_host(int h)
{
    int st = harness_kill(&hosts[h], SIGTERM, 20000);
    cr_expect_eq(st, 0, "h%d did not exit cleanly (status %d); see its log", h, st);
    hosts[h].pid = 0;
}

static void setup(void)
{
    cr_assert_eq(harness_redis_start(&redis, false), 0);
    dir = harness_tmpdir("ownership");
    rc = harness_redis_connect(&redis);
    cr_assert_not_null(rc);
    char err[256];
    pub = evbus_client_new(redis.url, STREAM, err, sizeof err);
    cr_assert_not_null(pub, "%s", err);
    cr_assert_eq(evbus_client_set_partitions(pub, P), 0);
    for (int h = 0; h < MAXH; h++) {
        hosts[h].pid = 0;
        ports[h] = harness_free_port();
        snprintf(outs[h], sizeof outs[h], "%s/calls%d.tsv", dir, h);
        snprintf(logs[h], sizeof logs[h], "%s/evbusd%d.log", dir, h);
    }
    sleep_ms = 0;
}

static void teardown(void)
{
    for (int h = 0; h < MAXH; h++)
        if (hosts[h].pid > 0)
            harness_kill(&hosts[h], SIGKILL, 5000);
    evbus_client_free(pub);
    if (rc)
        redisFree(rc);
    harness_redis_stop(&redis);
    for (int h = 0; h < MAXH; h++) {
        char *log = harness_read_file(logs[h]);
        if (log && getenv("OWNERSHIP_SHOW_LOG"))
            fprintf(stderr, "---- h%d ----\n%s\n", h, log);
        free(log);
    }
    harness_rmrf(dir);
    free(dir);
}

TestSuite(ownership, .init = setup, .fini = teardown, .timeout = 240);

/* ---- helpers ------------------------------------------------------------- */

static json_t *event(const char *key, int seq)
{
    char id[64];
    snprintf(id, sizeof id, "%s-%d", key, seq);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:{s:i}}", "specversion", "1.0", "id", id,
                     "source", "tests/ownership", "type", "test.own.step", "tenantid", "tenant-a",
                     "partitionkey", key, "data", "seq", seq);
}

/* Events seq = from..to-1 of keys k000..k<nkeys-1>, interleaved, in
 * batches (each key's events in increasing seq). */
static void publish(int nkeys, int from, int to)
{
    size_t n = (size_t)nkeys * (size_t)(to - from), k = 0;
    json_t **evs = calloc(n, sizeof *evs);
    for (int s = from; s < to; s++)
        for (int i = 0; i < nkeys; i++) {
            char key[16];
            snprintf(key, sizeof key, "k%03d", i);
            evs[k++] = event(key, s);
        }
    int *rcs = calloc(n, sizeof *rcs);
    char(*ids)[EVBUS_STREAM_ID_LEN] = calloc(n, sizeof *ids);
    char err[512];
    for (size_t off = 0; off < n; off += 500) {
        size_t m = n - off < 500 ? n - off : 500;
        ssize_t w = evbus_publish_batch(pub, evs + off, m, ids + off, rcs + off, err, sizeof err);
        cr_assert_eq(w, (ssize_t)m, "publish: %s", err);
    }
    for (size_t i = 0; i < n; i++)
        json_decref(evs[i]);
    free(evs);
    free(rcs);
    free(ids);
}

/* The first key "k<NNN>" whose events go to partition p. */
static void key_in(unsigned p, char out[16])
{
    for (int i = 0; i < 1000; i++) {
        snprintf(out, 16, "k%03d", i);
        if (evbus_partition_of(out, strlen(out), P) == p)
            return;
    }
    cr_assert_fail("no key of partition %u among k000..k999", p);
}

/* One event, published. */
static void publish_one(const char *key, int seq)
{
    json_t *ev = event(key, seq);
    char id[EVBUS_STREAM_ID_LEN], err[256];
    int prc = 0;
    cr_assert_eq(evbus_publish_batch(pub, &ev, 1, &id, &prc, err, sizeof err), 1, "%s", err);
    json_decref(ev);
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

static json_t *health(int h)
{
    int status = 0;
    char *body = harness_http_get(ports[h], "/health", &status);
    json_t *j = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    return j;
}

/* How many partitions host h says it holds (-1: no answer). */
static int owned_by(int h)
{
    json_t *j = health(h);
    json_t *owned = json_object_get(json_object_get(j, "ownership"), "owned");
    int n = json_is_array(owned) ? (int)json_array_size(owned) : -1;
    json_decref(j);
    return n;
}

typedef struct share {
    int hosts[MAXH], n, each; /* each of hosts[] holds `each` (or each+1) */
} share_t;

/* Every listed host holds its share, and no lease is held by anyone else. */
static bool shared(void *ud)
{
    const share_t *s = ud;
    int total = 0;
    for (int i = 0; i < s->n; i++) {
        int n = owned_by(s->hosts[i]);
        if (n < s->each || n > s->each + 1)
            return false;
        total += n;
    }
    return total == P;
}

static void wait_shared(const int *hs, int n)
{
    share_t s = {.n = n, .each = P / n};
    memcpy(s.hosts, hs, (size_t)n * sizeof *hs);
    cr_assert(harness_wait_until(shared, &s, 30000),
              "the %d hosts never shared the %d partitions (each %d)", n, P, P / n);
}

/* Each of h0..h2 lists the three hosts and an owner and epoch for every
 * partition, and the owners hold what they say. */
static bool views_agree(void *ud)
{
    (void)ud;
    bool ok = true;
    for (int h = 0; h < 3 && ok; h++) {
        json_t *j = health(h);
        json_t *own = json_object_get(j, "ownership");
        ok = json_array_size(json_object_get(own, "hosts")) == 3;
        json_t *parts = json_object_get(j, "partitions");
        ok = ok && json_array_size(parts) == P;
        for (int p = 0; p < P && ok; p++) {
            json_t *o = json_array_get(parts, (size_t)p);
            const char *owner = json_string_value(json_object_get(o, "owner"));
            ok = owner && owner[0] == 'h' && json_integer_value(json_object_get(o, "epoch")) > 0;
            if (ok && atoi(owner + 1) == h) /* the owner itself says so too */
                ok = json_object_get(o, "held_epoch") != NULL;
        }
        json_decref(j);
    }
    return ok;
}

/* ---- tests --------------------------------------------------------------- */

Test(ownership, three_hosts_share_the_partitions_and_keep_per_key_order)
{
    int hs[] = {0, 1, 2};
    for (int h = 0; h < 3; h++)
        start_host(h);
    wait_shared(hs, 3);
    /* every host comes to see an owner for every partition, and the hosts */
    cr_expect(harness_wait_until(views_agree, NULL, 10000),
              "the hosts' /health never showed every partition's owner");
    /* evbusctl status (asking h1) names each partition's owner and epoch */
    char *ctl = harness_build_path("host/ctl/evbusctl");
    char *argv[] = {ctl, "-c", conf_dirs[1], "status", NULL};
    char *out = NULL, *err = NULL;
    int st = harness_run(argv, NULL, NULL, &out, &err, 30000);
    cr_expect(st == 0 || st == 1, "evbusctl status exited %d: %s", st, err ? err : "");
    cr_expect(out && strstr(out, "hosts:        3 live: h0 h1 h2; this host holds 2 partitions"),
              "%s", out ? out : "");
    cr_expect(out && strstr(out, ", owner h") && strstr(out, "(epoch ") &&
                  strstr(out, ", here: active)"),
              "%s", out ? out : "");
    free(out);
    free(err);
    free(ctl);
    want_t w = {.nkeys = 60, .nseq = 50};
    publish(w.nkeys, 0, w.nseq);
    cr_assert(harness_wait_until(all_handled, &w, 90000), "not every event was handled");
    harness_calls_t c = read_calls();
    size_t per[MAXH] = {0};
    for (size_t i = 0; i < c.n; i++)
        per[c.v[i].host]++;
    size_t dups = expect_per_key_order(&c);
    cr_expect_eq(dups, 0, "%zu duplicates without any failure", dups);
    for (int h = 0; h < 3; h++)
        cr_expect_geq(per[h] * 5, c.n, "h%d handled %zu of %zu calls (< 20 %%)", h, per[h], c.n);
    harness_calls_free(&c);
    /* a key is in one partition, and a partition with one host: every key
     * was handled by one host only */
    for (int h = 0; h < 3; h++)
        stop_host(h);
}

Test(ownership, a_killed_host_is_taken_over_and_a_joining_host_gets_a_share)
{
    sleep_ms = 5; /* h1 has calls in flight when it is killed */
    int hs[] = {0, 1, 2};
    for (int h = 0; h < 3; h++)
        start_host(h);
    wait_shared(hs, 3);
    want_t w = {.nkeys = 40, .nseq = 60};
    publish(w.nkeys, 0, 20);
    harness_kill(&hosts[1], SIGKILL, 5000); /* mid-stream: it holds entries in flight */
    hosts[1].pid = 0;
    publish(w.nkeys, 20, 40);
    int two[] = {0, 2};
    wait_shared(two, 2); /* h1's leases expired and were taken over */
    start_host(3);
    int three[] = {0, 2, 3};
    wait_shared(three, 3);
    publish(w.nkeys, 40, 60);
    cr_assert(harness_wait_until(all_handled, &w, 120000), "an event was lost");
    harness_calls_t c = read_calls();
    size_t dups = expect_per_key_order(&c);
    size_t by3 = 0;
    for (size_t i = 0; i < c.n; i++)
        by3 += c.v[i].host == 3;
    cr_expect_gt(by3, 0, "the joining host handled nothing");
    /* the duplicates are what h1 had in flight when killed: at most one
     * read (batch_size 60 per round, over its partitions) */
    fprintf(stderr, "ownership: kill -9 of a host mid-stream: %zu calls, %zu duplicates\n", c.n,
            dups);
    cr_expect_leq(dups, 60, "%zu duplicates", dups);
    harness_calls_free(&c);
    for (int h = 0; h < 4; h++)
        if (hosts[h].pid > 0)
            stop_host(h);
}

static bool lease_free_of(void *ud)
{
    const char *name = ud;
    for (int p = 0; p < P; p++) {
        char key[64];
        snprintf(key, sizeof key, "{" STREAM ":%d}:lease", p);
        redisReply *r = redisCommand(rc, "GET %s", key);
        bool held = r && r->type == REDIS_REPLY_STRING && !strcmp(r->str, name);
        freeReplyObject(r);
        if (held)
            return false;
    }
    return true;
}

Test(ownership, a_stopping_host_releases_its_partitions_at_once)
{
    int hs[] = {0, 1};
    start_host(0);
    start_host(1);
    wait_shared(hs, 2);
    stop_host(1);
    /* released, not left to expire: right after the exit */
    cr_expect(lease_free_of("h1"), "h1 still holds a lease after a clean stop");
    redisReply *r = redisCommand(rc, "ZSCORE " STREAM ":hosts h1");
    cr_expect(r && r->type == REDIS_REPLY_NIL, "h1 is still in the host set");
    freeReplyObject(r);
    int one[] = {0};
    wait_shared(one, 1);
    want_t w = {.nkeys = 10, .nseq = 20};
    publish(w.nkeys, 0, w.nseq);
    cr_assert(harness_wait_until(all_handled, &w, 60000));
    stop_host(0);
    cr_expect(lease_free_of("h0"));
}

/* ---- fencing ----------------------------------------------------------- */

typedef struct pend {
    const char *stream;
    long long want;
} pend_t;

static bool pending_is(void *ud)
{
    const pend_t *p = ud;
    redisReply *r = redisCommand(rc, "XINFO GROUPS %s", p->stream);
    long long n = -1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
        redisReply *g = r->element[0];
        for (size_t i = 0; i + 1 < g->elements; i += 2)
            if (!strcmp(g->element[i]->str, "pending"))
                n = g->element[i + 1]->integer;
    }
    if (r)
        freeReplyObject(r);
    return n == p->want;
}

static size_t ok_calls(const char *key, int seq)
{
    harness_calls_t c = read_calls();
    size_t n = 0;
    for (size_t i = 0; i < c.n; i++)
        n += !strcmp(c.v[i].key, key) && c.v[i].seq == seq && !strcmp(c.v[i].result, "ok");
    harness_calls_free(&c);
    return n;
}

typedef struct okw {
    const char *key;
    int seq;
    size_t n;
} okw_t;

static bool ok_calls_reach(void *ud)
{
    const okw_t *o = ud;
    return ok_calls(o->key, o->seq) >= o->n;
}

static bool partition_state(int h, int p, const char *state)
{
    json_t *j = health(h);
    json_t *o = json_array_get(json_object_get(j, "partitions"), (size_t)p);
    const char *s = json_string_value(json_object_get(o, "state"));
    bool yes = s && !strcmp(s, state);
    json_decref(j);
    return yes;
}

static bool p0_none(void *ud)
{
    (void)ud;
    return partition_state(0, 0, "none");
}

static bool p0_active(void *ud)
{
    (void)ud;
    return partition_state(0, 0, "active");
}

static long long metric(int h, const char *name)
{
    int status = 0;
    char *body = harness_http_get(ports[h], "/metrics", &status);
    long long v = -1;
    char line[128];
    snprintf(line, sizeof line, "\n%s ", name); /* the sample, not its # HELP */
    const char *at = body ? strstr(body, line) : NULL;
    if (at)
        v = strtoll(at + strlen(line), NULL, 10);
    free(body);
    return v;
}

Test(ownership, a_host_that_lost_its_lease_cannot_acknowledge_there)
{
    sleep_ms = 3000; /* long enough to take the partition away mid-call, under load too */
    int one[] = {0};
    start_host(0);
    wait_shared(one, 1);
    char key[16];
    key_in(0, key);
    publish_one(key, 0);
    pend_t in_flight = {"{" STREAM ":0}", 1};
    cr_assert(harness_wait_until(pending_is, &in_flight, 10000), "the event was never read");
    /* another host takes the partition over while the call runs */
    redisReply *r = redisCommand(rc, "SET {" STREAM ":0}:lease intruder PX 600000");
    freeReplyObject(r);
    r = redisCommand(rc, "INCR {" STREAM ":0}:epoch");
    freeReplyObject(r);
    okw_t first = {key, 0, 1};
    cr_assert(harness_wait_until(ok_calls_reach, &first, 10000), "the call never ended");
    cr_assert(harness_wait_until(p0_none, NULL, 10000), "h0 still says it holds partition 0");
    /* the call's acknowledgement was fenced: the entry is still pending */
    cr_expect(pending_is(&in_flight), "the fenced host acknowledged the entry");
    cr_expect_geq(metric(0, "evbus_fenced_writes_total"), 1);
    cr_expect_geq(metric(0, "evbus_partition_leases_lost_total"), 1);
    /* and it reads the partition no more: a later event waits there */
    publish_one(key, 1);
    char other[16];
    key_in(1, other);
    publish_one(other, 0);
    okw_t other_done = {other, 0, 1};
    cr_assert(harness_wait_until(ok_calls_reach, &other_done, 10000));
    cr_expect_eq(ok_calls(key, 1), 0, "h0 handled an event of a partition it lost");
    /* the intruder goes away: h0 acquires a new epoch, handles the entry it
     * could not acknowledge again, then the later one */
    r = redisCommand(rc, "DEL {" STREAM ":0}:lease");
    freeReplyObject(r);
    cr_assert(harness_wait_until(p0_active, NULL, 15000), "h0 never took partition 0 back");
    okw_t again = {key, 0, 2}, later = {key, 1, 1};
    cr_assert(harness_wait_until(ok_calls_reach, &again, 15000), "not handled again");
    cr_assert(harness_wait_until(ok_calls_reach, &later, 15000), "the later event waited on");
    pend_t none = {"{" STREAM ":0}", 0};
    cr_expect(harness_wait_until(pending_is, &none, 10000), "still pending after the takeover");
    json_t *j = health(0);
    json_t *o = json_array_get(json_object_get(j, "partitions"), 0);
    cr_expect_geq(json_integer_value(json_object_get(o, "held_epoch")), 3,
                  "epochs: 1 (h0), 2 (intruder), then h0's new one");
    json_decref(j);
    stop_host(0);
}
