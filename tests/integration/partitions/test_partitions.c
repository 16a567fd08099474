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
