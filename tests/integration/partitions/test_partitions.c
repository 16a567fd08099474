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
#include <time.h>
#include <unistd.h>

#include "client/evbus_client.h"
#include "client/partition.h"
#include "harness.h"
#include "harness_pg.h"

#define STREAM "pt:events"

static harness_redis_t redis;
static char *dir;
static char rec_file[512], conf_dir[512], log_path[512];
static harness_proc_t host;
static redisContext *rc;
static int admin_port;
static const char *extra_yaml = ""; /* appended to the configuration */
static const char *rec_options = ""; /* more options of rec's subscription */

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
    char hash[72];
    harness_token_hash(HARNESS_ADMIN_TOKEN, hash);
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
                           "admin: { listen: \"127.0.0.1:%d\", tokens: [ { name: adm, hash: "
                           "\"%s\", roles: [admin, publisher], tenant: \"*\" } ] }\n"
                           "plugins:\n"
                           "  - name: rec\n"
                           "    plugin: %s\n"
                           "    config: { out: %s }\n"
                           "    subscriptions:\n"
                           "      - { pattern: \"test.**\"%s }\n"
                           "%s",
                           redis.url, parts, state, schemas, admin_port, hash, keyed, rec_file,
                           rec_options, extra_yaml),
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
    admin_port = harness_free_port();
    extra_yaml = "";
    rec_options = "";
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
 * hashes to, and, with key_order, the events of each key come in
 * increasing data.seq (not after retries: a retry is a later entry).
 * Returns how many entries the partitions hold; counts per partition in
 * per[] when not NULL.
 */
static size_t scan_partitions(size_t per[P], bool key_order)
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
            if (key_order && key && json_is_integer(seq)) {
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

static size_t check_partitions(size_t per[P]) { return scan_partitions(per, true); }

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

/* ---- consuming --------------------------------------------------------- */

typedef struct call {
    char key[64];
    int seq, attempt;
    char result[8];
} call_t;

/* keyed.so's lines: key, seq, attempt, start, end, result. */
static size_t read_calls(call_t **out)
{
    char *text = harness_read_file(rec_file);
    size_t n = 0, cap = 0;
    *out = NULL;
    char *save = NULL;
    for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            *out = realloc(*out, cap * sizeof **out);
        }
        call_t *c = &(*out)[n];
        long long a, b;
        if (sscanf(line, "%63s %d %d %lld %lld %7s", c->key, &c->seq, &c->attempt, &a, &b,
                   c->result) == 6)
            n++;
    }
    free(text);
    return n;
}

/* NDJSON of n events: seq i, key "k<i % 29>", failing once when i % 3 ==
 * 0, poison (reject) when i % 7 == 0. */
static char *ndjson_mixed(int n)
{
    size_t cap = (size_t)n * 200 + 1, len = 0;
    char *s = malloc(cap);
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len,
                                "{\"type\":\"test.pt.mixed\",\"tenantid\":\"acme\","
                                "\"partitionkey\":\"k%d\",\"data\":{\"seq\":%d,\"fail\":%d,"
                                "\"reject\":%s}}\n",
                                i % 29, i, i % 3 == 0 ? 1 : 0, i % 7 == 0 ? "true" : "false");
    return s;
}

static void publish_ndjson(char *in)
{
    char *out = NULL, *err = NULL;
    int st = run_ctl(in, &out, &err, "publish", NULL, NULL, NULL);
    cr_assert_eq(st, 0, "evbusctl publish exited %d: %s", st, err ? err : "");
    free(out);
    free(err);
    free(in);
}

/* evbusd until idle (--exit-idle): it handles, retries and dead-letters
 * everything, then exits 0. */
static void drain(void)
{
    char *out = NULL, *err = NULL;
    int st = run_evbusd("--exit-idle=1500", &out, &err);
    cr_assert_eq(st, 0, "evbusd exited %d: %s", st, err ? err : "");
    free(out);
    free(err);
}


Test(partitions, every_event_of_every_partition_is_handled_once, .timeout = 180)
{
    write_config(P);
    publish_ndjson(ndjson(600, 41, 0));
    size_t per[P];
    cr_assert_eq(check_partitions(per), 600);
    drain();
    call_t *calls;
    size_t n = read_calls(&calls);
    cr_expect_eq(n, 600, "%zu calls for 600 events", n);
    unsigned char *seen = calloc(600, 1);
    for (size_t i = 0; i < n; i++) {
        cr_assert(calls[i].seq >= 0 && calls[i].seq < 600);
        cr_expect_str_eq(calls[i].result, "ok");
        cr_expect_eq(seen[calls[i].seq]++, 0, "event %d handled twice", calls[i].seq);
    }
    free(seen);
    free(calls);
    for (unsigned p = 0; p < P; p++) {
        char *name = part_name(p);
        redisReply *r = redisCommand(rc, "XPENDING %s evbus", name);
        cr_assert(r && r->type == REDIS_REPLY_ARRAY, "no group on %s", name);
        cr_expect_eq(r->element[0]->integer, 0, "%s: %lld entries still pending", name,
                     r->element[0]->integer);
        freeReplyObject(r);
        free(name);
    }
    cr_expect_eq(exists(STREAM), 0, "evbusd created the unpartitioned stream");
}

Test(partitions, retries_and_dead_letters_use_their_partitions_keys, .timeout = 180)
{
    write_config(P);
    publish_ndjson(ndjson_mixed(300));
    drain();
    call_t *calls;
    size_t n = read_calls(&calls);
    int rejects = 0, retried = 0;
    for (int i = 0; i < 300; i++) {
        rejects += i % 7 == 0;
        retried += i % 3 == 0 && i % 7 != 0;
    }
    /* every event ends once: ok (after one retry when it fails once) or
     * rejected */
    int ok = 0, rej = 0, retry_calls = 0;
    for (size_t i = 0; i < n; i++) {
        ok += !strcmp(calls[i].result, "ok");
        rej += !strcmp(calls[i].result, "reject");
        retry_calls += !strcmp(calls[i].result, "retry");
        if (!strcmp(calls[i].result, "ok") && calls[i].seq % 3 == 0)
            cr_expect_eq(calls[i].attempt, 2, "event %d succeeded at attempt %d", calls[i].seq,
                         calls[i].attempt);
    }
    cr_expect_eq(ok, 300 - rejects);
    cr_expect_eq(rej, rejects);
    cr_expect_eq(retry_calls, retried);
    free(calls);
    /* each dead letter and each retried entry is in its own partition */
    long long dlq = 0, again = 0;
    for (unsigned p = 0; p < P; p++) {
        char *name = part_name(p), dlq_name[128];
        snprintf(dlq_name, sizeof dlq_name, "%s:dlq", name);
        redisReply *r = redisCommand(rc, "XRANGE %s - +", dlq_name);
        cr_assert(r && r->type == REDIS_REPLY_ARRAY);
        for (size_t i = 0; i < r->elements; i++) {
            redisReply *fv = r->element[i]->element[1];
            const char *event = NULL, *stream = NULL;
            for (size_t k = 0; k + 1 < fv->elements; k += 2) {
                if (!strcmp(fv->element[k]->str, "event"))
                    event = fv->element[k + 1]->str;
                else if (!strcmp(fv->element[k]->str, "stream"))
                    stream = fv->element[k + 1]->str;
            }
            json_t *ev = event ? json_loads(event, 0, NULL) : NULL;
            cr_assert_not_null(ev);
            cr_expect_eq(evbus_event_partition(ev, P), (int)p, "a dead letter of partition %d "
                         "is in %s", evbus_event_partition(ev, P), dlq_name);
            cr_expect(stream && !strcmp(stream, name), "dead letter names stream %s, not %s",
                      stream ? stream : "(none)", name);
            json_decref(ev);
        }
        dlq += (long long)r->elements;
        freeReplyObject(r);
        /* a retry comes back into the stream as a new entry with a
         * `retry` field: in the partition it was read from */
        r = redisCommand(rc, "XRANGE %s - +", name);
        cr_assert(r && r->type == REDIS_REPLY_ARRAY);
        for (size_t i = 0; i < r->elements; i++) {
            redisReply *fv = r->element[i]->element[1];
            bool is_retry = false;
            const char *event = NULL;
            for (size_t k = 0; k + 1 < fv->elements; k += 2) {
                if (!strcmp(fv->element[k]->str, "retry"))
                    is_retry = true;
                else if (!strcmp(fv->element[k]->str, "event"))
                    event = fv->element[k + 1]->str;
            }
            if (!is_retry)
                continue;
            again++;
            json_t *ev = json_loads(event, 0, NULL);
            cr_expect_eq(evbus_event_partition(ev, P), (int)p);
            json_decref(ev);
        }
        freeReplyObject(r);
        free(name);
    }
    cr_expect_eq(dlq, rejects, "%lld dead letters for %d poison events", dlq, rejects);
    cr_expect_eq(again, retried, "%lld retried entries for %d events failing once", again,
                 retried);
    cr_expect_eq(exists(STREAM ":dlq"), 0, "the unpartitioned DLQ was written");
    cr_expect_eq(exists(STREAM ":retry"), 0, "the unpartitioned retry schedule was written");
}

/* The log says evbusd's admin endpoint listens. */
static bool admin_up(void *ud)
{
    (void)ud;
    int st = -1;
    char *b = harness_http_get(admin_port, "/health", &st);
    free(b);
    return st == 200 || st == 503;
}

static bool all_recorded(void *ud)
{
    return harness_count_lines(rec_file) >= *(size_t *)ud;
}

Test(partitions, the_operator_api_publishes_to_the_events_partition_and_health_shows_each)
{
    write_config(P);
    char *evbusd = harness_build_path("host/daemon/evbusd");
    char *argv[] = {evbusd, "-c", conf_dir, NULL};
    cr_assert_eq(harness_spawn(&host, argv, NULL, log_path), 0);
    free(evbusd);
    cr_assert(harness_wait_until(admin_up, NULL, 20000), "evbusd's admin endpoint did not come up");
    const char *keys[] = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta"};
    for (int i = 0; i < 6; i++) {
        char body[256];
        snprintf(body, sizeof body,
                 "{\"type\":\"test.pt.api\",\"tenantid\":\"acme\",\"partitionkey\":\"%s\","
                 "\"data\":{\"seq\":%d}}",
                 keys[i], 5000 + i);
        int st = -1;
        char *reply = harness_http(admin_port, "POST", "/api/v1/events", HARNESS_ADMIN_TOKEN,
                                   body, NULL, &st, NULL);
        cr_expect_eq(st, 201, "POST /api/v1/events: %d %s", st, reply ? reply : "");
        free(reply);
    }
    size_t want = 6;
    cr_expect(harness_wait_until(all_recorded, &want, 20000), "the posted events were not handled");
    size_t per[P];
    cr_expect_eq(check_partitions(per), 6);
    cr_expect_eq(exists(STREAM), 0);
    /* /health: one object per partition */
    int st = -1;
    char *body = harness_http_get(admin_port, "/health", &st);
    json_t *h = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    json_t *parts = json_object_get(h, "partitions");
    cr_assert(json_is_array(parts), "no partitions in /health");
    cr_expect_eq(json_array_size(parts), P);
    for (unsigned p = 0; p < P && p < json_array_size(parts); p++) {
        char *name = part_name(p);
        json_t *o = json_array_get(parts, p);
        cr_expect_str_eq(json_string_value(json_object_get(o, "stream")), name);
        free(name);
    }
    json_decref(h);
    /* evbusctl status lists them */
    char *out = NULL, *err = NULL;
    int cst = run_ctl(NULL, &out, &err, "status", NULL, NULL, NULL);
    cr_expect(cst == 0 || cst == 1, "evbusctl status exited %d: %s", cst, err ? err : "");
    cr_expect(out && strstr(out, "partitions:   4") && strstr(out, "{" STREAM ":3}"), "%s",
              out ? out : "");
    free(out);
    free(err);

    /* a pause is written to every partition's copy, a resume clears them */
    st = -1;
    char *reply = harness_http(admin_port, "POST", "/api/v1/handlers/rec/pause",
                               HARNESS_ADMIN_TOKEN, "{\"reason\":\"t\"}", NULL, &st, NULL);
    cr_expect_eq(st, 200, "pause: %d %s", st, reply ? reply : "");
    free(reply);
    for (unsigned p = 0; p < P; p++) {
        char *name = part_name(p);
        cr_expect_eq(harness_redis_int(rc, "HEXISTS %s:paused rec", name), 1,
                     "the pause is not in %s:paused", name);
        free(name);
    }
    reply = harness_http(admin_port, "POST", "/api/v1/handlers/rec/resume", HARNESS_ADMIN_TOKEN,
                         "{}", NULL, &st, NULL);
    cr_expect_eq(st, 200, "resume: %d %s", st, reply ? reply : "");
    free(reply);
    for (unsigned p = 0; p < P; p++) {
        char *name = part_name(p);
        cr_expect_eq(harness_redis_int(rc, "HEXISTS %s:paused rec", name), 0,
                     "the pause is still in %s:paused", name);
        free(name);
    }
    cr_expect_eq(exists(STREAM ":paused"), 0, "the unpartitioned pause hash was written");
    /* evbusctl handlers does the same, and lists what partition 0's copy says */
    cst = run_ctl(NULL, &out, &err, "handlers", "pause", "rec", NULL);
    cr_expect_eq(cst, 0, "evbusctl handlers pause exited %d: %s", cst, err ? err : "");
    free(out);
    free(err);
    for (unsigned p = 0; p < P; p++) {
        char *name = part_name(p);
        cr_expect_eq(harness_redis_int(rc, "HEXISTS %s:paused rec", name), 1,
                     "evbusctl's pause is not in %s:paused", name);
        free(name);
    }
    cst = run_ctl(NULL, &out, &err, "handlers", "list", "--json", NULL);
    cr_expect_eq(cst, 0, "evbusctl handlers list exited %d: %s", cst, err ? err : "");
    json_t *hl = out ? json_loads(out, 0, NULL) : NULL;
    json_t *first = json_array_get(json_object_get(hl, "instances"), 0);
    cr_expect(json_is_object(json_object_get(first, "paused")), "list: %s", out ? out : "");
    json_decref(hl);
    free(out);
    free(err);
    cst = run_ctl(NULL, &out, &err, "handlers", "resume", "rec", NULL);
    cr_expect_eq(cst, 0, "evbusctl handlers resume exited %d: %s", cst, err ? err : "");
    free(out);
    free(err);
    for (unsigned p = 0; p < P; p++) {
        char *name = part_name(p);
        cr_expect_eq(harness_redis_int(rc, "HEXISTS %s:paused rec", name), 0,
                     "evbusctl's resume left the pause in %s:paused", name);
        free(name);
    }
    cr_expect_eq(harness_kill(&host, SIGTERM, 15000), 0);
    host.pid = 0;
}

Test(partitions, settings_without_a_partitioned_form_are_refused)
{
    static const struct {
        const char *yaml, *says;
    } cases[] = {
        {"dlq: { stream: \"my:dlq\" }\n", "dlq.stream ("},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        extra_yaml = cases[i].yaml;
        write_config(P);
        char *out = NULL, *err = NULL;
        int st = run_evbusd("--exit-idle=300", &out, &err);
        cr_expect_eq(st, 2, "%s: evbusd exited %d: %s", cases[i].yaml, st, err ? err : "");
        cr_expect(err && strstr(err, cases[i].says) && strstr(err, "10-pt.yaml:3:13)"), "%s",
                  err ? err : "");
        free(out);
        free(err);
    }
    cr_expect_eq(harness_redis_int(rc, "DBSIZE"), 0, "a refused evbusd wrote to Redis");
}

Test(partitions, one_partition_keeps_todays_keys_and_writes_no_record, .timeout = 120)
{
    write_config(0);
    publish_ndjson(ndjson_mixed(60));
    drain();
    cr_expect_eq(exists(STREAM), 1, "the stream of P = 1 is not " STREAM);
    cr_expect_eq(exists(STREAM ":partitions"), 0, "P = 1 wrote a record");
    int rejects = 0;
    for (int i = 0; i < 60; i++)
        rejects += i % 7 == 0;
    cr_expect_eq(harness_redis_int(rc, "XLEN " STREAM ":dlq"), rejects,
                 "the dead letters of P = 1 are not in " STREAM ":dlq");
    redisReply *r = redisCommand(rc, "KEYS {*");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    cr_expect_eq(r->elements, 0, "P = 1 wrote a tagged key (%s)",
                 r->elements ? r->element[0]->str : "");
    freeReplyObject(r);
}

/* An id of the merged list: "<ms>-<seq>:<partition>" in numbers. */
typedef struct mid {
    unsigned long long ms, seq;
    unsigned p;
} mid_t;

static mid_t parse_mid(const char *s)
{
    mid_t m = {0};
    cr_assert_eq(sscanf(s, "%llu-%llu:%u", &m.ms, &m.seq, &m.p), 3, "id %s", s);
    return m;
}

/* a comes after b in the merged order (newest first, then partition
 * descending) */
static bool after(mid_t a, mid_t b)
{
    if (a.ms != b.ms)
        return a.ms < b.ms;
    if (a.seq != b.seq)
        return a.seq < b.seq;
    return a.p < b.p;
}

/* Checks a walk's ids: each once, in order, and as many as the partitions'
 * DLQs hold, each in the partition it names. */
static void check_walk(json_t *ids, long long want, const char *who)
{
    cr_expect_eq((long long)json_array_size(ids), want, "%s listed %zu of %lld dead letters", who,
                 json_array_size(ids), want);
    for (size_t i = 0; i < json_array_size(ids); i++) {
        mid_t m = parse_mid(json_string_value(json_array_get(ids, i)));
        if (i > 0)
            cr_expect(after(m, parse_mid(json_string_value(json_array_get(ids, i - 1)))),
                      "%s: %s listed after %s", who, json_string_value(json_array_get(ids, i)),
                      json_string_value(json_array_get(ids, i - 1)));
        char *name = part_name(m.p), q[160];
        snprintf(q, sizeof q, "%llu-%llu", m.ms, m.seq);
        redisReply *r = redisCommand(rc, "XRANGE %s:dlq %s %s", name, q, q);
        cr_expect(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1,
                  "%s: %s is not in %s:dlq", who, json_string_value(json_array_get(ids, i)), name);
        if (r)
            freeReplyObject(r);
        free(name);
    }
}

/* The entry id of partition p's dead-letter stream, or 0 when absent. */
static long long dlq_has(mid_t m)
{
    char *name = part_name(m.p), q[80];
    snprintf(q, sizeof q, "%llu-%llu", m.ms, m.seq);
    redisReply *r = redisCommand(rc, "XRANGE %s:dlq %s %s", name, q, q);
    long long n = r && r->type == REDIS_REPLY_ARRAY ? (long long)r->elements : -1;
    if (r)
        freeReplyObject(r);
    free(name);
    return n;
}

/* show, retry and delete of one dead letter by its ID:P, through the API
 * and evbusctl, with evbusd running. */
static void check_one_dead_letter(const char *id1, const char *id2)
{
    cr_assert(id1 && id2);
    mid_t m1 = parse_mid(id1), m2 = parse_mid(id2);
    char path[200];
    snprintf(path, sizeof path, "/api/v1/dlq/%s", id1);
    int st = -1;
    char *body = harness_http(admin_port, "GET", path, HARNESS_ADMIN_TOKEN, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 200, "GET %s: %d %s", path, st, body ? body : "");
    json_t *doc = body ? json_loads(body, 0, NULL) : NULL;
    cr_expect_str_eq(json_string_value(json_object_get(doc, "dlq_id")), id1);
    json_decref(doc);
    free(body);
    char *out = NULL, *err = NULL;
    int cst = run_ctl(NULL, &out, &err, "dlq", "show", id2, "--json");
    cr_expect_eq(cst, 0, "evbusctl dlq show %s exited %d: %s", id2, cst, err ? err : "");
    doc = out ? json_loads(out, 0, NULL) : NULL;
    cr_expect_eq(evbus_event_partition(json_object_get(doc, "event"), P), (int)m2.p,
                 "dlq show %s: %s", id2, out ? out : "");
    json_decref(doc);
    free(out);
    free(err);
    /* a dead letter without its partition is not an id here */
    body = harness_http(admin_port, "GET", "/api/v1/dlq/1-0", HARNESS_ADMIN_TOKEN, NULL, NULL, &st,
                        NULL);
    cr_expect_eq(st, 400, "GET /api/v1/dlq/1-0: %d %s", st, body ? body : "");
    free(body);
    cst = run_ctl(NULL, &out, &err, "dlq", "show", "1-0", NULL);
    cr_expect_eq(cst, 2, "evbusctl dlq show 1-0 exited %d", cst);
    free(out);
    free(err);

    /* retry through the API: back into its partition's stream */
    snprintf(path, sizeof path, "/api/v1/dlq/%s/retry", id1);
    body = harness_http(admin_port, "POST", path, HARNESS_ADMIN_TOKEN, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 200, "POST %s: %d %s", path, st, body ? body : "");
    doc = body ? json_loads(body, 0, NULL) : NULL;
    const char *sid = json_string_value(json_object_get(doc, "stream_id"));
    cr_expect_not_null(sid);
    if (sid) {
        char *name = part_name(m1.p);
        redisReply *r = redisCommand(rc, "XRANGE %s %s %s", name, sid, sid);
        cr_expect(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1,
                  "the retried event is not in %s", name);
        if (r)
            freeReplyObject(r);
        free(name);
    }
    json_decref(doc);
    free(body);
    cr_expect_eq(dlq_has(m1), 0, "%s is still a dead letter after its retry", id1);

    /* delete through evbusctl */
    cst = run_ctl(NULL, &out, &err, "dlq", "delete", id2, NULL);
    cr_expect_eq(cst, 0, "evbusctl dlq delete %s exited %d: %s", id2, cst, err ? err : "");
    free(out);
    free(err);
    cr_expect_eq(dlq_has(m2), 0, "%s is still a dead letter after its delete", id2);
}

Test(partitions, the_dead_letter_list_merges_partitions_newest_first, .timeout = 180)
{
    write_config(P);
    publish_ndjson(ndjson_mixed(280)); /* 40 poison events */
    drain();
    long long want = 0;
    for (unsigned p = 0; p < P; p++) {
        char *name = part_name(p);
        long long n = harness_redis_int(rc, "XLEN %s:dlq", name);
        cr_expect_gt(n, 0, "no dead letter in %s:dlq", name);
        want += n;
        free(name);
    }
    cr_assert_eq(want, 40);

    /* evbusctl: pages of 7 through --cursor */
    json_t *ids = json_array();
    char cursor[128] = "";
    for (int page = 0; page < 20; page++) {
        char *out = NULL, *err = NULL;
        char *ctl = harness_build_path("host/ctl/evbusctl");
        char *argv[] = {ctl, "-c", conf_dir, "dlq", "list", "--json", "--limit", "7",
                        cursor[0] ? "--cursor" : NULL, cursor, NULL};
        int st = harness_run(argv, NULL, NULL, &out, &err, 30000);
        free(ctl);
        cr_assert_eq(st, 0, "evbusctl dlq list exited %d: %s", st, err ? err : "");
        json_t *doc = json_loads(out, 0, NULL);
        cr_assert_not_null(doc, "%s", out);
        cr_expect_eq(json_integer_value(json_object_get(doc, "count")), want);
        json_t *items = json_object_get(doc, "items"), *it;
        size_t i;
        json_array_foreach(items, i, it)
            json_array_append(ids, json_object_get(it, "dlq_id"));
        const char *next = json_string_value(json_object_get(doc, "next_cursor"));
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
        json_decref(doc);
        free(out);
        free(err);
        if (!cursor[0])
            break;
    }
    check_walk(ids, want, "evbusctl dlq list");
    json_decref(ids);
    /* the summary counts every partition */
    char *sout = NULL, *serr = NULL;
    int sst = run_ctl(NULL, &sout, &serr, "dlq", "summary", "--json", NULL);
    cr_expect_eq(sst, 0, "evbusctl dlq summary exited %d: %s", sst, serr ? serr : "");
    json_t *sum = sout ? json_loads(sout, 0, NULL) : NULL;
    cr_expect_eq(json_integer_value(json_object_get(sum, "total")), want, "%s",
                 sout ? sout : "");
    cr_expect_eq(json_integer_value(json_object_get(json_object_get(sum, "by_reason"), "reject")),
                 want, "%s", sout ? sout : "");
    json_decref(sum);
    free(sout);
    free(serr);

    /* the operator API: pages of 9 through next_cursor */
    char *evbusd = harness_build_path("host/daemon/evbusd");
    char *dargv[] = {evbusd, "-c", conf_dir, NULL};
    cr_assert_eq(harness_spawn(&host, dargv, NULL, log_path), 0);
    free(evbusd);
    cr_assert(harness_wait_until(admin_up, NULL, 20000), "evbusd's admin endpoint did not come up");
    ids = json_array();
    cursor[0] = '\0';
    for (int page = 0; page < 20; page++) {
        char path[400];
        snprintf(path, sizeof path, "/api/v1/dlq?limit=9%s%s", cursor[0] ? "&cursor=" : "",
                 cursor);
        int st = -1;
        char *body = harness_http(admin_port, "GET", path, HARNESS_ADMIN_TOKEN, NULL, NULL, &st,
                                  NULL);
        cr_assert_eq(st, 200, "GET %s: %d %s", path, st, body ? body : "");
        json_t *doc = json_loads(body, 0, NULL);
        free(body);
        if (page == 0)
            cr_expect_eq(json_integer_value(json_object_get(doc, "total")), want);
        json_t *items = json_object_get(doc, "items"), *it;
        size_t i;
        json_array_foreach(items, i, it) {
            json_array_append(ids, json_object_get(it, "dlq_id"));
            mid_t m = parse_mid(json_string_value(json_object_get(it, "dlq_id")));
            cr_expect_eq(json_integer_value(json_object_get(it, "partition")), m.p);
        }
        const char *next = json_string_value(json_object_get(doc, "next_cursor"));
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
        json_decref(doc);
        if (!cursor[0])
            break;
    }
    check_walk(ids, want, "GET /api/v1/dlq");
    check_one_dead_letter(json_string_value(json_array_get(ids, 0)),
                          json_string_value(json_array_get(ids, 1)));
    json_decref(ids);
    int st = -1;
    char *body = harness_http(admin_port, "GET", "/api/v1/dlq?cursor=nonsense",
                              HARNESS_ADMIN_TOKEN, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 400, "a bad cursor: %d %s", st, body ? body : "");
    free(body);
    cr_expect_eq(harness_kill(&host, SIGTERM, 15000), 0);
    host.pid = 0;
}

static bool log_says_refused(void *ud)
{
    (void)ud;
    char *log = harness_read_file(log_path);
    bool yes = log && strstr(log, "Redis records 4 partitions");
    free(log);
    return yes;
}

/* Redis down when evbusd starts: it cannot compare then, so its reader
 * compares on connecting and evbusd exits 2 before reading anything. */
Test(partitions, the_reader_refuses_a_count_that_differs_once_redis_is_back)
{
    /* a server that keeps the record across its restart */
    redisFree(rc);
    harness_redis_stop(&redis);
    cr_assert_eq(harness_redis_start(&redis, true), 0);
    rc = harness_redis_connect(&redis);
    cr_assert_not_null(rc);
    record("4");
    redisFree(rc);
    rc = NULL;
    harness_redis_stop(&redis);
    write_config(1);
    char *evbusd = harness_build_path("host/daemon/evbusd");
    char *argv[] = {evbusd, "-c", conf_dir, NULL};
    cr_assert_eq(harness_spawn(&host, argv, NULL, log_path), 0);
    free(evbusd);
    usleep(500 * 1000);
    cr_assert_eq(harness_wait(&host, 0), -1, "evbusd exited while Redis was down");
    cr_assert_eq(harness_redis_start_again(&redis), 0);
    int st = harness_wait(&host, 20000);
    cr_expect_eq(st, 2, "evbusd exited %d once Redis was back", st);
    host.pid = 0;
    cr_expect(log_says_refused(NULL), "the log does not say why");
    rc = harness_redis_connect(&redis);
    cr_assert_not_null(rc);
    cr_expect_eq(exists(STREAM), 0, "the refused evbusd created the stream");
}

Test(partitions, pending_entries_are_listed_and_quarantined_per_partition)
{
    write_config(P);
    publish_ndjson(ndjson(40, 13, 0));
    /* a consumer that read everything and died */
    for (unsigned p = 0; p < P; p++) {
        char *name = part_name(p);
        redisReply *r = redisCommand(rc, "XGROUP CREATE %s evbus 0", name);
        freeReplyObject(r);
        r = redisCommand(rc, "XREADGROUP GROUP evbus ghost COUNT 1000 STREAMS %s >", name);
        cr_assert(r && r->type == REDIS_REPLY_ARRAY);
        freeReplyObject(r);
        free(name);
    }
    char *out = NULL, *err = NULL;
    int st = run_ctl(NULL, &out, &err, "pending", "list", "--json", NULL);
    cr_assert_eq(st, 0, "evbusctl pending list exited %d: %s", st, err ? err : "");
    json_t *list = json_loads(out, 0, NULL);
    cr_assert(json_is_array(list), "%s", out);
    cr_expect_eq(json_array_size(list), 40);
    const char *first = json_string_value(json_object_get(json_array_get(list, 0), "id"));
    cr_assert_not_null(first);
    mid_t m = parse_mid(first);
    cr_expect_eq(json_integer_value(json_object_get(json_array_get(list, 0), "partition")), m.p);
    char id[80];
    snprintf(id, sizeof id, "%s", first);
    json_decref(list);
    free(out);
    free(err);
    st = run_ctl(NULL, &out, &err, "pending", "quarantine", id, NULL);
    cr_expect_eq(st, 0, "evbusctl pending quarantine %s exited %d: %s", id, st,
                 err ? err : "");
    free(out);
    free(err);
    char *name = part_name(m.p);
    cr_expect_eq(harness_redis_int(rc, "XLEN %s:dlq", name), 1,
                 "the quarantined entry is not in %s:dlq", name);
    redisReply *r = redisCommand(rc, "XPENDING %s evbus", name);
    long long left = r && r->type == REDIS_REPLY_ARRAY ? r->element[0]->integer : -1;
    freeReplyObject(r);
    r = redisCommand(rc, "XLEN %s", name);
    cr_expect_eq(left, r->integer - 1, "%s: %lld pending of %lld", name, left, r->integer);
    freeReplyObject(r);
    free(name);
    cr_expect_eq(exists(STREAM ":dlq"), 0, "the quarantine wrote the unpartitioned DLQ");
    st = run_ctl(NULL, &out, &err, "pending", "quarantine", "1-0", NULL);
    cr_expect_eq(st, 2, "a bare ENTRY_ID on a partitioned stream: exit %d", st);
    free(out);
    free(err);
}

/* ordering: per_key on four partitions: each key's events are handled in
 * publish order, a retrying event holding its key's later ones back (in
 * its partition's keyhold/keyq keys). */
Test(partitions, per_key_order_holds_in_every_partition, .timeout = 180)
{
    rec_options = ", ordering: per_key";
    write_config(P);
    publish_ndjson(ndjson_mixed(290));
    drain();
    call_t *calls;
    size_t n = read_calls(&calls);
    /* per key: the seq of successive calls never goes down, and no event
     * after a retrying one is called before that one succeeds */
    json_t *last = json_object();
    int ok = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *prev = json_object_get(last, calls[i].key);
        cr_expect(!prev || json_integer_value(prev) <= calls[i].seq,
                  "key %s: seq %d called after seq %lld", calls[i].key, calls[i].seq,
                  (long long)json_integer_value(prev));
        json_object_set_new(last, calls[i].key, json_integer(calls[i].seq));
        ok += strcmp(calls[i].result, "retry") != 0;
    }
    cr_expect_eq(ok, 290, "%d events ended of 290", ok);
    json_decref(last);
    free(calls);
    /* the holds lived in the partitions' keys, and are gone */
    redisReply *r = redisCommand(rc, "KEYS " STREAM ":keyhold");
    cr_expect(r && r->elements == 0, "the unpartitioned keyhold was written");
    freeReplyObject(r);
    for (unsigned p = 0; p < P; p++) {
        char *name = part_name(p);
        cr_expect_eq(harness_redis_int(rc, "HLEN %s:keyhold", name), 0,
                     "%s:keyhold still holds keys", name);
        free(name);
    }
}

/* Handlers that publish (api->publish), in evbusd and in an isolated
 * instance's runner child, send each event to its partition stream with
 * the count the stream has recorded: a publisher that kept one stream
 * would be refused (the record differs) and the delivery retried. */
Test(partitions, handlers_publish_to_the_partition_of_each_event, .timeout = 180)
{
    char *fwd = harness_build_path("plugins/testkit/forwarder.so");
    char *yaml = NULL;
    cr_assert_geq(asprintf(&yaml,
                           "  - name: fwd-in\n"
                           "    plugin: %s\n"
                           "    subscriptions: [ { pattern: \"origin.in.**\" } ]\n"
                           "  - name: fwd-iso\n"
                           "    plugin: %s\n"
                           "    isolation: process\n"
                           "    subscriptions: [ { pattern: \"origin.iso.**\" } ]\n",
                           fwd, fwd),
                  0);
    free(fwd);
    extra_yaml = yaml;
    write_config(P);
    size_t cap = 40 * 200, len = 0;
    char *in = malloc(cap);
    for (int i = 0; i < 40; i++)
        len += (size_t)snprintf(in + len, cap - len,
                                "{\"id\":\"o-%d\",\"type\":\"origin.%s.step\",\"tenantid\":"
                                "\"t%d\",\"data\":{}}\n",
                                i, i % 2 ? "iso" : "in", i % 13);
    publish_ndjson(in);
    drain();
    /* 40 origins + 40 forwarded, each where its key hashes */
    cr_expect_eq(check_partitions(NULL), 80);
    size_t forwarded = 0;
    unsigned char seen[40] = {0};
    for (unsigned p = 0; p < P; p++) {
        char *name = part_name(p);
        redisReply *r = redisCommand(rc, "XRANGE %s - +", name);
        cr_assert(r && r->type == REDIS_REPLY_ARRAY);
        for (size_t i = 0; i < r->elements; i++) {
            json_t *ev = json_loads(r->element[i]->element[1]->element[1]->str, 0, NULL);
            const char *type = json_string_value(json_object_get(ev, "type"));
            const char *from =
                json_string_value(json_object_get(json_object_get(ev, "data"), "from"));
            int k;
            if (type && !strcmp(type, "forwarded.happened") && from &&
                sscanf(from, "o-%d", &k) == 1 && k >= 0 && k < 40) {
                forwarded++;
                seen[k]++;
            }
            json_decref(ev);
        }
        freeReplyObject(r);
        free(name);
    }
    cr_expect_eq(forwarded, 40, "%zu forwarded events for 40 origins", forwarded);
    for (int k = 0; k < 40; k++)
        cr_expect_eq(seen[k], 1, "o-%d forwarded %d times", k, seen[k]);
    for (unsigned p = 0; p < P; p++) {
        char *s = NULL;
        cr_assert_geq(asprintf(&s, "{" STREAM ":%u}:dlq", p), 0);
        redisReply *r = redisCommand(rc, "XLEN %s", s);
        cr_expect(r && r->integer == 0, "%s holds %lld dead letters", s, r ? r->integer : -1);
        freeReplyObject(r);
        free(s);
    }
    free(yaml);
}

/* The dead letters of every partition, oldest first, as "ID:P" strings in
 * out (up to cap); returns how many. */
static size_t dlq_all(char out[][48], size_t cap)
{
    size_t n = 0;
    for (unsigned p = 0; p < P; p++) {
        char *name = part_name(p);
        redisReply *r = redisCommand(rc, "XRANGE %s:dlq - +", name);
        cr_assert(r && r->type == REDIS_REPLY_ARRAY);
        for (size_t i = 0; i < r->elements && n < cap; i++)
            snprintf(out[n++], 48, "%s:%u", r->element[i]->element[0]->str, p);
        freeReplyObject(r);
        free(name);
    }
    /* oldest first across partitions: by the id's ms, then its seq */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0; j--) {
            unsigned long long am, as, bm, bs;
            sscanf(out[j - 1], "%llu-%llu", &am, &as);
            sscanf(out[j], "%llu-%llu", &bm, &bs);
            if (am < bm || (am == bm && as <= bs))
                break;
            char t[48];
            memcpy(t, out[j], 48);
            memcpy(out[j], out[j - 1], 48);
            memcpy(out[j - 1], t, 48);
        }
    return n;
}

/* evbusctl -c conf ARGS (NULL-terminated) with --json: its parsed output. */
static json_t *ctl_json(char *const args[])
{
    char *argv[16];
    size_t k = 0;
    argv[k++] = harness_build_path("host/ctl/evbusctl");
    argv[k++] = "-c";
    argv[k++] = conf_dir;
    for (size_t i = 0; args[i] && k < 15; i++)
        argv[k++] = args[i];
    argv[k] = NULL;
    char *out = NULL, *err = NULL;
    int st = harness_run(argv, NULL, NULL, &out, &err, 60000);
    cr_assert_eq(st, 0, "evbusctl %s %s exited %d: %s", args[0], args[1], st, err ? err : "");
    json_t *j = json_loads(out ? out : "", 0, NULL);
    cr_assert_not_null(j, "not JSON: %s", out ? out : "");
    free(argv[0]);
    free(out);
    free(err);
    return j;
}

/* The bulk forms select in every partition: a dry run counts them all,
 * --limit takes the oldest across partitions, retry re-publishes to each
 * dead letter's partition, purge empties them all. */
Test(partitions, bulk_dead_letter_operations_take_every_partition, .timeout = 180)
{
    write_config(P);
    publish_ndjson(ndjson_mixed(280)); /* 40 poison events */
    drain();
    static char before[64][48], after[64][48];
    size_t n = dlq_all(before, 64);
    cr_assert_eq(n, 40);
    json_t *j = ctl_json((char *[]){"dlq", "delete", "--all", "--dry-run", "--json", NULL});
    cr_expect_eq(json_integer_value(json_object_get(j, "matching")), 40);
    json_decref(j);
    /* the 5 oldest across the partitions, and only them */
    j = ctl_json((char *[]){"dlq", "delete", "--all", "--limit", "5", "--yes", "--no-metadata",
                            "--json", NULL});
    cr_expect_eq(json_integer_value(json_object_get(j, "deleted")), 5);
    json_decref(j);
    size_t m = dlq_all(after, 64);
    cr_expect_eq(m, 35);
    for (size_t i = 0; i < m; i++)
        cr_expect_str_eq(after[i], before[i + 5], "kept %s, wanted the 35 newest", after[i]);
    /* retry re-publishes to each dead letter's own partition */
    size_t entries = scan_partitions(NULL, false);
    j = ctl_json((char *[]){"dlq", "retry", "--all", "--limit", "3", "--json", NULL});
    cr_expect_eq(json_integer_value(json_object_get(j, "retried")), 3);
    json_decref(j);
    cr_expect_eq(scan_partitions(NULL, false), entries + 3, "3 retried events: not 3 new entries");
    cr_expect_eq(dlq_all(after, 64), 32);
    /* purge: all of them, into the archive */
    char archive[600];
    snprintf(archive, sizeof archive, "%s/archive.jsonl", dir);
    j = ctl_json((char *[]){"dlq", "purge", "--all", "--yes", "--archive", archive,
                            "--no-metadata", "--json", NULL});
    cr_expect_eq(json_integer_value(json_object_get(j, "purged")), 32);
    json_decref(j);
    cr_expect_eq(dlq_all(after, 64), 0, "dead letters left after purge --all");
    char *text = harness_read_file(archive);
    size_t lines = 0;
    for (char *p = text; p && *p; p++)
        lines += *p == '\n';
    cr_expect_eq(lines, 32, "%zu archived lines", lines);
    free(text);
}

/* POST body to the admin API: the parsed reply, its status in *st. */
static json_t *api_json(const char *method, const char *path, const char *body, int *st)
{
    *st = -1;
    char *reply = harness_http(admin_port, method, path, HARNESS_ADMIN_TOKEN, body, NULL, st,
                               NULL);
    json_t *j = reply ? json_loads(reply, 0, NULL) : NULL;
    cr_assert_not_null(j, "%s %s: %d, not JSON: %s", method, path, *st, reply ? reply : "");
    free(reply);
    return j;
}

/* The entries a DLQ retry re-published into partition p's stream: their
 * retried_from (the dead letter's id, as "<id>:<p>") into from[], their
 * new stream ids into to[]; each event's key hashes to p. */
static size_t retried_into(unsigned p, char from[][48], char to[][48], size_t cap)
{
    char *name = part_name(p);
    redisReply *r = redisCommand(rc, "XRANGE %s - +", name);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    size_t n = 0;
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *fv = r->element[i]->element[1];
        const char *origin = NULL, *event = NULL;
        for (size_t k = 0; k + 1 < fv->elements; k += 2) {
            if (!strcmp(fv->element[k]->str, "retried_from"))
                origin = fv->element[k + 1]->str;
            else if (!strcmp(fv->element[k]->str, "event"))
                event = fv->element[k + 1]->str;
        }
        if (!origin)
            continue;
        json_t *ev = json_loads(event ? event : "", 0, NULL);
        cr_expect_eq(evbus_event_partition(ev, P), (int)p, "a re-driven event of partition %d "
                     "went into %s", evbus_event_partition(ev, P), name);
        json_decref(ev);
        cr_assert_lt(n, cap);
        snprintf(from[n], 48, "%s:%u", origin, p);
        snprintf(to[n], 48, "%s", r->element[i]->element[0]->str);
        n++;
    }
    freeReplyObject(r);
    free(name);
    return n;
}

/* POST /api/v1/dlq/redrive selects in every partition's dead-letter
 * stream, goes through them oldest first and puts each entry back into
 * its own partition's stream. */
Test(partitions, the_redrive_takes_every_partition_and_retries_each_into_its_own, .timeout = 180)
{
    write_config(P);
    publish_ndjson(ndjson_mixed(280)); /* 40 poison events */
    drain();
    static char before[64][48];
    size_t n = dlq_all(before, 64);
    cr_assert_eq(n, 40);
    char *evbusd = harness_build_path("host/daemon/evbusd");
    char *argv[] = {evbusd, "-c", conf_dir, NULL};
    cr_assert_eq(harness_spawn(&host, argv, NULL, log_path), 0);
    free(evbusd);
    cr_assert(harness_wait_until(admin_up, NULL, 20000), "evbusd's admin endpoint did not come up");
    int st;
    json_t *dry = api_json("POST", "/api/v1/dlq/redrive", "{\"filter\":{},\"dry_run\":true}",
                           &st);
    cr_assert_eq(st, 200, "dry run: %d", st);
    cr_expect_eq(json_integer_value(json_object_get(dry, "count")), 40);
    char body[600];
    snprintf(body, sizeof body, "{\"filter\":{},\"confirm\":\"%s\",\"rate\":100}",
             json_string_value(json_object_get(dry, "confirm")));
    json_decref(dry);
    json_t *job = api_json("POST", "/api/v1/dlq/redrive", body, &st);
    cr_assert_eq(st, 202, "re-drive: %d", st);
    char path[128];
    snprintf(path, sizeof path, "/api/v1/dlq/redrive/%s",
             json_string_value(json_object_get(job, "id")));
    json_decref(job);
    long long deadline = harness_now_ms() + 30000;
    for (;;) {
        job = api_json("GET", path, NULL, &st);
        cr_assert_eq(st, 200);
        if (strcmp(json_string_value(json_object_get(job, "state")), "running") != 0)
            break;
        json_decref(job);
        cr_assert_lt(harness_now_ms(), deadline, "the re-drive did not end");
        usleep(100 * 1000);
    }
    cr_expect_str_eq(json_string_value(json_object_get(job, "state")), "done");
    cr_expect_eq(json_integer_value(json_object_get(job, "total")), 40);
    cr_expect_eq(json_integer_value(json_object_get(job, "done")), 40);
    cr_expect_eq(json_integer_value(json_object_get(job, "failed")) +
                     json_integer_value(json_object_get(job, "gone")),
                 0);
    json_decref(job);
    /* every dead letter back in its own partition's stream, once */
    static char from[64][48], to[64][48], all_from[64][48], all_to[64][48];
    size_t got = 0;
    for (unsigned p = 0; p < P; p++) {
        size_t k = retried_into(p, from, to, 64);
        cr_expect_gt(k, 0, "nothing was re-driven into partition %u", p);
        for (size_t i = 0; i < k && got < 64; i++, got++) {
            memcpy(all_from[got], from[i], 48);
            memcpy(all_to[got], to[i], 48);
        }
    }
    cr_assert_eq(got, 40, "%zu entries re-driven for 40 dead letters", got);
    /* the same ids as the dead letters (before[] is oldest first), and
     * re-published oldest first: at 100/s, 10 ms apart */
    for (size_t i = 0; i < 40; i++) {
        size_t k = 0;
        while (k < got && strcmp(all_from[k], before[i]) != 0)
            k++;
        cr_assert_lt(k, got, "dead letter %s was not re-driven", before[i]);
        if (i > 0) {
            size_t prev = 0;
            while (strcmp(all_from[prev], before[i - 1]) != 0)
                prev++;
            unsigned long long a, b;
            sscanf(all_to[prev], "%llu-", &a);
            sscanf(all_to[k], "%llu-", &b);
            cr_expect_leq(a, b, "%s (re-driven at %s) went after %s (at %s)", before[i - 1],
                          all_to[prev], before[i], all_to[k]);
        }
    }
    cr_expect_eq(exists(STREAM), 0, "the re-drive wrote the unpartitioned stream");
    cr_expect_eq(harness_kill(&host, SIGTERM, 15000), 0);
    host.pid = 0;
}

/* ---- replay jobs ------------------------------------------------------- */

/* Unix seconds as RFC 3339. */
static void rfc3339(time_t t, char out[32])
{
    struct tm tm;
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
}

/* The replayed calls are keyed.so's lines from `from` on: each of the n
 * events (seq 0..n-1) exactly once, and each partitionkey's in increasing
 * seq. */
static void check_replayed(size_t from, int n, const char *what)
{
    call_t *calls;
    size_t got = read_calls(&calls);
    cr_assert_eq(got, from + (size_t)n, "%s: %zu calls, want %zu", what, got, from + (size_t)n);
    unsigned char *seen = calloc((size_t)n, 1);
    json_t *last = json_object();
    for (size_t i = from; i < got; i++) {
        cr_assert(calls[i].seq >= 0 && calls[i].seq < n, "%s: seq %d", what, calls[i].seq);
        cr_expect_eq(seen[calls[i].seq]++, 0, "%s: event %d replayed twice", what, calls[i].seq);
        if (!strcmp(calls[i].key, "-")) /* no partitionkey: keyed.so does not say its key */
            continue;
        json_t *prev = json_object_get(last, calls[i].key);
        cr_expect(!prev || json_integer_value(prev) < calls[i].seq,
                  "%s: key %s replayed seq %d after %lld", what, calls[i].key, calls[i].seq,
                  (long long)json_integer_value(prev));
        json_object_set_new(last, calls[i].key, json_integer(calls[i].seq));
    }
    json_decref(last);
    free(seen);
    free(calls);
}

static void start_host(void)
{
    char *evbusd = harness_build_path("host/daemon/evbusd");
    char *argv[] = {evbusd, "-c", conf_dir, NULL};
    cr_assert_eq(harness_spawn(&host, argv, NULL, log_path), 0);
    free(evbusd);
    cr_assert(harness_wait_until(admin_up, NULL, 20000), "evbusd's admin endpoint did not come up");
}

/* A replay job over a partitioned stream replays every partition's window
 * through evbusd, each key's events in order, and reports each partition;
 * a job handed back by a stopping evbusd resumes each partition where it
 * was after the restart: every event replayed exactly once. */
Test(partitions, a_replay_replays_every_partition_and_resumes_each_after_a_restart,
     .timeout = 240)
{
    enum { N = 200 };
    harness_pg_t pg;
    cr_assert_eq(harness_pg_start(&pg), 0, "PostgreSQL did not start");
    char yaml[300];
    snprintf(yaml, sizeof yaml, "postgres: { url: \"%s\", migrate_on_start: true }\n", pg.url);
    extra_yaml = yaml;
    write_config(P);
    publish_ndjson(ndjson(N, 23, 0));
    drain();
    cr_assert_eq(harness_count_lines(rec_file), N, "the live deliveries");
    size_t per[P];
    cr_assert_eq(check_partitions(per), N);
    start_host();
    char from[32], to[32];
    rfc3339(time(NULL) - 3600, from);
    rfc3339(time(NULL) + 60, to);

    /* evbusctl replay start --wait: every partition, counted each */
    json_t *job = ctl_json((char *[]){"replay", "start", "--from", from, "--to", to, "--wait",
                                      "--json", NULL});
    cr_expect_str_eq(json_string_value(json_object_get(job, "status")), "completed");
    cr_expect_eq(json_integer_value(json_object_get(job, "total")), N);
    cr_expect_eq(json_integer_value(json_object_get(job, "processed")), N);
    json_t *parts = json_object_get(job, "partitions");
    cr_assert_eq(json_array_size(parts), P, "%s", json_dumps(job, JSON_COMPACT));
    for (unsigned p = 0; p < P; p++) {
        json_t *o = json_array_get(parts, p);
        cr_expect_str_eq(json_string_value(json_object_get(o, "status")), "completed");
        cr_expect_eq(json_integer_value(json_object_get(o, "total")), (json_int_t)per[p],
                     "partition %u", p);
        cr_expect_eq(json_integer_value(json_object_get(o, "processed")), (json_int_t)per[p],
                     "partition %u", p);
    }
    json_decref(job);
    check_replayed(N, N, "evbusctl replay start");

    /* a slow job through the API, evbusd stopped in the middle */
    char body[200];
    snprintf(body, sizeof body, "{\"from\":\"%s\",\"to\":\"%s\",\"rate\":40}", from, to);
    int st;
    job = api_json("POST", "/api/v1/replays", body, &st);
    cr_assert_eq(st, 201, "POST /api/v1/replays: %d", st);
    char id[64];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(job, "id")));
    cr_expect_eq(json_array_size(json_object_get(job, "partitions")), P);
    json_decref(job);
    long long deadline = harness_now_ms() + 30000;
    while (harness_count_lines(rec_file) < 2 * N + 80 && harness_now_ms() < deadline)
        usleep(50 * 1000);
    cr_expect_eq(harness_kill(&host, SIGTERM, 15000), 0);
    host.pid = 0;
    size_t handled = harness_count_lines(rec_file) - 2 * N;
    cr_assert(handled >= 80 && handled < N, "%zu replayed before the stop", handled);
    job = ctl_json((char *[]){"replay", "status", id, "--json", NULL});
    cr_expect_str_eq(json_string_value(json_object_get(job, "status")), "pending",
                     "a stopping evbusd did not hand its job back");
    cr_expect_eq(json_integer_value(json_object_get(job, "processed")), (json_int_t)handled);
    parts = json_object_get(job, "partitions");
    cr_assert_eq(json_array_size(parts), P);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(parts, 0), "status")),
                     "completed", "%s", json_dumps(job, JSON_COMPACT));
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(parts, P - 1), "status")),
                     "pending", "%s", json_dumps(job, JSON_COMPACT));
    json_decref(job);
    char *out = NULL, *err = NULL;
    st = run_ctl(NULL, &out, &err, "replay", "status", id, NULL);
    cr_expect_eq(st, 0, "evbusctl replay status: %d %s", st, err ? err : "");
    cr_expect(out && strstr(out, "partitions: 4 (") && strstr(out, "PARTITION") &&
                  strstr(out, "  0          completed"),
              "%s", out ? out : "");
    free(out);
    free(err);
    start_host();
    job = ctl_json((char *[]){"replay", "status", id, "--wait", "--json", NULL});
    cr_expect_str_eq(json_string_value(json_object_get(job, "status")), "completed");
    cr_expect_eq(json_integer_value(json_object_get(job, "processed")), N);
    json_decref(job);
    check_replayed(2 * N, N, "the job resumed after the restart");
    cr_expect_eq(harness_kill(&host, SIGTERM, 15000), 0);
    host.pid = 0;
    extra_yaml = "";
    harness_pg_stop(&pg);
}

/* The dead letters of partition p's stream that a replay wrote (field
 * replay_job); each names stream {S:p} and holds an event of partition p. */
static long long replay_dead_letters(unsigned p)
{
    char *name = part_name(p);
    redisReply *r = redisCommand(rc, "XRANGE %s:dlq - +", name);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    long long n = 0;
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *fv = r->element[i]->element[1];
        const char *event = NULL, *stream = NULL;
        bool replayed = false;
        for (size_t k = 0; k + 1 < fv->elements; k += 2) {
            if (!strcmp(fv->element[k]->str, "event"))
                event = fv->element[k + 1]->str;
            else if (!strcmp(fv->element[k]->str, "stream"))
                stream = fv->element[k + 1]->str;
            else if (!strcmp(fv->element[k]->str, "replay_job"))
                replayed = true;
        }
        if (!replayed)
            continue;
        n++;
        json_t *ev = json_loads(event ? event : "", 0, NULL);
        cr_expect_eq(evbus_event_partition(ev, P), (int)p, "a replayed event of partition %d "
                     "was dead-lettered in %s:dlq", evbus_event_partition(ev, P), name);
        cr_expect(stream && !strcmp(stream, name), "its dead letter names stream %s, not %s",
                  stream ? stream : "(none)", name);
        json_decref(ev);
    }
    freeReplyObject(r);
    free(name);
    return n;
}

/* A replayed event that fails is dead-lettered in its own partition's keys. */
Test(partitions, replayed_events_that_fail_are_dead_lettered_in_their_partition, .timeout = 180)
{
    harness_pg_t pg;
    cr_assert_eq(harness_pg_start(&pg), 0, "PostgreSQL did not start");
    char yaml[300];
    snprintf(yaml, sizeof yaml, "postgres: { url: \"%s\", migrate_on_start: true }\n", pg.url);
    extra_yaml = yaml;
    write_config(P);
    publish_ndjson(ndjson_mixed(140)); /* 20 poison events */
    drain();
    long long live[P];
    for (unsigned p = 0; p < P; p++) {
        char *name = part_name(p);
        live[p] = harness_redis_int(rc, "XLEN %s:dlq", name);
        free(name);
        cr_assert_eq(replay_dead_letters(p), 0);
    }
    start_host();
    char from[32], to[32];
    rfc3339(time(NULL) - 3600, from);
    rfc3339(time(NULL) + 60, to);
    json_t *job = ctl_json((char *[]){"replay", "start", "--from", from, "--to", to, "--wait",
                                      "--json", NULL});
    cr_expect_str_eq(json_string_value(json_object_get(job, "status")), "completed");
    int failing = 0; /* their first attempt fails: poison, or failing once */
    for (int i = 0; i < 140; i++)
        failing += i % 3 == 0 || i % 7 == 0;
    cr_expect_eq(json_integer_value(json_object_get(job, "failed")), failing);
    json_decref(job);
    /* the replay's retries of events failing once come back and succeed,
     * the poison ones are dead-lettered again: where they were */
    long long deadline = harness_now_ms() + 20000, total = 0;
    for (;;) {
        total = 0;
        for (unsigned p = 0; p < P; p++)
            total += replay_dead_letters(p);
        if (total >= 20 || harness_now_ms() > deadline)
            break;
        usleep(100 * 1000);
    }
    cr_expect_eq(total, 20, "%lld dead letters of the replay for 20 poison events", total);
    for (unsigned p = 0; p < P; p++)
        cr_expect_eq(replay_dead_letters(p), live[p], "partition %u", p);
    cr_expect_eq(exists(STREAM ":dlq"), 0, "the unpartitioned DLQ was written");
    cr_expect_eq(exists(STREAM ":retry"), 0, "the unpartitioned retry schedule was written");
    cr_expect_eq(harness_kill(&host, SIGTERM, 15000), 0);
    host.pid = 0;
    extra_yaml = "";
    harness_pg_stop(&pg);
}
