/*
 * Partitioned streams on one Redis server (docs/scale-out.md, "Partitions"
 * and "The recorded partition count").
 *
 * One evbusd runs keyed.so ("rec", every event) on stream "pt:events".
 * keyed.so appends "<partitionkey> <seq> <attempt> <start> <end> <result>"
 * per call; events say in data.fail how often they fail first and in
 * data.reject whether they are poison.  The tests publish through evbusctl
 * and libevbus and read Redis back with the partition rules of
 * client/partition.h, computed here by the library's own functions.
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

#define STREAM "pt:events"

static harness_redis_t redis;
static char *dir;
static char rec_file[512], conf_dir[512], log_path[512];
static harness_proc_t host;
static redisContext *rc;

/* Writes the configuration with `partitions` (0: the line left out). */
static void write_config(unsigned partitions)
{
    char state[600];
    snprintf(conf_dir, sizeof conf_dir, "%s/conf", dir);
    snprintf(state, sizeof state, "%s/state", dir);
    mkdir(conf_dir, 0777);
    mkdir(state, 0700);
    char *keyed = harness_build_path("plugins/testkit/keyed.so");
    char *schemas = harness_source_path("schemas");
    char parts[64] = "";
    if (partitions)
        snprintf(parts, sizeof parts, "partitions: %u\n", partitions);
    char *yaml = NULL;
    cr_assert_geq(asprintf(&yaml,
                           "redis: { url: \"%s\" }\n"
                           "stream: " STREAM "\n"
                           "%s"
                           "consumer: c1\n"
                           "batch_size: 100\n"
                           "block_ms: 50\n"
                           "worker_threads: 3\n"
                           "state_dir: %s\n"
                           "schemas: { dir: %s, mode: off }\n"
                           "retry: { base_ms: 50, factor: 1, max_ms: 50, max_attempts: 3, "
                           "jitter: 0 }\n"
                           "reclaim: { min_idle_ms: 1000, interval_ms: 200 }\n"
                           "plugins:\n"
                           "  - name: rec\n"
                           "    plugin: %s\n"
                           "    config: { out: %s }\n"
                           "    subscriptions:\n"
                           "      - { pattern: \"test.**\" }\n",
                           redis.url, parts, state, schemas, keyed, rec_file),
                  0);
    free(keyed);
    free(schemas);
    cr_assert_eq(harness_write_file(conf_dir, "10-pt.yaml", yaml), 0);
    free(yaml);
}

static void setup(void)
{
    cr_assert_eq(harness_redis_start(&redis, false), 0);
    dir = harness_tmpdir("partitions");
    snprintf(rec_file, sizeof rec_file, "%s/rec.tsv", dir);
    snprintf(log_path, sizeof log_path, "%s/evbusd.log", dir);
    rc = harness_redis_connect(&redis);
    cr_assert_not_null(rc);
    host.pid = 0;
}

static void teardown(void)
{
    if (host.pid > 0)
        harness_kill(&host, SIGKILL, 5000);
    if (rc)
        redisFree(rc);
    harness_redis_stop(&redis);
    char *log = harness_read_file(log_path);
    if (log && getenv("PARTITIONS_SHOW_LOG"))
        fprintf(stderr, "%s\n", log);
    free(log);
    harness_rmrf(dir);
    free(dir);
}

TestSuite(partitions, .init = setup, .fini = teardown, .timeout = 120);

/* evbusd with args (NULL-terminated, after -c conf): its exit status, its
 * stderr in *err (malloc'd). */
static int run_evbusd(const char *arg, char **out, char **err)
{
    char *evbusd = harness_build_path("host/daemon/evbusd");
    char *argv[] = {evbusd, "-c", conf_dir, (char *)arg, NULL};
    int st = harness_run(argv, NULL, NULL, out, err, 20000);
    free(evbusd);
    return st;
}

static void record(const char *value)
{
    redisReply *r = redisCommand(rc, "SET " STREAM ":partitions %s", value);
    cr_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
}

static long long exists(const char *key)
{
    return harness_redis_int(rc, "EXISTS %s", key);
}

/* ---- the recorded partition count ------------------------------------- */

Test(partitions, start_refuses_a_count_that_differs_from_the_record)
{
    record("4");
    write_config(1);
    char *out = NULL, *err = NULL;
    int st = run_evbusd("--exit-idle=500", &out, &err);
    cr_expect_eq(st, 2, "evbusd exited %d; stderr: %s", st, err ? err : "");
    cr_expect(err && strstr(err, "partitions: 1 (") && strstr(err, "10-pt.yaml:3:13)"),
              "no setting position: %s", err ? err : "");
    cr_expect(err && strstr(err, "Redis records 4 partitions"), "%s", err ? err : "");
    cr_expect(err && strstr(err, "docs/scale-out.md") && strstr(err, "docs/operations.md"), "%s",
              err ? err : "");
    cr_expect_eq(exists(STREAM), 0, "the refused evbusd created the stream");
    free(out);
    free(err);
}

Test(partitions, check_config_refuses_a_count_that_differs_from_the_record)
{
    record("4");
    write_config(2);
    char *out = NULL, *err = NULL;
    int st = run_evbusd("--check-config", &out, &err);
    cr_expect_eq(st, 2, "evbusd --check-config exited %d; stderr: %s", st, err ? err : "");
    cr_expect(err && strstr(err, "partitions: 2 (") && strstr(err, "10-pt.yaml:3:"),
              "no file:line:column: %s", err ? err : "");
    cr_expect(err && strstr(err, "set partitions: 4"), "%s", err ? err : "");
    free(out);
    free(err);
}

Test(partitions, an_unpartitioned_stream_counts_as_one_partition)
{
    redisReply *r = redisCommand(rc, "XADD " STREAM " * event {}");
    freeReplyObject(r);
    write_config(4);
    char *out = NULL, *err = NULL;
    int st = run_evbusd("--check-config", &out, &err);
    cr_expect_eq(st, 2, "exited %d: %s", st, err ? err : "");
    cr_expect(err && strstr(err, "unpartitioned stream exists"), "%s", err ? err : "");
    cr_expect_eq(exists(STREAM ":partitions"), 0, "--check-config wrote the record");
    free(out);
    free(err);
}

Test(partitions, check_config_passes_when_the_record_agrees_and_writes_nothing)
{
    write_config(4);
    char *out = NULL, *err = NULL;
    int st = run_evbusd("--check-config", &out, &err);
    cr_expect_eq(st, 0, "exited %d: %s", st, err ? err : "");
    cr_expect_eq(exists(STREAM ":partitions"), 0, "--check-config wrote the record");
    free(out);
    free(err);
    record("4");
    st = run_evbusd("--check-config", &out, &err);
    cr_expect_eq(st, 0, "exited %d: %s", st, err ? err : "");
    free(out);
    free(err);
}

Test(partitions, one_partition_keeps_todays_keys_and_writes_no_record)
{
    write_config(0);
    char *out = NULL, *err = NULL;
    int st = run_evbusd("--exit-idle=300", &out, &err);
    cr_expect_eq(st, 0, "exited %d: %s", st, err ? err : "");
    cr_expect_eq(exists(STREAM), 1, "the stream of P = 1 is not " STREAM);
    cr_expect_eq(exists(STREAM ":partitions"), 0, "P = 1 wrote a record");
    cr_expect_eq(exists("{" STREAM ":0}"), 0, "P = 1 used a tagged name");
    free(out);
    free(err);
}

/* ---- publishing -------------------------------------------------------- */

#define P 4

static char *part_name(unsigned p)
{
    char *s = NULL;
    cr_assert_geq(asprintf(&s, "{" STREAM ":%u}", p), 0);
    return s;
}

/*
 * Every entry of every partition stream is in the partition its key
 * hashes to, and the events of each key come in increasing data.seq.
 * Returns how many entries the partitions hold; counts per partition in
 * per[] when not NULL.
 */
static size_t check_partitions(size_t per[P])
{
    size_t total = 0;
    for (unsigned p = 0; p < P; p++) {
        char *name = part_name(p);
        redisReply *r = redisCommand(rc, "XRANGE %s - +", name);
        cr_assert(r && r->type == REDIS_REPLY_ARRAY);
        json_t *last = json_object(); /* key -> last seq seen */
        for (size_t i = 0; i < r->elements; i++) {
            redisReply *fv = r->element[i]->element[1];
            cr_assert_geq(fv->elements, 2);
            json_t *ev = json_loads(fv->element[1]->str, 0, NULL);
            cr_assert_not_null(ev, "entry %zu of %s is not JSON", i, name);
            cr_expect_eq(evbus_event_partition(ev, P), (int)p,
                         "event %s is in %s, its key hashes to partition %d",
                         fv->element[1]->str, name, evbus_event_partition(ev, P));
            size_t klen;
            const char *key = evbus_partition_key(ev, &klen, NULL);
            json_t *seq = json_object_get(json_object_get(ev, "data"), "seq");
            if (key && json_is_integer(seq)) {
                json_t *prev = json_object_get(last, key);
                cr_expect(!prev || json_integer_value(prev) < json_integer_value(seq),
                          "key %s: seq %lld after %lld in %s", key,
                          (long long)json_integer_value(seq),
                          (long long)json_integer_value(prev), name);
                json_object_set_new(last, key, json_integer(json_integer_value(seq)));
            }
            json_decref(ev);
        }
        if (per)
            per[p] = r->elements;
        total += r->elements;
        json_decref(last);
        freeReplyObject(r);
        free(name);
    }
    return total;
}

/* NDJSON of n events i = base.. over `keys` keys (partitionkey
 * "k<i % keys>"), data {"seq": i, "fail": fail}; every fifth event has no
 * partitionkey (its tenant "t<i % keys>" is the key then). */
static char *ndjson_from(int base, int n, int keys, int fail)
{
    size_t cap = (size_t)n * 200 + 1, len = 0;
    char *s = malloc(cap);
    for (int i = base; i < base + n; i++) {
        if (i % 5 == 4)
            len += (size_t)snprintf(s + len, cap - len,
                                    "{\"type\":\"test.pt.step\",\"tenantid\":\"t%d\","
                                    "\"data\":{\"seq\":%d,\"fail\":%d}}\n",
                                    i % keys, i, fail);
        else
            len += (size_t)snprintf(s + len, cap - len,
                                    "{\"type\":\"test.pt.step\",\"tenantid\":\"acme\","
                                    "\"partitionkey\":\"k%d\",\"data\":{\"seq\":%d,\"fail\":%d}}\n",
                                    i % keys, i, fail);
    }
    return s;
}

static char *ndjson(int n, int keys, int fail) { return ndjson_from(0, n, keys, fail); }

/* evbusctl -c conf ARGS... with stdin `input`; exit status, output kept. */
static int run_ctl(const char *input, char **out, char **err, const char *a1, const char *a2,
                   const char *a3, const char *a4)
{
    char *ctl = harness_build_path("host/ctl/evbusctl");
    char *argv[] = {ctl, "-c", conf_dir, (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL};
    int st = harness_run(argv, NULL, input, out, err, 60000);
    free(ctl);
    return st;
}

Test(partitions, evbusctl_publish_sends_each_event_to_its_partition_keeping_key_order)
{
    write_config(P);
    char *in = ndjson(400, 37, 0);
    char *out = NULL, *err = NULL;
    int st = run_ctl(in, &out, &err, "publish", NULL, NULL, NULL);
    cr_assert_eq(st, 0, "evbusctl publish exited %d: %s", st, err ? err : "");
    free(out);
    free(err);
    free(in);
    in = ndjson_from(1000, 400, 37, 0);
    st = run_ctl(in, &out, &err, "publish", "--parallel", "3", NULL);
    cr_assert_eq(st, 0, "evbusctl publish --parallel exited %d: %s", st, err ? err : "");
    free(out);
    free(err);
    free(in);
    size_t per[P];
    cr_expect_eq(check_partitions(per), 800);
    for (unsigned p = 0; p < P; p++)
        cr_expect_gt(per[p], 40, "partition %u holds only %zu of 800 events", p, per[p]);
    cr_expect_eq(exists(STREAM), 0, "an event went to the unpartitioned stream");
    redisReply *r = redisCommand(rc, "GET " STREAM ":partitions");
    cr_expect(r && r->type == REDIS_REPLY_STRING && !strcmp(r->str, "4"),
              "the first publisher did not record the count");
    freeReplyObject(r);
}

Test(partitions, libevbus_publishes_to_each_events_partition)
{
    char err[256];
    evbus_client_t *c = evbus_client_new(redis.url, STREAM, err, sizeof err);
    cr_assert_not_null(c);
    cr_assert_eq(evbus_client_set_partitions(c, P), 0);
    cr_expect_eq(evbus_client_set_partitions(c, 0), EVBUS_CLIENT_EINVAL);
    cr_expect_eq(evbus_client_set_partitions(c, EVBUS_PARTITIONS_MAX + 1), EVBUS_CLIENT_EINVAL);
    cr_assert_eq(evbus_client_set_partitions(c, P), 0);
    /* one at a time, a JSON text, a batch and a pipeline: every path */
    for (int i = 0; i < 60; i++) {
        json_t *ev = json_pack("{s:s, s:s, s:s, s:{s:i}}", "type", "test.pt.one", "tenantid",
                               "acme", "partitionkey", i % 3 ? "alpha" : "beta", "data", "seq", i);
        if (i % 4 == 0) /* no partitionkey: the tenant is the key */
            json_object_del(ev, "partitionkey");
        cr_assert_eq(evbus_publish(c, ev, NULL, 0, err, sizeof err), 0, "%s", err);
        json_decref(ev);
    }
    char text[256];
    for (int i = 60; i < 70; i++) {
        snprintf(text, sizeof text,
                 "{\"specversion\":\"1.0\",\"id\":\"raw-%d\",\"source\":\"t\",\"type\":\"test.pt."
                 "raw\",\"tenantid\":\"acme\",\"time\":\"2026-12-07T00:00:00Z\",\"data\":{}}",
                 i);
        cr_assert_eq(evbus_publish_raw(c, text, strlen(text), NULL, NULL, 0, err, sizeof err), 0,
                     "%s", err);
    }
    json_t *evs[40];
    for (int i = 0; i < 40; i++)
        evs[i] = json_pack("{s:s, s:s, s:s+, s:{s:i}}", "type", "test.pt.batch", "tenantid",
                           "acme", "partitionkey", "b", i % 7 ? "x" : "y", "data", "seq", 100 + i);
    char ids[40][EVBUS_STREAM_ID_LEN];
    int rcs[40];
    cr_assert_eq(evbus_publish_batch(c, evs, 40, ids, rcs, err, sizeof err), 40, "%s", err);
    for (int i = 0; i < 40; i++)
        json_decref(evs[i]);
    evbus_client_free(c);
    size_t per[P];
    cr_expect_eq(check_partitions(per), 110);
    cr_expect_eq(exists(STREAM), 0, "an event went to the unpartitioned stream");
}

Test(partitions, a_publisher_whose_count_differs_from_the_record_writes_nothing)
{
    record("4");
    char err[512];
    evbus_client_t *c = evbus_client_new(redis.url, STREAM, err, sizeof err);
    cr_assert_not_null(c);
    json_t *ev = json_pack("{s:s, s:s, s:{}}", "type", "test.pt.one", "tenantid", "acme", "data");
    /* the default, one partition */
    int prc = evbus_publish(c, ev, NULL, 0, err, sizeof err);
    cr_expect_eq(prc, EVBUS_CLIENT_EREDIS);
    cr_expect(strstr(err, "publishes with 1 partition, but Redis records 4"), "%s", err);
    cr_assert_eq(evbus_client_set_partitions(c, 8), 0);
    prc = evbus_publish(c, ev, NULL, 0, err, sizeof err);
    cr_expect_eq(prc, EVBUS_CLIENT_EREDIS);
    cr_expect(strstr(err, "publishes with 8 partitions"), "%s", err);
    json_decref(ev);
    evbus_client_free(c);
    cr_expect_eq(harness_redis_int(rc, "DBSIZE"), 1, "something was written besides the record");

    /* evbusctl with another count than the record: refused too */
    write_config(2);
    char *in = ndjson(3, 3, 0);
    char *out = NULL, *cerr = NULL;
    int st = run_ctl(in, &out, &cerr, "publish", NULL, NULL, NULL);
    cr_expect_neq(st, 0, "evbusctl published with 2 partitions into a stream of 4");
    cr_expect(cerr && strstr(cerr, "Redis records 4 partitions"), "%s", cerr ? cerr : "");
    cr_expect_eq(harness_redis_int(rc, "DBSIZE"), 1, "something was written besides the record");
    free(in);
    free(out);
    free(cerr);
}
