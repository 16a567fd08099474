/*
 * Replay jobs and the retention archive of evbusd on a real local Redis
 * Cluster (docs/scale-out.md, Status): 3 masters started by
 * tests/support/harness_cluster.c, a PostgreSQL by harness_pg.c, stream
 * "cj:events" in 6 partitions spread over the masters, one evbusd host
 * running keyed.so as "ko", which records every call in a file
 * (tests/support/harness_calls.h).  Events are XADDed into their
 * partition streams through the cluster client; replay jobs are created
 * with POST /api/v1/replays and followed in PostgreSQL.
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client/cluster.h"
#include "client/partition.h"
#include "harness.h"
#include "harness_calls.h"
#include "harness_cluster.h"
#include "harness_pg.h"
#include "store/store.h"

#define STREAM "cj:events"
#define P 6
#define NKEYS 24
#define NSEQ 10
#define N (NKEYS * NSEQ)

static harness_cluster_t hc;
static harness_pg_t pg;
static char *dir;
static evbus_cluster_t *cl;
static harness_proc_t host;
static int port;
static char conf_dir[512], calls_path[512], log_path[512];
static int per[P]; /* events published into each partition */

static void setup(void)
{
    cr_assert_eq(harness_cluster_start(&hc, 3, 0), 0, "the cluster did not start (logs in %s)",
                 hc.dir);
    cr_assert_eq(harness_pg_start(&pg), 0, "PostgreSQL did not start (see %s/pg.log)", pg.dir);
    dir = harness_tmpdir("cluster-jobs");
    char err[512];
    cl = evbus_cluster_new(hc.seeds, NULL, err, sizeof err);
    cr_assert_not_null(cl, "%s", err);
    host.pid = 0;
    port = harness_free_port();
    snprintf(conf_dir, sizeof conf_dir, "%s/conf", dir);
    snprintf(calls_path, sizeof calls_path, "%s/calls.tsv", dir);
    snprintf(log_path, sizeof log_path, "%s/evbusd.log", dir);
    memset(per, 0, sizeof per);
}

static void teardown(void)
{
    if (host.pid > 0)
        harness_kill(&host, SIGKILL, 5000);
    evbus_cluster_free(cl);
    char *log = harness_read_file(log_path);
    if (log && getenv("CLUSTER_SHOW_LOG"))
        fprintf(stderr, "---- evbusd ----\n%s\n", log);
    free(log);
    harness_cluster_stop(&hc);
    harness_pg_stop(&pg);
    harness_rmrf(dir);
    free(dir);
}

TestSuite(cluster_jobs, .init = setup, .fini = teardown, .timeout = 120);

static bool admin_up(void *ud)
{
    (void)ud;
    int st = 0;
    char *body = harness_http_get(port, "/health", &st);
    free(body);
    return body != NULL;
}

/* evbusd on the cluster with PostgreSQL and `retention` (a YAML flow map). */
static void start_host(const char *retention)
{
    char state[600];
    snprintf(state, sizeof state, "%s/state", dir);
    mkdir(conf_dir, 0777);
    mkdir(state, 0700);
    char *keyed = harness_build_path("plugins/testkit/keyed.so");
    char *schemas = harness_source_path("schemas");
    char hash[72];
    harness_token_hash(HARNESS_ADMIN_TOKEN, hash);
    char *yaml = NULL;
    cr_assert_geq(asprintf(&yaml,
                           "redis: { cluster: \"%s\", command_timeout_ms: 2000 }\n"
                           "stream: " STREAM "\n"
                           "partitions: %d\n"
                           "consumer: h0\n"
                           "batch_size: 60\n"
                           "block_ms: 50\n"
                           "worker_threads: 2\n"
                           "state_dir: %s\n"
                           "schemas: { dir: %s, mode: off }\n"
                           "admin: { listen: \"127.0.0.1:%d\", tokens: [ { name: adm, hash: "
                           "\"%s\", roles: [admin], tenant: \"*\" } ] }\n"
                           "postgres: { url: \"%s\", migrate_on_start: true }\n"
                           "retention: %s\n"
                           "plugins:\n"
                           "  - name: ko\n"
                           "    plugin: %s\n"
                           "    config: { out: %s }\n"
                           "    subscriptions:\n"
                           "      - { pattern: \"test.**\" }\n",
                           hc.seeds, P, state, schemas, port, hash, pg.url, retention, keyed,
                           calls_path),
                  0);
    free(keyed);
    free(schemas);
    cr_assert_eq(harness_write_file(conf_dir, "10-cj.yaml", yaml), 0);
    free(yaml);
    char *evbusd = harness_build_path("host/daemon/evbusd");
    char *argv[] = {evbusd, "-c", conf_dir, NULL};
    cr_assert_eq(harness_spawn(&host, argv, NULL, log_path), 0);
    free(evbusd);
    cr_assert(harness_wait_until(admin_up, NULL, 20000), "evbusd's admin endpoint did not come up");
}

static void part_name(unsigned p, char *out, size_t len)
{
    snprintf(out, len, "{" STREAM ":%u}", p);
}

/* A command through the cluster client (routed by its key); asserts a
 * reply that is not an error. */
static redisReply *cmd(int argc, const char **argv)
{
    char err[512] = "";
    redisReply *r = evbus_cluster_command(cl, argc, argv, NULL, err, sizeof err);
    cr_assert(r && r->type != REDIS_REPLY_ERROR, "%s %s: %s", argv[0], argc > 1 ? argv[1] : "",
              r ? r->str : err);
    return r;
}

/* One event of `key` (data.seq = seq; data.reject: keyed.so rejects it,
 * so it is dead-lettered) XADDed to its partition stream; its partition. */
static int xadd_event(const char *key, int seq, bool reject)
{
    char id[48], stream[64];
    snprintf(id, sizeof id, "%s-%d", key, seq);
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:{s:i, s:b}}", "specversion",
                           "1.0", "id", id, "source", "tests/cluster-jobs", "type",
                           "test.cj.step", "time", "2026-12-07T00:00:00Z", "tenantid",
                           "tenant-a", "partitionkey", key, "data", "seq", seq, "reject",
                           reject);
    int p = evbus_event_partition(ev, P);
    cr_assert(p >= 0 && p < P);
    part_name((unsigned)p, stream, sizeof stream);
    char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    const char *argv[] = {"XADD", stream, "*", "event", text};
    freeReplyObject(cmd(5, argv));
    free(text);
    return p;
}

/* Keys k000..k<NKEYS-1>, seq 0..NSEQ-1, each event XADDed to its
 * partition stream; per[] counts them. */
static void publish(void)
{
    for (int s = 0; s < NSEQ; s++)
        for (int i = 0; i < NKEYS; i++) {
            char key[16];
            snprintf(key, sizeof key, "k%03d", i);
            per[xadd_event(key, s, false)]++;
        }
}

/* The partitions that got events must live on more than one master, or
 * the test would not tell one connection from a connection per master. */
static void expect_spread_over_masters(void)
{
    char first[300] = "";
    bool two = false;
    for (unsigned p = 0; p < P; p++) {
        char tag[64], at[300];
        part_name(p, tag, sizeof tag);
        cr_assert_eq(evbus_cluster_slot_owner(cl, evbus_cluster_keyslot(tag, strlen(tag)), at,
                                              sizeof at),
                     0);
        if (!per[p])
            continue;
        if (!first[0])
            snprintf(first, sizeof first, "%s", at);
        two = two || strcmp(first, at) != 0;
    }
    cr_assert(two, "every partition with events hashes to one master");
}

static harness_calls_t read_calls(void)
{
    harness_calls_t c = {0};
    harness_calls_read(&c, calls_path, 0);
    return c;
}

static bool all_handled(void *ud)
{
    (void)ud;
    harness_calls_t c = read_calls();
    size_t n = harness_calls_distinct_ok(&c, NKEYS, NSEQ);
    harness_calls_free(&c);
    return n == N;
}

static long long xlen(unsigned p)
{
    char name[64];
    part_name(p, name, sizeof name);
    const char *argv[] = {"XLEN", name};
    redisReply *r = cmd(2, argv);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

/* The id of partition p's last entry into out ("" when empty). */
static void last_id(unsigned p, char *out, size_t len)
{
    char name[64];
    part_name(p, name, sizeof name);
    const char *argv[] = {"XREVRANGE", name, "+", "-", "COUNT", "1"};
    redisReply *r = cmd(6, argv);
    snprintf(out, len, "%s", r->elements ? r->element[0]->element[0]->str : "");
    freeReplyObject(r);
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "(null)";
}

static long long jint(const json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

/* The job's row once it is finished (or as it is after timeout_ms). */
static json_t *wait_job(PGconn *db, const char *id, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        json_t *job = NULL;
        char err[256];
        cr_assert_eq(store_replay_get(db, id, &job, err, sizeof err), 0, "%s", err);
        const char *st = jstr(job, "status");
        if (!strcmp(st, "completed") || !strcmp(st, "failed") || harness_now_ms() > deadline)
            return job;
        json_decref(job);
        usleep(100 * 1000);
    }
}

/* Each event handled again: twice in all (live, then replayed), counted
 * per partition. */
static void expect_each_handled_twice(void)
{
    harness_calls_t c = read_calls();
    int handled[P] = {0};
    int *times = calloc(N, sizeof *times);
    for (size_t i = 0; i < c.n; i++) {
        const harness_call_t *k = &c.v[i];
        if (strcmp(k->result, "ok") != 0)
            continue;
        handled[evbus_partition_of(k->key, strlen(k->key), P)]++;
        int key = atoi(k->key + 1);
        cr_assert(key >= 0 && key < NKEYS && k->seq >= 0 && k->seq < NSEQ, "%s %d", k->key,
                  k->seq);
        times[key * NSEQ + k->seq]++;
    }
    for (unsigned p = 0; p < P; p++)
        cr_expect_eq(handled[p], 2 * per[p], "partition %u: %d calls for %d events", p,
                     handled[p], per[p]);
    for (int e = 0; e < N; e++)
        cr_expect_eq(times[e], 2, "k%03d seq %d handled %d times", e / NSEQ, e % NSEQ, times[e]);
    free(times);
    harness_calls_free(&c);
}

/* Unix seconds as RFC 3339. */
static void rfc3339(time_t t, char out[32])
{
    struct tm tm;
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
}

/* POST /api/v1/replays: a job over the last hour (wall time: stream ids
 * are) at `rate` events/s (0: unlimited), one progress record per
 * partition; its id into id. */
static void create_job(int rate, char id[64])
{
    char from[32], to[32], body[200], r[32] = "";
    rfc3339(time(NULL) - 3600, from);
    rfc3339(time(NULL) + 60, to);
    if (rate)
        snprintf(r, sizeof r, ",\"rate\":%d", rate);
    snprintf(body, sizeof body, "{\"from\":\"%s\",\"to\":\"%s\"%s}", from, to, r);
    int st = -1;
    char *reply = harness_http(port, "POST", "/api/v1/replays", HARNESS_ADMIN_TOKEN, body, NULL,
                               &st, NULL);
    json_t *job = reply ? json_loads(reply, 0, NULL) : NULL;
    cr_assert_eq(st, 201, "POST /api/v1/replays: %d %s", st, reply ? reply : "");
    free(reply);
    cr_assert_eq(json_array_size(json_object_get(job, "partitions")), P);
    snprintf(id, 64, "%s", jstr(job, "id"));
    json_decref(job);
}

/* The job completed with every event processed, each partition's progress
 * and position recorded. */
static void expect_completed(json_t *job)
{
    char *text = json_dumps(job, JSON_COMPACT);
    cr_assert_str_eq(jstr(job, "status"), "completed", "%s", text);
    cr_expect_eq(jint(job, "total"), N, "%s", text);
    cr_expect_eq(jint(job, "processed"), N, "%s", text);
    cr_expect_eq(jint(job, "failed") + jint(job, "skipped"), 0, "%s", text);
    json_t *parts = json_object_get(job, "partitions");
    cr_assert_eq(json_array_size(parts), P, "%s", text);
    free(text);
    for (unsigned p = 0; p < P; p++) {
        const json_t *o = json_array_get(parts, p);
        char last[64];
        last_id(p, last, sizeof last);
        cr_expect_eq(jint(o, "partition"), p);
        cr_expect_str_eq(jstr(o, "status"), "completed", "partition %u", p);
        cr_expect_eq(jint(o, "total"), per[p], "partition %u", p);
        cr_expect_eq(jint(o, "processed"), per[p], "partition %u", p);
        if (per[p])
            cr_expect_str_eq(jstr(o, "position"), last, "partition %u", p);
    }
}

Test(cluster_jobs, a_replay_job_replays_every_partition_with_progress_per_partition)
{
    start_host("{ interval: 100ms }");
    publish();
    expect_spread_over_masters();
    cr_assert(harness_wait_until(all_handled, NULL, 30000), "not every event was handled live");

    /* a job over the last hour: every partition's window, on its master */
    PGconn *db = PQconnectdb(pg.url);
    cr_assert_eq(PQstatus(db), CONNECTION_OK, "%s", PQerrorMessage(db));
    char id[64];
    create_job(0, id);
    json_t *job = wait_job(db, id, 30000);
    expect_completed(job);
    json_decref(job);
    PQfinish(db);
    expect_each_handled_twice();
    cr_expect_eq(harness_kill(&host, SIGTERM, 20000), 0, "evbusd did not stop cleanly");
    host.pid = 0;
}

/* Partition p's dead letters, and of them those a replay wrote (field
 * replay_job); each must name stream {S:p} and hold an event of p. */
static void dead_letters(unsigned p, long long *all, long long *replayed)
{
    char name[64], dlq[80];
    part_name(p, name, sizeof name);
    snprintf(dlq, sizeof dlq, "%s:dlq", name);
    const char *argv[] = {"XRANGE", dlq, "-", "+"};
    redisReply *r = cmd(4, argv);
    *all = (long long)r->elements;
    *replayed = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *fv = r->element[i]->element[1];
        const char *event = "", *stream = "(none)";
        bool replay = false;
        for (size_t k = 0; k + 1 < fv->elements; k += 2) {
            const char *f = fv->element[k]->str, *v = fv->element[k + 1]->str;
            if (!strcmp(f, "event"))
                event = v;
            else if (!strcmp(f, "stream"))
                stream = v;
            else if (!strcmp(f, "replay_job"))
                replay = true;
        }
        *replayed += replay;
        json_t *ev = json_loads(event, 0, NULL);
        cr_expect_eq(evbus_event_partition(ev, P), (int)p, "an event of partition %d was "
                     "dead-lettered in %s", evbus_event_partition(ev, P), dlq);
        json_decref(ev);
        cr_expect_str_eq(stream, name, "a dead letter in %s names another stream", dlq);
    }
    freeReplyObject(r);
}

static bool dead_lettered(void *ud)
{
    const int *want = ud;
    for (unsigned p = 0; p < P; p++) {
        long long all, replayed;
        dead_letters(p, &all, &replayed);
        if (all < want[p])
            return false;
    }
    return true;
}

Test(cluster_jobs, replayed_events_that_fail_are_dead_lettered_in_their_partition)
{
    enum { NREJ = 30 };
    start_host("{ interval: 100ms }");
    int rej[P] = {0};
    for (int i = 0; i < NREJ; i++) {
        char key[16];
        snprintf(key, sizeof key, "r%02d", i);
        rej[xadd_event(key, 0, true)]++;
    }
    cr_assert(harness_wait_until(dead_lettered, rej, 30000), "the live rejects were not all "
              "dead-lettered");
    PGconn *db = PQconnectdb(pg.url);
    cr_assert_eq(PQstatus(db), CONNECTION_OK, "%s", PQerrorMessage(db));
    char id[64];
    create_job(0, id);
    json_t *job = wait_job(db, id, 30000);
    cr_assert_str_eq(jstr(job, "status"), "completed");
    cr_expect_eq(jint(job, "failed"), NREJ);
    cr_expect_eq(jint(job, "processed"), 0);
    json_decref(job);
    PQfinish(db);
    /* each replayed reject dead-lettered again, on its partition's master */
    int twice[P];
    for (unsigned p = 0; p < P; p++)
        twice[p] = 2 * rej[p];
    cr_assert(harness_wait_until(dead_lettered, twice, 15000), "the replay's dead letters are "
              "missing");
    for (unsigned p = 0; p < P; p++) {
        long long all, replayed;
        dead_letters(p, &all, &replayed);
        cr_expect_eq(all, 2 * rej[p], "partition %u: %lld dead letters for %d rejects", p, all,
                     rej[p]);
        cr_expect_eq(replayed, rej[p], "partition %u: %lld of the replay's", p, replayed);
    }
    cr_expect_eq(harness_kill(&host, SIGTERM, 20000), 0, "evbusd did not stop cleanly");
    host.pid = 0;
}

/* A command on node i that must not fail. */
/* Moves the slot of partition p's keys to another master as a reshard
 * does (harness_cluster_move_slot).  The new master's index. */
static int move_partition(unsigned p)
{
    char tag[64], at[300];
    part_name(p, tag, sizeof tag);
    unsigned slot = evbus_cluster_keyslot(tag, strlen(tag));
    cr_assert_eq(evbus_cluster_slot_owner(cl, slot, at, sizeof at), 0);
    int src = harness_cluster_node_of_port(&hc, atoi(strrchr(at, ':') + 1));
    int dst = (src + 1) % hc.n; /* no replicas: every node is a master */
    char why[600];
    cr_assert_eq(harness_cluster_move_slot(&hc, slot, src, dst, NULL, NULL, why, sizeof why), 0,
                 "%s", why);
    return dst;
}

static bool job_running(void *ud)
{
    void **a = ud;
    json_t *job = NULL;
    char err[256];
    cr_assert_eq(store_replay_get(a[0], a[1], &job, err, sizeof err), 0, "%s", err);
    bool yes = strcmp(jstr(job, "status"), "pending") != 0;
    json_decref(job);
    return yes;
}

static bool log_says(void *what)
{
    char *log = harness_read_file(log_path);
    bool yes = log && strstr(log, what);
    free(log);
    return yes;
}

Test(cluster_jobs, a_replay_job_follows_a_partition_moved_to_another_master_mid_job)
{
    start_host("{ interval: 100ms }");
    publish();
    cr_assert(harness_wait_until(all_handled, NULL, 30000), "not every event was handled live");
    /* the partition read last moves while the job reads the first ones */
    unsigned last = P - 1;
    while (!per[last])
        last--;
    PGconn *db = PQconnectdb(pg.url);
    cr_assert_eq(PQstatus(db), CONNECTION_OK, "%s", PQerrorMessage(db));
    char id[64];
    create_job(60, id); /* 4 s */
    void *args[] = {db, id};
    cr_assert(harness_wait_until(job_running, args, 15000), "the job never started");
    int dst = move_partition(last);
    json_t *job = wait_job(db, id, 30000);
    expect_completed(job);
    json_decref(job);
    PQfinish(db);
    char tag[64], at[300];
    part_name(last, tag, sizeof tag);
    cr_assert_eq(evbus_cluster_slot_owner(cl, evbus_cluster_keyslot(tag, strlen(tag)), at,
                                          sizeof at),
                 0);
    cr_expect_eq(harness_cluster_node_of_port(&hc, atoi(strrchr(at, ':') + 1)), dst,
                 "partition %u did not move", last);
    /* the worker's read there was redirected, and it read again */
    cr_expect(log_says("answered again"), "the replay worker saw no redirect");
    expect_each_handled_twice();
    cr_expect_eq(harness_kill(&host, SIGTERM, 20000), 0, "evbusd did not stop cleanly");
    host.pid = 0;
}

/* events_archive's rows of partition p. */
static long long rows(PGconn *db, unsigned p)
{
    char name[64];
    part_name(p, name, sizeof name);
    const char *params[] = {name};
    PGresult *r = PQexecParams(db, "SELECT count(*) FROM events_archive WHERE stream = $1", 1,
                               NULL, params, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(db));
    long long n = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}

static void policy(unsigned p, const char *field, char *out, size_t len)
{
    char key[80];
    part_name(p, key, sizeof key);
    strcat(key, ":retention");
    const char *argv[] = {"HGET", key, field};
    redisReply *r = cmd(3, argv);
    snprintf(out, len, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
}

/* Waits (20 s) until every partition but q is empty, checking all along
 * that nothing left Redis before its row was in PostgreSQL; then each
 * partition but q has every event archived up to its watermark, and q
 * (whose group `lagging` read nothing) every entry in Redis and none
 * archived. */
static void expect_archived_then_trimmed(PGconn *db, unsigned q)
{
    long long deadline = harness_now_ms() + 20000, left = -1;
    while (harness_now_ms() < deadline) {
        left = 0;
        for (unsigned p = 0; p < P; p++) {
            long long in_redis = xlen(p);
            long long archived = rows(db, p);
            cr_expect_geq(archived, per[p] - in_redis,
                          "partition %u: %lld trimmed, %lld archived", p, per[p] - in_redis,
                          archived);
            if (p != q)
                left += in_redis;
        }
        if (left == 0)
            break;
        usleep(100 * 1000);
    }
    cr_assert_eq(left, 0, "%lld entries never left the partitions", left);
    usleep(500 * 1000); /* a few more rounds of q's trimmer */
    for (unsigned p = 0; p < P; p++) {
        if (p == q) {
            cr_expect_eq(xlen(p), per[p], "partition %u lost entries group lagging never read",
                         p);
            cr_expect_eq(rows(db, p), 0, "partition %u archived entries a group still owes", p);
            continue;
        }
        cr_expect_eq(rows(db, p), per[p], "rows of partition %u", p);
        if (!per[p])
            continue;
        /* the stream is empty now: the newest row is its last entry */
        char name[64], wm[64];
        part_name(p, name, sizeof name);
        const char *params[] = {name};
        PGresult *r = PQexecParams(db, "SELECT ms || '-' || seq FROM events_archive WHERE"
                                       " stream = $1 ORDER BY ms DESC, seq DESC LIMIT 1",
                                   1, NULL, params, NULL, NULL, 0);
        cr_assert_eq(PQntuples(r), 1);
        policy(p, "archived", wm, sizeof wm);
        cr_expect_str_eq(wm, PQgetvalue(r, 0, 0), "the watermark of partition %u", p);
        PQclear(r);
    }
}

Test(cluster_jobs, the_archive_archives_every_partition_and_trims_only_what_it_archived)
{
    start_host("{ interval: 100ms }");
    publish();
    expect_spread_over_masters();
    cr_assert(harness_wait_until(all_handled, NULL, 30000), "not every event was handled live");
    /* a consumer group of partition q that reads nothing: it owes them all */
    unsigned q = 0;
    while (!per[q])
        q++;
    char qname[64];
    part_name(q, qname, sizeof qname);
    const char *grp[] = {"XGROUP", "CREATE", qname, "lagging", "0"};
    freeReplyObject(cmd(5, grp));

    /* a reload brings the archive and a short max_age: every entry evbusd
     * acknowledged is past it, so archived, then trimmed */
    cr_assert_eq(harness_write_file(conf_dir, "20-ret.yaml",
                                    "retention: { max_age: 500ms, archive: postgres, "
                                    "interval: 100ms }\n"),
                 0);
    kill(host.pid, SIGHUP);
    cr_assert(harness_wait_until(log_says, "generation 2 live", 15000),
              "the reload bringing retention.archive was not applied on a cluster");
    PGconn *db = PQconnectdb(pg.url);
    cr_assert_eq(PQstatus(db), CONNECTION_OK, "%s", PQerrorMessage(db));
    expect_archived_then_trimmed(db, q);

    /* another partition moves to another master: the archiver follows it
     * there with the next events */
    unsigned m = q + 1;
    while (!per[m])
        m++;
    move_partition(m);
    publish();
    expect_archived_then_trimmed(db, q);
    PQfinish(db);

    /* /health: every partition's archive on, what each archived */
    int st = 0;
    char *body = harness_http_get(port, "/health", &st);
    json_t *h = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    cr_assert(h, "no /health");
    for (unsigned p = 0; p < P; p++) {
        json_t *o = json_array_get(json_object_get(h, "partitions"), p);
        json_t *a = json_object_get(json_object_get(o, "retention"), "archive");
        cr_expect_str_eq(jstr(a, "mode"), "postgres", "partition %u", p);
        cr_expect_eq(jint(a, "archived_total"), p == q ? 0 : per[p], "partition %u", p);
        cr_expect(!json_is_string(json_object_get(a, "last_error")), "partition %u: %s", p,
                  jstr(a, "last_error"));
    }
    json_decref(h);
    cr_expect_eq(harness_kill(&host, SIGTERM, 20000), 0, "evbusd did not stop cleanly");
    host.pid = 0;
}
