/*
 * Configuration specification: each test writes manifests into a fresh
 * temporary conf.d and checks the loaded values, or the exact error text
 * with its file:line:column.  Criterion runs every test in its own process,
 * so setenv() in one test never leaks into another.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "core/core_settings.h"
#include "evbus_build_config.h"
#include "util/log.h"
#include <evbus/plugin.h>

static char root[256]; /* temp dir holding conf.d/ and plugins/ */
static char confd[300];
static char plugdir[300];
static cfg_errors_t errs;
static evbus_config_t *cfg;

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void setup(void)
{
    unsetenv("EVBUS_REDIS_URL");
    unsetenv("EVBUS_REDIS_CLUSTER");
    unsetenv("EVBUS_POSTGRES_URL");
    snprintf(root, sizeof root, "/tmp/evbus-config-test-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    snprintf(confd, sizeof confd, "%s/conf.d", root);
    snprintf(plugdir, sizeof plugdir, "%s/plugins", root);
    cr_assert_eq(mkdir(confd, 0755), 0);
    cr_assert_eq(mkdir(plugdir, 0755), 0);
    memset(&errs, 0, sizeof errs);
    cfg = NULL;
}

static void teardown(void)
{
    config_free(cfg);
    cfg_errors_free(&errs);
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(config, .init = setup, .fini = teardown);

static void write_at(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static void manifest(const char *name, const char *text)
{
    write_at(confd, name, text);
}

/* An empty file is enough: config only checks that plugin files exist. */
static void fake_plugin(const char *name)
{
    write_at(plugdir, name, "");
}

static void load_ok(void)
{
    cfg = config_load(confd, &errs);
    for (size_t i = 0; i < errs.count; i++)
        cr_log_error("%s", errs.msgs[i]);
    cr_assert_not_null(cfg, "config should load");
    cr_assert_eq(errs.count, 0);
}

static void load_fails(void)
{
    cfg = config_load(confd, &errs);
    cr_assert_null(cfg, "config should be rejected");
    cr_assert_gt(errs.count, 0);
}

/* Asserts that the errors are exactly these lines, in order.  Each line is
 * a format where %s stands for the conf.d path. */
static void expect_errors(size_t n, ...)
{
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        const char *fmt = va_arg(ap, const char *);
        char want[1024];
        snprintf(want, sizeof want, fmt, confd, confd, confd);
        if (i < errs.count)
            cr_expect_str_eq(errs.msgs[i], want, "error %zu\n got: %s\nwant: %s", i, errs.msgs[i], want);
        else
            cr_expect_fail("missing error %zu: %s", i, want);
    }
    va_end(ap);
    for (size_t i = n; i < errs.count; i++)
        cr_expect_fail("unexpected error: %s", errs.msgs[i]);
}

static const char *plugin_dir_line(void)
{
    static char line[400];
    snprintf(line, sizeof line, "plugin_dir: %s\n", plugdir);
    return line;
}

/* ---- defaults -------------------------------------------------------- */

Test(config, defaults_for_a_minimal_manifest)
{
    manifest("00-host.yaml", "stream: evbus:events\n");
    load_ok();
    char host[256] = "";
    gethostname(host, sizeof host);
    cr_expect_str_eq(cfg->core.redis_url, "redis://127.0.0.1:6379/0");
    cr_expect_eq(cfg->core.redis_connect_timeout_ms, 2000);
    cr_expect_eq(cfg->core.redis_command_timeout_ms, 5000);
    cr_expect_null(cfg->store.postgres_url);
    cr_expect_eq(cfg->store.migrate_on_start, false);
    cr_expect_eq(cfg->store.metadata_enabled, false);
    cr_expect_eq(cfg->store.metadata_queue_size, 65536);
    cr_expect_eq(cfg->store.metadata_batch_size, 5000);
    cr_expect_eq(cfg->store.metadata_flush_ms, 50);
    cr_expect_str_eq(cfg->core.stream, "evbus:events");
    cr_expect_str_eq(cfg->core.group, "evbus");
    cr_expect_str_eq(cfg->core.consumer, host);
    cr_expect_eq(cfg->core.batch_size, 1000);
    cr_expect_eq(cfg->core.block_ms, 1000);
    cr_expect_eq(cfg->core.worker_threads, 2);
    cr_expect_str_eq(cfg->daemon.plugin_dir, EVBUS_PLUGIN_DIR);
    cr_expect_str_eq(cfg->daemon.log_level, "info");
    cr_expect_eq(cfg->daemon.shutdown_timeout_ms, 10000);
    cr_expect_eq(cfg->core.handler_timeout_ms, 30000);
    cr_expect_str_eq(cfg->daemon.state_dir, "/var/lib/evbus");
    cr_expect_eq(cfg->retention.max_age_ms, 7ull * 86400000);
    cr_expect_eq(cfg->retention.max_entries, 0);
    cr_expect_eq(cfg->retention.max_bytes, 0);
    cr_expect_str_eq(cfg->retention.protect_groups, "all");
    cr_expect_str_eq(cfg->schema.dir, EVBUS_SCHEMA_DIR);
    cr_expect_eq(cfg->schema.mode, SCHEMA_MODE_ENFORCE);
    cr_expect_eq(cfg->schema.unknown, SCHEMA_UNKNOWN_ALLOW);
    cr_expect_eq(cfg->schema.format_assert, true);
    cr_expect_eq(cfg->core.retry.base_ms, 1000);
    cr_expect_float_eq(cfg->core.retry.factor, 2.0, 1e-9);
    cr_expect_eq(cfg->core.retry.max_ms, 60000);
    cr_expect_eq(cfg->core.retry.max_attempts, 5);
    cr_expect_float_eq(cfg->core.retry.jitter, 0.2, 1e-9);
    cr_expect_str_eq(cfg->core.dlq_stream, "evbus:events:dlq");
    cr_expect_eq(cfg->core.dlq_capacity, 10000);
    cr_expect_str_eq(cfg->core.dlq_archive, "/var/lib/evbus/dlq-archive.jsonl");
    cr_expect_eq(cfg->core.reclaim_min_idle_ms, 60000);
    cr_expect_eq(cfg->core.reclaim_interval_ms, 5000);
    cr_expect_eq(cfg->core.max_deliveries, 5);
    cr_expect_eq(cfg->core.stale_consumer_ms, 86400000);
    cr_expect_eq(cfg->core.circuit_failures, 10);
    cr_expect_eq(cfg->core.reconnect_max_ms, 1000);
    cr_expect_eq(cfg->core.health_unhealthy_after_ms, 3000);
    cr_expect_eq(cfg->core.health_stuck_after_ms, 30000);
    cr_expect_eq(cfg->core.circuit_stop, false);
    cr_expect_eq(cfg->daemon.reload_drain_timeout_ms, 5000);
    cr_expect_null(cfg->admin.listen);
    cr_expect_eq(cfg->store.replay_max_range_s, 31u * 86400);
    cr_expect_eq(cfg->store.replay_keep_completed, 100);
    cr_expect_eq(cfg->store.replay_keep_failed, 100);
    cr_expect_eq(cfg->store.replay_lease_ms, 120000);
    cr_expect_eq(cfg->store.replay_chunk, 500);
    cr_expect_eq(cfg->n_instances, 0);
    cr_expect_eq(cfg->n_foreign, 0);
    cr_assert_eq(cfg->n_files, 1);
    char want[512];
    snprintf(want, sizeof want, "%s/00-host.yaml", confd);
    cr_expect_str_eq(cfg->files[0], want);
}

Test(config, dlq_defaults_follow_stream_and_state_dir)
{
    manifest("00.yaml", "stream: orders\nstate_dir: /srv/evbus\n");
    load_ok();
    cr_expect_str_eq(cfg->core.dlq_stream, "orders:dlq");
    cr_expect_str_eq(cfg->core.dlq_archive, "/srv/evbus/dlq-archive.jsonl");
}

Test(config, metadata_defaults_to_enabled_when_postgres_is_configured)
{
    manifest("00.yaml", "postgres: { url: postgresql://localhost/evbus }\n");
    load_ok();
    cr_expect_str_eq(cfg->store.postgres_url, "postgresql://localhost/evbus");
    cr_expect(cfg->store.metadata_enabled);
}

Test(config, metadata_can_be_disabled_with_postgres)
{
    manifest("00.yaml", "postgres: { url: postgresql://x/y, metadata: { enabled: false } }\n");
    load_ok();
    cr_expect_not(cfg->store.metadata_enabled);
}

Test(config, empty_postgres_url_means_no_postgres)
{
    manifest("00.yaml", "postgres: { url: \"${EVBUS_TEST_PG:-}\" }\n");
    load_ok();
    cr_expect_null(cfg->store.postgres_url);
    cr_expect_not(cfg->store.metadata_enabled);
}

Test(config, every_key_maps_to_its_field)
{
    char text[4096];
    snprintf(text, sizeof text,
             "redis: { url: redis://r:1/2, connect_timeout_ms: 11, command_timeout_ms: 12 }\n"
             "postgres:\n"
             "  url: postgresql://p/db\n"
             "  migrate_on_start: true\n"
             "  metadata: { enabled: true, queue_size: 13, batch_size: 14, flush_ms: 15 }\n"
             "stream: s\ngroup: g\nconsumer: c1\nbatch_size: 16\nblock_ms: 17\nworker_threads: 64\n"
             "plugin_dir: /opt/p\nlog_level: debug\nshutdown_timeout_ms: 18\nhandler_timeout_ms: 19\n"
             "state_dir: /st\n"
             "retention: { max_age: 90m, max_entries: 20, max_bytes: 2GiB, on_full: block,"
             " protect_groups: [g, audit], block_timeout: 1500ms, interval: 2s }\n"
             "schemas: { dir: /sch, mode: advisory, unknown_type: reject, format_assert: false }\n"
             "retry: { base_ms: 21, factor: 1.5, max_ms: 22, max_attempts: 23, jitter: 0 }\n"
             "dlq: { stream: dead, capacity: 24, archive: /arch.jsonl }\n"
             "reclaim: { min_idle_ms: 25, interval_ms: 26, max_deliveries: 27, stale_consumer_ms: 28 }\n"
             "circuit: { failures: 29, max_backoff_ms: 30, stop: true }\n"
             "reload: { drain_timeout_ms: 31 }\n"
             "admin: { listen: \"127.0.0.1:8089\" }\n"
             "replay: { max_range_s: 32, keep_completed: 33, keep_failed: 34, lease_ms: 35000,"
             " chunk: 36 }\n");
    manifest("00.yaml", text);
    load_ok();
    cr_expect_str_eq(cfg->core.redis_url, "redis://r:1/2");
    cr_expect_eq(cfg->core.redis_connect_timeout_ms, 11);
    cr_expect_eq(cfg->core.redis_command_timeout_ms, 12);
    cr_expect_str_eq(cfg->store.postgres_url, "postgresql://p/db");
    cr_expect(cfg->store.migrate_on_start);
    cr_expect(cfg->store.metadata_enabled);
    cr_expect_eq(cfg->store.metadata_queue_size, 13);
    cr_expect_eq(cfg->store.metadata_batch_size, 14);
    cr_expect_eq(cfg->store.metadata_flush_ms, 15);
    cr_expect_str_eq(cfg->core.stream, "s");
    cr_expect_str_eq(cfg->core.group, "g");
    cr_expect_str_eq(cfg->core.consumer, "c1");
    cr_expect_eq(cfg->core.batch_size, 16);
    cr_expect_eq(cfg->core.block_ms, 17);
    cr_expect_eq(cfg->core.worker_threads, 64);
    cr_expect_str_eq(cfg->daemon.plugin_dir, "/opt/p");
    cr_expect_str_eq(cfg->daemon.log_level, "debug");
    cr_expect_eq(cfg->daemon.shutdown_timeout_ms, 18);
    cr_expect_eq(cfg->core.handler_timeout_ms, 19);
    cr_expect_str_eq(cfg->daemon.state_dir, "/st");
    cr_expect_eq(cfg->retention.max_age_ms, 90ull * 60000);
    cr_expect_eq(cfg->retention.max_entries, 20);
    cr_expect_eq(cfg->retention.max_bytes, 2ull << 30);
    cr_expect_eq(cfg->retention.on_full, RETENTION_BLOCK);
    cr_expect_str_eq(cfg->retention.protect_groups, "g,audit");
    cr_expect_eq(cfg->retention.block_timeout_ms, 1500);
    cr_expect_eq(cfg->retention.interval_ms, 2000);
    cr_expect_str_eq(cfg->schema.dir, "/sch");
    cr_expect_eq(cfg->schema.mode, SCHEMA_MODE_ADVISORY);
    cr_expect_eq(cfg->schema.unknown, SCHEMA_UNKNOWN_REJECT);
    cr_expect_not(cfg->schema.format_assert);
    cr_expect_eq(cfg->core.retry.base_ms, 21);
    cr_expect_float_eq(cfg->core.retry.factor, 1.5, 1e-9);
    cr_expect_eq(cfg->core.retry.max_ms, 22);
    cr_expect_eq(cfg->core.retry.max_attempts, 23);
    cr_expect_float_eq(cfg->core.retry.jitter, 0.0, 1e-9);
    cr_expect_str_eq(cfg->core.dlq_stream, "dead");
    cr_expect_eq(cfg->core.dlq_capacity, 24);
    cr_expect_str_eq(cfg->core.dlq_archive, "/arch.jsonl");
    cr_expect_eq(cfg->core.reclaim_min_idle_ms, 25);
    cr_expect_eq(cfg->core.reclaim_interval_ms, 26);
    cr_expect_eq(cfg->core.max_deliveries, 27);
    cr_expect_eq(cfg->core.stale_consumer_ms, 28);
    cr_expect_eq(cfg->core.circuit_failures, 29);
    cr_expect_eq(cfg->core.reconnect_max_ms, 30);
    cr_expect(cfg->core.circuit_stop);
    cr_expect_eq(cfg->daemon.reload_drain_timeout_ms, 31);
    cr_expect_str_eq(cfg->admin.listen, "127.0.0.1:8089");
    cr_expect_eq(cfg->store.replay_max_range_s, 32);
    cr_expect_eq(cfg->store.replay_keep_completed, 33);
    cr_expect_eq(cfg->store.replay_keep_failed, 34);
    cr_expect_eq(cfg->store.replay_lease_ms, 35000);
    cr_expect_eq(cfg->store.replay_chunk, 36);
}

Test(config, replay_lease_and_chunk_bounds_name_the_key)
{
    manifest("00.yaml", "stream: s\n"
                        "replay: { lease_ms: 999, chunk: 0 }\n");
    manifest("01.yaml", "replay: { chunk: 10001 }\n");
    load_fails();
    expect_errors(3, "%s/00.yaml:2:21: replay.lease_ms: must be between 1000 and 86400000, got 999",
                  "%s/00.yaml:2:33: replay.chunk: must be between 1 and 10000, got 0",
                  "%s/01.yaml:1:18: replay.chunk: must be between 1 and 10000, got 10001");
}

Test(config, relative_paths_resolve_against_the_manifest_directory)
{
    manifest("00.yaml", "state_dir: state\nschemas: { dir: ../schemas }\nplugin_dir: ./plugins\n"
                        "dlq: { archive: arch/dlq.jsonl }\n");
    load_ok();
    char want[512];
    char *abs = realpath(confd, NULL);
    snprintf(want, sizeof want, "%s/state", abs);
    cr_expect_str_eq(cfg->daemon.state_dir, want);
    snprintf(want, sizeof want, "%s/../schemas", abs);
    cr_expect_str_eq(cfg->schema.dir, want);
    snprintf(want, sizeof want, "%s/plugins", abs);
    cr_expect_str_eq(cfg->daemon.plugin_dir, want);
    snprintf(want, sizeof want, "%s/arch/dlq.jsonl", abs);
    cr_expect_str_eq(cfg->core.dlq_archive, want);
    cr_expect_str_eq(cfg->dir, abs);
    free(abs);
}

/* ---- environment ----------------------------------------------------- */

Test(config, expands_variables_and_defaults_before_typing)
{
    setenv("EVBUS_TEST_STREAM", "from-env", 1);
    setenv("EVBUS_TEST_BATCH", "77", 1);
    setenv("EVBUS_TEST_EMPTY", "", 1);
    manifest("00.yaml", "stream: \"${EVBUS_TEST_STREAM}\"\n"
                        "batch_size: ${EVBUS_TEST_BATCH}\n"
                        "group: ${EVBUS_TEST_UNSET:-fallback}\n"
                        "consumer: c-${EVBUS_TEST_EMPTY:-empty-uses-default}-x\n"
                        "log_level: ${EVBUS_TEST_UNSET:-${EVBUS_TEST_UNSET2:-warn}}\n");
    load_ok();
    cr_expect_str_eq(cfg->core.stream, "from-env");
    cr_expect_eq(cfg->core.batch_size, 77);
    cr_expect_str_eq(cfg->core.group, "fallback");
    cr_expect_str_eq(cfg->core.consumer, "c-empty-uses-default-x");
    cr_expect_str_eq(cfg->daemon.log_level, "warn");
}

Test(config, redis_and_postgres_env_override_the_files)
{
    setenv("EVBUS_REDIS_URL", "redis://override:7/1", 1);
    setenv("EVBUS_POSTGRES_URL", "postgresql://override/db", 1);
    manifest("00.yaml", "redis: { url: redis://file:1/0 }\npostgres: { url: postgresql://file/db }\n");
    load_ok();
    cr_expect_str_eq(cfg->core.redis_url, "redis://override:7/1");
    cr_expect_str_eq(cfg->store.postgres_url, "postgresql://override/db");
    cr_expect(cfg->store.metadata_enabled);
}

Test(config, redis_cluster_seeds_are_a_list_or_one_string_and_absent_by_default)
{
    manifest("00.yaml", "stream: s\n");
    load_ok();
    cr_expect_null(cfg->core.redis_cluster);
    cr_expect_null(core_redis_cluster(cfg));
    config_free(cfg);
    manifest("00.yaml", "redis: { cluster: [\"redis://127.0.0.1:7000\", \"redis://:pw@h:7001\"] }\n");
    load_ok();
    cr_expect_str_eq(core_redis_cluster(cfg), "redis://127.0.0.1:7000,redis://:pw@h:7001");
    config_free(cfg);
    manifest("00.yaml", "redis: { cluster: \"redis://127.0.0.1:7000\" }\n");
    load_ok();
    cr_expect_str_eq(core_redis_cluster(cfg), "redis://127.0.0.1:7000");
}

Test(config, redis_cluster_and_redis_url_in_the_files_are_exclusive)
{
    manifest("00.yaml", "redis: { url: \"redis://127.0.0.1:6379/0\" }\n");
    manifest("10.yaml", "redis: { cluster: [\"redis://127.0.0.1:7000\"] }\n");
    load_fails();
    expect_errors(1, "%s/10.yaml:1:19: redis.cluster: exclusive with redis.url (set at "
                     "%s/00.yaml:1:15): a deployment uses one Redis server or one cluster; "
                     "remove one of them");
}

Test(config, a_bad_cluster_seed_is_named_at_its_position)
{
    manifest("00.yaml", "redis:\n  cluster:\n    - redis://127.0.0.1:7000\n    - redis://h:7001/2\n");
    load_fails();
    expect_errors(1, "%s/00.yaml:3:5: redis.cluster: seed \"redis://h:7001/2\" selects database 2; "
                     "a cluster has only database 0");
    config_free(cfg);
    cfg_errors_free(&errs);
    memset(&errs, 0, sizeof errs);
    manifest("00.yaml", "redis: { cluster: [\"unix:///r.sock\"] }\n");
    load_fails();
    expect_errors(1, "%s/00.yaml:1:19: redis.cluster: seed \"unix:///r.sock\" must start with "
                     "redis:// (cluster nodes are reached over TCP)");
    config_free(cfg);
    cfg_errors_free(&errs);
    memset(&errs, 0, sizeof errs);
    manifest("00.yaml", "redis: { cluster: [\"redis://a b\"] }\n");
    load_fails();
    expect_errors(1, "%s/00.yaml:1:19: redis.cluster: expected a URL or a list of URLs, got "
                     "'redis://a b'");
}

Test(config, evbus_redis_cluster_overrides_the_files_redis_url)
{
    setenv("EVBUS_REDIS_CLUSTER", "redis://127.0.0.1:7000,redis://127.0.0.1:7001", 1);
    manifest("00-host.yaml", "redis: { url: \"${EVBUS_REDIS_URL:-redis://127.0.0.1:6379/0}\" }\n");
    load_ok();
    cr_expect_str_eq(core_redis_cluster(cfg), "redis://127.0.0.1:7000,redis://127.0.0.1:7001");
}

Test(config, evbus_redis_url_overrides_the_files_redis_cluster)
{
    setenv("EVBUS_REDIS_URL", "redis://127.0.0.1:6380/0", 1);
    manifest("00.yaml", "redis: { cluster: [\"redis://127.0.0.1:7000\"] }\n");
    load_ok();
    cr_expect_null(core_redis_cluster(cfg));
    cr_expect_str_eq(cfg->core.redis_url, "redis://127.0.0.1:6380/0");
}

Test(config, evbus_redis_cluster_and_evbus_redis_url_together_are_an_error)
{
    setenv("EVBUS_REDIS_URL", "redis://127.0.0.1:6380/0", 1);
    setenv("EVBUS_REDIS_CLUSTER", "redis://127.0.0.1:7000", 1);
    manifest("00.yaml", "stream: s\n");
    load_fails();
    expect_errors(1, "EVBUS_REDIS_CLUSTER and EVBUS_REDIS_URL are both set: a deployment uses "
                     "one Redis server or one cluster; unset one of them");
    config_free(cfg);
    cfg_errors_free(&errs);
    memset(&errs, 0, sizeof errs);
    unsetenv("EVBUS_REDIS_URL");
    setenv("EVBUS_REDIS_CLUSTER", "redis://127.0.0.1:7000/1", 1);
    load_fails();
    expect_errors(1, "redis.cluster: seed \"redis://127.0.0.1:7000/1\" selects database 1; a "
                     "cluster has only database 0 (from EVBUS_REDIS_CLUSTER)");
}

Test(config, partitions_default_to_one_and_are_bounded)
{
    manifest("00.yaml", "stream: s\n");
    load_ok();
    cr_expect_eq(cfg->core.partitions, 1);
    config_free(cfg);
    manifest("00.yaml", "partitions: 12\n");
    load_ok();
    cr_expect_eq(cfg->core.partitions, 12);
    config_free(cfg);
    manifest("00.yaml", "partitions: 1025\n");
    load_fails();
    expect_errors(1, "%s/00.yaml:1:13: partitions: must be between 1 and 1024, got 1025");
}

Test(config, redis_url_default_with_env_reference)
{
    manifest("00-host.yaml", "redis: { url: \"${EVBUS_REDIS_URL:-redis://127.0.0.1:6379/0}\" }\n");
    load_ok();
    cr_expect_str_eq(cfg->core.redis_url, "redis://127.0.0.1:6379/0");
}

Test(config, unset_variable_without_default_is_an_error_at_the_scalar)
{
    manifest("00.yaml", "stream: s\ngroup: \"pre-${EVBUS_TEST_NOPE}\"\n");
    load_fails();
    expect_errors(1, "%s/00.yaml:2:8: environment variable 'EVBUS_TEST_NOPE' is not set "
                     "(write ${EVBUS_TEST_NOPE:-default} to give a default)");
}

Test(config, expand_env_function)
{
    char err[256];
    setenv("EVBUS_TEST_A", "alpha", 1);
    unsetenv("EVBUS_TEST_B");
    char *s = config_expand_env("x${EVBUS_TEST_A}y$z${EVBUS_TEST_B:-b", err, sizeof err);
    cr_assert_null(s);
    cr_expect_str_eq(err, "unterminated '${' at offset 19");
    s = config_expand_env("${EVBUS_TEST_B:-b{}", err, sizeof err);
    cr_assert_not_null(s);
    cr_expect_str_eq(s, "b{", "a brace in a default needs no escaping");
    free(s);
    s = config_expand_env("x${EVBUS_TEST_A}y$z${EVBUS_TEST_B:-def}", err, sizeof err);
    cr_assert_not_null(s);
    cr_expect_str_eq(s, "xalphay$zdef");
    free(s);
    s = config_expand_env("${EVBUS_TEST_B:-${EVBUS_TEST_A}}-${EVBUS_TEST_A:-unused}", err, sizeof err);
    cr_assert_not_null(s);
    cr_expect_str_eq(s, "alpha-alpha");
    free(s);
    cr_expect_null(config_expand_env("${1BAD}", err, sizeof err));
    cr_expect_str_eq(err, "invalid variable reference at offset 0 (expected ${NAME} or ${NAME:-default})");
    cr_expect_null(config_expand_env("ab${EVBUS_TEST_A", err, sizeof err));
    cr_expect_str_eq(err, "unterminated '${' at offset 2");
    cr_expect_null(config_expand_env("${EVBUS_TEST_B}", err, sizeof err));
    cr_expect_str_eq(err, "environment variable 'EVBUS_TEST_B' is not set (write ${EVBUS_TEST_B:-default} "
                          "to give a default)");
    s = config_expand_env("no refs at all, $ and } alone", err, sizeof err);
    cr_expect_str_eq(s, "no refs at all, $ and } alone");
    free(s);
}

Test(config, log_level_names)
{
    cr_expect_eq(config_log_level("debug"), LOG_DEBUG);
    cr_expect_eq(config_log_level("info"), LOG_INFO);
    cr_expect_eq(config_log_level("warn"), LOG_WARN);
    cr_expect_eq(config_log_level("error"), LOG_ERROR);
    cr_expect_eq(config_log_level("trace"), -1);
    cr_expect_eq(config_log_level(NULL), -1);
}

/* ---- files and merging ----------------------------------------------- */

Test(config, later_files_override_scalars_and_merge_sections)
{
    manifest("00-a.yaml", "stream: first\nredis: { url: redis://a:1/0 }\nretry: { base_ms: 5 }\n");
    manifest("10-b.yml", "stream: second\nredis: { connect_timeout_ms: 99 }\nretry: { jitter: 0.5 }\n");
    load_ok();
    cr_expect_str_eq(cfg->core.stream, "second");
    cr_expect_str_eq(cfg->core.redis_url, "redis://a:1/0");
    cr_expect_eq(cfg->core.redis_connect_timeout_ms, 99);
    cr_expect_eq(cfg->core.retry.base_ms, 5);
    cr_expect_float_eq(cfg->core.retry.jitter, 0.5, 1e-9);
    cr_expect_str_eq(cfg->core.dlq_stream, "second:dlq");
    cr_expect_eq(cfg->n_files, 2);
}

Test(config, files_are_read_in_lexical_order_and_plugins_append)
{
    fake_plugin("p.so");
    manifest("2-a.yaml", "plugins: [ { name: from-2a, plugin: p } ]\n");
    manifest("10-b.yaml", "plugins: [ { name: from-10b, plugin: p } ]\n");
    manifest("10-a.yml", "plugins: [ { name: from-10a, plugin: p } ]\n");
    manifest("99-last.yaml", plugin_dir_line());
    manifest("notes.txt", "this: is ignored\n");
    manifest(".hidden.yaml", "stream: [broken\n");
    load_ok();
    cr_assert_eq(cfg->n_instances, 3);
    cr_expect_str_eq(cfg->instances[0].name, "from-10a");
    cr_expect_str_eq(cfg->instances[1].name, "from-10b");
    cr_expect_str_eq(cfg->instances[2].name, "from-2a");
    cr_expect_eq(cfg->n_files, 4);
}

Test(config, plugin_dir_from_a_later_file_resolves_earlier_plugins)
{
    fake_plugin("file-sink.so");
    manifest("20-audit.yaml", "plugins:\n"
                              "  - name: audit\n"
                              "    plugin: file-sink\n"
                              "    config: { path: /var/log/evbus/audit.jsonl }\n"
                              "    subscriptions:\n"
                              "      - { pattern: \"approval.**\", priority: 10 }\n");
    manifest("90-dirs.yaml", plugin_dir_line());
    load_ok();
    char want[512];
    char *abs = realpath(plugdir, NULL);
    snprintf(want, sizeof want, "%s/file-sink.so", abs);
    free(abs);
    cr_assert_eq(cfg->n_instances, 1);
    const cfg_instance_t *in = &cfg->instances[0];
    cr_expect_str_eq(in->plugin, "file-sink");
    cr_expect_str_eq(in->plugin_path, want);
    cr_expect_str_eq(in->config_json, "{\"path\":\"/var/log/evbus/audit.jsonl\"}");
    cr_expect_eq(in->pos.line, 2);
    cr_expect_eq(in->pos.col, 5);
    cr_expect_eq(in->plugin_pos.line, 3);
    cr_expect_eq(in->plugin_pos.col, 13);
    cr_assert_eq(in->n_subs, 1);
    cr_expect_str_eq(in->subs[0].pattern, "approval.**");
    cr_expect(in->subs[0].has_priority);
    cr_expect_eq(in->subs[0].priority, 10);
    cr_expect_eq(in->subs[0].pattern_pos.line, 6);
    cr_expect_eq(in->subs[0].pattern_pos.col, 20);
}

Test(config, plugin_given_as_path_is_relative_to_its_manifest)
{
    write_at(confd, "local.so", "");
    manifest("00.yaml", "plugins: [ { name: a, plugin: ./local.so }, { name: b, plugin: ../plugins/x.so } ]\n");
    fake_plugin("x.so");
    load_ok();
    char *abs = realpath(root, NULL);
    char want[512];
    snprintf(want, sizeof want, "%s/conf.d/local.so", abs);
    cr_expect_str_eq(cfg->instances[0].plugin_path, want);
    snprintf(want, sizeof want, "%s/plugins/x.so", abs);
    cr_expect_str_eq(cfg->instances[1].plugin_path, want);
    free(abs);
}

Test(config, plugin_name_with_so_suffix_is_not_doubled)
{
    fake_plugin("log.so");
    char text[1024];
    snprintf(text, sizeof text, "%splugins: [ { name: l, plugin: log.so } ]\n", plugin_dir_line());
    manifest("00.yaml", text);
    load_ok();
    cr_expect(strstr(cfg->instances[0].plugin_path, "/plugins/log.so") != NULL);
    cr_expect_str_eq(cfg->instances[0].config_json, "{}");
    cr_expect_null(cfg->instances[0].subs);
    cr_expect_eq(cfg->instances[0].n_subs, 0);
}

Test(config, empty_and_document_only_files_are_fine)
{
    manifest("00.yaml", "# nothing here yet\n");
    manifest("01.yaml", "---\n");
    manifest("02.yaml", "stream: x\n");
    load_ok();
    cr_expect_str_eq(cfg->core.stream, "x");
}

/* ---- plugin config as JSON ------------------------------------------- */

Test(config, plugin_config_converts_yaml_types_to_json)
{
    fake_plugin("p.so");
    char text[2048];
    snprintf(text, sizeof text,
             "%splugins:\n"
             "  - name: p1\n"
             "    plugin: p\n"
             "    config:\n"
             "      int: 42\n"
             "      neg: -7\n"
             "      float: 1.5\n"
             "      exp: 1e3\n"
             "      yes: true\n"
             "      no: False\n"
             "      nothing: ~\n"
             "      empty:\n"
             "      quoted_int: \"42\"\n"
             "      quoted_bool: 'true'\n"
             "      word: hello\n"
             "      version: 1.2.3\n"
             "      list: [1, two, 3.0, null]\n"
             "      nested: { a: { b: [ { c: 1 } ] } }\n"
             "      env: ${EVBUS_TEST_PORT:-8080}\n"
             "      env_quoted: \"${EVBUS_TEST_PORT:-8080}\"\n",
             plugin_dir_line());
    manifest("00.yaml", text);
    load_ok();
    cr_expect_str_eq(cfg->instances[0].config_json,
                     "{\"int\":42,\"neg\":-7,\"float\":1.5,\"exp\":1000.0,\"yes\":true,\"no\":false,"
                     "\"nothing\":null,\"empty\":null,\"quoted_int\":\"42\",\"quoted_bool\":\"true\","
                     "\"word\":\"hello\",\"version\":\"1.2.3\",\"list\":[1,\"two\",3.0,null],"
                     "\"nested\":{\"a\":{\"b\":[{\"c\":1}]}},\"env\":8080,\"env_quoted\":\"8080\"}");
}

Test(config, plugin_config_keys_keep_the_positions_of_key_and_value)
{
    fake_plugin("p.so");
    char text[1024];
    snprintf(text, sizeof text,
             "%splugins:\n"
             "  - name: p1\n"
             "    plugin: p\n"
             "    config:\n"
             "      path: /tmp/x\n"
             "      nested: { a: 1 }\n"
             "  - { name: p2, plugin: p, config: { level: info } }\n"
             "  - { name: p3, plugin: p, config: ~ }\n",
             plugin_dir_line());
    manifest("00.yaml", text);
    load_ok();
    const cfg_instance_t *in = &cfg->instances[0];
    cr_assert_eq(in->n_config_keys, 2);
    cr_expect_str_eq(in->config_keys[0].key, "path");
    cr_expect_eq(in->config_keys[0].key_pos.line, 6);
    cr_expect_eq(in->config_keys[0].key_pos.col, 7);
    cr_expect_eq(in->config_keys[0].value_pos.line, 6);
    cr_expect_eq(in->config_keys[0].value_pos.col, 13);
    cr_expect_str_eq(in->config_keys[1].key, "nested");
    cr_expect_eq(in->config_keys[1].value_pos.col, 15);
    cr_expect(strstr(in->config_keys[1].key_pos.file, "/00.yaml") != NULL);
    in = &cfg->instances[1];
    cr_assert_eq(in->n_config_keys, 1);
    cr_expect_str_eq(in->config_keys[0].key, "level");
    cr_expect_eq(in->config_keys[0].key_pos.line, 8);
    cr_expect_eq(in->config_keys[0].key_pos.col, 38);
    cr_expect_eq(in->config_keys[0].value_pos.col, 45);
    cr_expect_eq(cfg->instances[2].n_config_keys, 0);
}

Test(config, plugin_config_must_be_a_mapping)
{
    fake_plugin("p.so");
    char text[1024];
    snprintf(text, sizeof text, "%splugins:\n  - { name: p1, plugin: p, config: [1, 2] }\n", plugin_dir_line());
    manifest("00.yaml", text);
    load_fails();
    expect_errors(1, "%s/00.yaml:3:36: config: expected a mapping, got a sequence");
}

/* ---- subscriptions --------------------------------------------------- */

Test(config, subscription_keys_and_retry_merged_over_the_global_policy)
{
    fake_plugin("p.so");
    char text[2048];
    snprintf(text, sizeof text,
             "%splugins:\n"
             "  - name: p1\n"
             "    plugin: p\n"
             "    subscriptions:\n"
             "      - pattern: order.*\n"
             "        handler: on_order\n"
             "        priority: -3\n"
             "        schema_mode: off\n"
             "        versions: [1, 2]\n"
             "        retry: { max_attempts: 9, factor: 3 }\n"
             "        timeout_ms: 250\n"
             "        dedup_ttl_s: 600\n"
             "      - approval.**\n"
             "      - { pattern: x, versions: 3 }\n",
             plugin_dir_line());
    manifest("00.yaml", text);
    /* the global policy comes later and still applies */
    manifest("50.yaml", "retry: { base_ms: 100, max_ms: 900, jitter: 0.1 }\n");
    load_ok();
    const cfg_instance_t *in = &cfg->instances[0];
    cr_assert_eq(in->n_subs, 3);
    const cfg_subscription_t *s = &in->subs[0];
    cr_expect_str_eq(s->pattern, "order.*");
    cr_expect_str_eq(s->handler, "on_order");
    cr_expect(s->has_priority);
    cr_expect_eq(s->priority, -3);
    cr_expect(s->has_schema_mode);
    cr_expect_eq(s->schema_mode, SCHEMA_MODE_OFF);
    cr_assert_eq(s->n_versions, 2);
    cr_expect_eq(s->versions[0], 1);
    cr_expect_eq(s->versions[1], 2);
    cr_expect(s->has_retry);
    cr_expect_eq(s->retry.max_attempts, 9);
    cr_expect_float_eq(s->retry.factor, 3.0, 1e-9);
    cr_expect_eq(s->retry.base_ms, 100);
    cr_expect_eq(s->retry.max_ms, 900);
    cr_expect_float_eq(s->retry.jitter, 0.1, 1e-9);
    cr_expect_eq(s->timeout_ms, 250);
    cr_expect_eq(s->dedup_ttl_s, 600);
    cr_expect_eq(s->pos.line, 6);
    cr_expect_eq(s->pattern_pos.line, 6);
    cr_expect_eq(s->pattern_pos.col, 18);

    s = &in->subs[1];
    cr_expect_str_eq(s->pattern, "approval.**");
    cr_expect_null(s->handler);
    cr_expect_not(s->has_priority);
    cr_expect_not(s->has_schema_mode);
    cr_expect_not(s->has_retry);
    cr_expect_null(s->versions);
    cr_expect_eq(s->timeout_ms, 0);
    cr_expect_eq(s->dedup_ttl_s, 0);

    s = &in->subs[2];
    cr_assert_eq(s->n_versions, 1);
    cr_expect_eq(s->versions[0], 3);
}

/* ---- foreign handlers ------------------------------------------------ */

Test(config, foreign_entry_with_params_and_result_rules)
{
    write_at(root, "libapprove.so", "");
    manifest("30-foreign.yaml",
             "foreign:\n"
             "  - name: approve\n"
             "    library: ../libapprove.so\n"
             "    symbol: approve_item\n"
             "    returns: int64\n"
             "    params:\n"
             "      - { type: string, from: /data/id }\n"
             "      - { type: int32, value: 7 }\n"
             "      - { type: string, value: 7 }\n"
             "      - { type: double, value: 2.5 }\n"
             "      - { type: bool, value: true }\n"
             "      - { type: json, value: { a: [1, \"x\"] } }\n"
             "      - { type: json, from: /data }\n"
             "      - { type: event }\n"
             "      - { type: int64, from: \"\" }\n"
             "    result: { zero: ok, positive: reject, negative: retry }\n"
             "    subscriptions:\n"
             "      - { pattern: approval.item.*, priority: 5 }\n"
             "  - name: libc-abs\n"
             "    library: libc.so.6\n"
             "    symbol: abs\n"
             "    params: [ { type: int32, from: /data/n } ]\n"
             "    subscriptions: [ math.abs ]\n"
             "  - name: check\n"
             "    library: libc.so.6\n"
             "    symbol: isatty\n"
             "    returns: bool\n"
             "    subscriptions: [ x.y ]\n");
    load_ok();
    cr_assert_eq(cfg->n_foreign, 3);
    const cfg_foreign_t *f = &cfg->foreign[0];
    char *abs = realpath(root, NULL);
    char want[512];
    snprintf(want, sizeof want, "%s/libapprove.so", abs);
    free(abs);
    cr_expect_str_eq(f->name, "approve");
    cr_expect_str_eq(f->library, want);
    cr_expect_str_eq(f->symbol, "approve_item");
    cr_expect_eq(f->returns, FFI_T_INT64);
    cr_assert_eq(f->n_params, 9);
    cr_expect_eq(f->params[0].type, FFI_T_STRING);
    cr_expect_str_eq(f->params[0].from, "/data/id");
    cr_expect_null(f->params[0].value_json);
    cr_expect_eq(f->params[1].type, FFI_T_INT32);
    cr_expect_str_eq(f->params[1].value_json, "7");
    cr_expect_str_eq(f->params[2].value_json, "\"7\"");
    cr_expect_str_eq(f->params[3].value_json, "2.5");
    cr_expect_str_eq(f->params[4].value_json, "true");
    cr_expect_str_eq(f->params[5].value_json, "{\"a\":[1,\"x\"]}");
    cr_expect_eq(f->params[6].type, FFI_T_JSON);
    cr_expect_str_eq(f->params[6].from, "/data");
    cr_expect_eq(f->params[7].type, FFI_T_EVENT);
    cr_expect_null(f->params[7].from);
    cr_expect_null(f->params[7].value_json);
    cr_expect_str_eq(f->params[8].from, "");
    cr_expect_eq(f->on_zero, EVBUS_OK);
    cr_expect_eq(f->on_positive, EVBUS_REJECT);
    cr_expect_eq(f->on_negative, EVBUS_RETRY);
    cr_assert_eq(f->n_subs, 1);
    cr_expect_str_eq(f->subs[0].pattern, "approval.item.*");
    cr_expect_eq(f->library_pos.line, 3);
    cr_expect_eq(f->symbol_pos.line, 4);

    f = &cfg->foreign[1];
    cr_expect_str_eq(f->library, "libc.so.6"); /* left to the dynamic linker */
    cr_expect_eq(f->returns, FFI_T_INT32);
    cr_expect_eq(f->on_zero, EVBUS_OK);
    cr_expect_eq(f->on_positive, EVBUS_RETRY);
    cr_expect_eq(f->on_negative, EVBUS_REJECT);

    f = &cfg->foreign[2];
    cr_expect_eq(f->returns, FFI_T_BOOL);
    cr_expect_eq(f->on_positive, EVBUS_OK);
    cr_expect_eq(f->on_zero, EVBUS_RETRY);
    cr_expect_eq(f->n_params, 0);
}

Test(config, foreign_errors)
{
    manifest("00.yaml", "foreign:\n"
                        "  - name: f1\n"
                        "    library: ./missing.so\n"
                        "    symbol: fn\n"
                        "    returns: float\n"
                        "    params:\n"
                        "      - { from: /a }\n"
                        "      - { type: int32 }\n"
                        "      - { type: int32, from: /a, value: 1 }\n"
                        "      - { type: int32, value: abc }\n"
                        "      - { type: event, from: /a }\n"
                        "      - { type: string, from: data.id }\n"
                        "    result: { zero: fine }\n"
                        "  - { name: f2, library: libc.so.6 }\n"
                        "  - { name: f3, library: libc.so.6, symbol: abs, returns: void, result: { zero: ok },\n"
                        "      subscriptions: [] }\n");
    load_fails();
    expect_errors(14,
                  "%s/00.yaml:5:14: returns: expected one of int32|int64|bool|void, got 'float'",
                  "%s/00.yaml:7:9: parameter is missing required key 'type'",
                  "%s/00.yaml:8:9: parameter needs 'from' (a JSON Pointer into the event) or 'value' (a constant)",
                  "%s/00.yaml:9:9: parameter has both 'from' and 'value'; use one",
                  "%s/00.yaml:10:31: value: expected a 32-bit integer for a int32 parameter, got 'abc'",
                  "%s/00.yaml:11:9: an event parameter takes neither 'from' nor 'value'",
                  "%s/00.yaml:12:31: from: expected a JSON Pointer such as '/data/id', got 'data.id'",
                  "%s/00.yaml:13:21: result.zero: expected one of ok|retry|reject, got 'fine'",
                  "%s/00.yaml:2:5: foreign handler needs at least one subscription",
                  "%s/00.yaml:14:5: foreign handler is missing required key 'symbol'",
                  "%s/00.yaml:14:5: foreign handler needs at least one subscription",
                  "%s/00.yaml:16:22: foreign handler needs at least one subscription",
                  "%s/00.yaml:15:73: result: a function that returns void always means ok; remove 'result'",
                  "%s/00.yaml:3:14: library: no such file %s/missing.so");
}

/* ---- errors ---------------------------------------------------------- */

Test(config, unknown_keys_name_the_key_and_the_valid_ones)
{
    manifest("00.yaml", "stream: s\nredis_url: x\nredis: { uri: x }\nretry: { tries: 3 }\n");
    load_fails();
    expect_errors(3,
                  "%s/00.yaml:2:1: unknown top-level key 'redis_url' (valid: redis, stream, partitions, group, consumer, "
                  "batch_size, block_ms, worker_threads, handler_timeout_ms, retry, dlq, reclaim, circuit, "
                  "health, stats, ownership, ordering, schemas, retention, postgres, replay, admin, plugin_dir, log_level, log, state_dir, "
                  "shutdown_timeout_ms, reload, plugins, foreign)",
                  "%s/00.yaml:3:10: unknown key 'uri' in redis (valid: url, cluster, connect_timeout_ms, command_timeout_ms, wait_replicas, wait_timeout_ms)",
                  "%s/00.yaml:4:10: unknown key 'tries' in retry (valid: base_ms, factor, max_ms, max_attempts, jitter)");
}

Test(config, wrong_types)
{
    manifest("00.yaml", "batch_size: abc\n"
                        "block_ms: 1.5\n"
                        "stream: { a: 1 }\n"
                        "circuit: { stop: maybe }\n"
                        "retry: { factor: fast }\n"
                        "redis: 5\n"
                        "group:\n"
                        "plugins: { name: x }\n");
    load_fails();
    expect_errors(8, "%s/00.yaml:1:13: batch_size: expected an integer, got 'abc'",
                  "%s/00.yaml:2:11: block_ms: expected an integer, got '1.5'",
                  "%s/00.yaml:3:9: stream: expected a string, got a mapping",
                  "%s/00.yaml:4:18: circuit.stop: expected true or false, got 'maybe'",
                  "%s/00.yaml:5:18: retry.factor: expected a number, got 'fast'",
                  "%s/00.yaml:6:8: redis: expected a mapping, got '5'",
                  "%s/00.yaml:7:7: group: expected a string, got null",
                  "%s/00.yaml:8:10: plugins: expected a sequence, got a mapping");
}

Test(config, out_of_range_values)
{
    manifest("00.yaml", "batch_size: 0\n"
                        "worker_threads: 0\n"
                        "retry: { jitter: 1.5, factor: 0.5, max_attempts: 0 }\n"
                        "block_ms: 4294967296\n"
                        "retention: { max_age: 7 days, max_bytes: 2GB2, protect_groups: [] }\n");
    manifest("01.yaml", "worker_threads: 65\nretry: { jitter: -0.1 }\n");
    load_fails();
    expect_errors(11, "%s/00.yaml:1:13: batch_size: must be at least 1, got 0",
                  "%s/00.yaml:2:17: worker_threads: must be between 1 and 64, got 0",
                  "%s/00.yaml:3:18: retry.jitter: must be between 0 and 1, got 1.5",
                  "%s/00.yaml:3:31: retry.factor: must be at least 1, got 0.5",
                  "%s/00.yaml:3:50: retry.max_attempts: must be at least 1, got 0",
                  "%s/00.yaml:4:11: block_ms: must be at least 1, got 4294967296",
                  "%s/00.yaml:5:23: retention.max_age: expected a duration such as 30s, 15m, "
                  "12h or 7d, got '7 days'",
                  "%s/00.yaml:5:42: retention.max_bytes: expected a size such as 512MiB or "
                  "2GiB, got '2GB2'",
                  "%s/00.yaml:5:64: retention.protect_groups: expected at least one name",
                  "%s/01.yaml:1:17: worker_threads: must be between 1 and 64, got 65",
                  "%s/01.yaml:2:18: retry.jitter: must be between 0 and 1, got -0.1");
}

Test(config, bad_enums)
{
    manifest("00.yaml", "log_level: loud\nschemas: { mode: strict, unknown_type: drop }\n"
                        "admin: { listen: localhost }\n");
    load_fails();
    expect_errors(4, "%s/00.yaml:1:12: log_level: expected one of debug|info|warn|error, got 'loud'",
                  "%s/00.yaml:2:18: schemas.mode: expected one of off|advisory|enforce, got 'strict'",
                  "%s/00.yaml:2:40: schemas.unknown_type: expected one of allow|reject, got 'drop'",
                  "%s/00.yaml:3:18: admin.listen: expected host:port such as 127.0.0.1:8089, got 'localhost'");
}

Test(config, duplicate_instance_names_report_both_positions)
{
    fake_plugin("p.so");
    char text[1024];
    snprintf(text, sizeof text, "%splugins:\n  - { name: audit, plugin: p }\n", plugin_dir_line());
    manifest("10.yaml", text);
    manifest("20.yaml", "plugins:\n  - { name: other, plugin: p }\n  - { name: audit, plugin: p }\n");
    manifest("30.yaml", "foreign:\n  - { name: other, library: libc.so.6, symbol: abs, subscriptions: [a] }\n");
    load_fails();
    expect_errors(2, "%s/20.yaml:3:5: duplicate instance name 'audit' (first defined at %s/10.yaml:3:5)",
                  "%s/30.yaml:2:5: duplicate instance name 'other' (first defined at %s/20.yaml:2:5)");
}

Test(config, missing_required_keys)
{
    fake_plugin("p.so");
    manifest("00.yaml", "plugins:\n"
                        "  - plugin: p\n"
                        "  - name: only-name\n"
                        "  - name: bad name\n"
                        "    plugin: p\n"
                        "  - name: subs\n"
                        "    plugin: p\n"
                        "    subscriptions: [ { priority: 1 }, { pattern: a, colour: red } ]\n");
    manifest("01.yaml", plugin_dir_line());
    load_fails();
    expect_errors(5, "%s/00.yaml:2:5: plugin instance is missing required key 'name'",
                  "%s/00.yaml:3:5: plugin instance is missing required key 'plugin'",
                  "%s/00.yaml:4:11: name: must be 1 to 64 characters of a-z A-Z 0-9 _ - ., got 'bad name'",
                  "%s/00.yaml:8:22: subscription is missing required key 'pattern'",
                  "%s/00.yaml:8:53: unknown key 'colour' in subscription (valid: pattern, handler, priority, "
                  "schema_mode, versions, retry, timeout_ms, dedup_ttl_s, ordering)");
}

Test(config, ordering_per_key_or_none_and_an_unknown_value_names_its_position)
{
    fake_plugin("p.so");
    char text[1024];
    snprintf(text, sizeof text,
             "%splugins:\n"
             "  - name: p1\n"
             "    plugin: p\n"
             "    subscriptions:\n"
             "      - { pattern: a.*, ordering: per_key }\n"
             "      - { pattern: b.*, ordering: none }\n"
             "      - c.*\n",
             plugin_dir_line());
    manifest("00.yaml", text);
    load_ok();
    const cfg_instance_t *in = &cfg->instances[0];
    cr_assert_eq(in->n_subs, 3);
    cr_expect_eq(in->subs[0].ordering, CFG_ORDERING_PER_KEY);
    cr_expect_eq(in->subs[1].ordering, CFG_ORDERING_NONE);
    cr_expect_eq(in->subs[2].ordering, CFG_ORDERING_NONE, "the default is today's behaviour");
    config_free(cfg);
    cfg = NULL;
    cfg_errors_free(&errs);
    snprintf(text, sizeof text,
             "%splugins:\n"
             "  - name: p1\n"
             "    plugin: p\n"
             "    subscriptions:\n"
             "      - { pattern: a.*, ordering: sorted }\n",
             plugin_dir_line());
    manifest("00.yaml", text);
    load_fails();
    expect_errors(1, "%s/00.yaml:6:35: ordering: expected one of none|per_key, got 'sorted'");
}

Test(config, missing_plugin_file)
{
    char text[1024];
    snprintf(text, sizeof text, "%splugins:\n  - name: audit\n    plugin: file-sink\n"
                                "  - name: b\n    plugin: /nonexistent/b.so\n", plugin_dir_line());
    manifest("00.yaml", text);
    load_fails();
    char *abs = realpath(plugdir, NULL);
    char want[1024];
    snprintf(want, sizeof want, "%%s/00.yaml:4:13: plugin 'file-sink': no such file "
             "%s/file-sink.so (nor %s/file-sink/file-sink.so)", abs, abs);
    free(abs);
    expect_errors(2, want, "%s/00.yaml:6:13: plugin: no such file /nonexistent/b.so");
}

/* ---- plugin_dir as a build tree ---------------------------------------- */

/* plugdir/NAME/NAME.so, as a build's plugins/ folder holds a plugin */
static void fake_built_plugin(const char *name)
{
    char sub[400], file[300];
    snprintf(sub, sizeof sub, "%s/%s", plugdir, name);
    cr_assert_eq(mkdir(sub, 0755), 0);
    snprintf(file, sizeof file, "%s.so", name);
    write_at(sub, file, "");
}

static char *under_plugdir(const char *rel)
{
    char *abs = realpath(plugdir, NULL), *p = NULL;
    cr_assert_gt(asprintf(&p, "%s/%s", abs, rel), 0);
    free(abs);
    return p;
}

Test(config, plugin_dir_may_be_a_build_tree_holding_name_slash_name_so)
{
    fake_built_plugin("file-sink");
    fake_built_plugin("log");
    char text[1024];
    snprintf(text, sizeof text, "%splugins:\n  - { name: audit, plugin: file-sink }\n"
             "  - { name: trace, plugin: log.so }\n", plugin_dir_line());
    manifest("00.yaml", text);
    load_ok();
    char *want = under_plugdir("file-sink/file-sink.so");
    cr_expect_str_eq(cfg->instances[0].plugin_path, want);
    free(want);
    want = under_plugdir("log/log.so");
    cr_expect_str_eq(cfg->instances[1].plugin_path, want);
    free(want);
}

Test(config, plugin_dir_name_so_is_preferred_over_a_build_tree_folder)
{
    fake_built_plugin("p");
    fake_plugin("p.so");
    char text[1024];
    snprintf(text, sizeof text, "%splugins: [ { name: a, plugin: p } ]\n", plugin_dir_line());
    manifest("00.yaml", text);
    load_ok();
    char *want = under_plugdir("p.so");
    cr_expect_str_eq(cfg->instances[0].plugin_path, want);
    free(want);
}

Test(config, bad_patterns)
{
    fake_plugin("p.so");
    char text[1024];
    snprintf(text, sizeof text,
             "%splugins:\n  - name: p1\n    plugin: p\n    subscriptions:\n"
             "      - pattern: \"approval.\"\n      - Approval.*\n      - { pattern: \"a.b*\" }\n",
             plugin_dir_line());
    manifest("00.yaml", text);
    load_fails();
    expect_errors(3, "%s/00.yaml:6:18: invalid pattern 'approval.': empty segment at offset 9",
                  "%s/00.yaml:7:9: invalid pattern 'Approval.*': uppercase character 'A' at offset 0 (use lowercase)",
                  "%s/00.yaml:8:20: invalid pattern 'a.b*': segment 'b*' at offset 2: a wildcard must be a whole "
                  "segment, '*' or '**'");
}

Test(config, yaml_syntax_errors_use_the_parser_position)
{
    manifest("00.yaml", "stream: [a\nbatch_size: 3\n");
    manifest("01.yaml", "a: b: c\n");
    load_fails();
    expect_errors(2,
                  "%s/00.yaml:2:11: YAML syntax error: did not find expected ',' or ']' (while parsing a flow "
                  "sequence at line 1, column 9)",
                  "%s/01.yaml:1:5: YAML syntax error: mapping values are not allowed in this context");
}

Test(config, top_level_must_be_a_mapping)
{
    manifest("00.yaml", "- stream: x\n");
    manifest("01.yaml", "just a string\n");
    load_fails();
    expect_errors(2, "%s/00.yaml:1:1: the top level of a manifest must be a mapping, got a sequence",
                  "%s/01.yaml:1:1: the top level of a manifest must be a mapping, got 'just a string'");
}

Test(config, duplicate_keys_in_one_file)
{
    manifest("00.yaml", "stream: a\ngroup: g\nstream: b\n");
    load_fails();
    expect_errors(1, "%s/00.yaml:3:1: duplicate key 'stream' (first at line 1, column 1)");
}

Test(config, aliases_are_rejected)
{
    manifest("00.yaml", "stream: &s x\ngroup: *s\n");
    load_fails();
    expect_errors(1, "%s/00.yaml:2:8: YAML aliases (*s) are not supported; repeat the value");
}

Test(config, metadata_enabled_needs_a_postgres_url)
{
    manifest("00.yaml", "postgres: { metadata: { enabled: true } }\n");
    load_fails();
    expect_errors(1, "%s/00.yaml:1:34: postgres.metadata.enabled: true needs postgres.url (or EVBUS_POSTGRES_URL)");
}

Test(config, empty_directory_is_an_error)
{
    manifest("readme.txt", "not yaml");
    load_fails();
    expect_errors(1, "%s: no configuration files (*.yaml or *.yml) in this directory");
}

Test(config, missing_directory_is_an_error)
{
    char missing[400];
    snprintf(missing, sizeof missing, "%s/nope", root);
    cfg = config_load(missing, &errs);
    cr_assert_null(cfg);
    cr_assert_eq(errs.count, 1);
    char want[512];
    snprintf(want, sizeof want, "%s: cannot open configuration directory: No such file or directory", missing);
    cr_expect_str_eq(errs.msgs[0], want);
}

Test(config, all_errors_of_all_files_are_collected)
{
    manifest("00.yaml", "batch_size: x\nworker_threads: 99\n");
    manifest("10.yaml", "stream: [\n");
    manifest("20.yaml", "nope: 1\n");
    load_fails();
    cr_expect_eq(errs.count, 4);
    cr_expect(strstr(errs.msgs[0], "/00.yaml:1:13: ") != NULL);
    cr_expect(strstr(errs.msgs[1], "/00.yaml:2:17: ") != NULL);
    cr_expect(strstr(errs.msgs[2], "/10.yaml:2:1: YAML syntax error") != NULL);
    cr_expect(strstr(errs.msgs[3], "/20.yaml:1:1: unknown top-level key 'nope'") != NULL);
}

Test(config, errors_append_to_what_the_caller_already_has)
{
    cfg_pos_t pos = {.file = "x.yaml", .line = 3, .col = 4};
    cfg_errors_add(&errs, &pos, "earlier %d", 1);
    cfg_errors_add(&errs, NULL, "no position");
    manifest("00.yaml", "stream: ok\n");
    cfg = config_load(confd, &errs);
    cr_assert_not_null(cfg, "earlier errors do not fail a clean load");
    cr_assert_eq(errs.count, 2);
    cr_expect_str_eq(errs.msgs[0], "x.yaml:3:4: earlier 1");
    cr_expect_str_eq(errs.msgs[1], "no position");
}

/* ---- the settings tables (config/settings.h) --------------------------- */

Test(config, every_row_reads_back_the_text_it_was_set_from)
{
    manifest("00.yaml", "stream: s\n");
    load_ok();
    size_t n = cfg_settings_count();
    cr_assert_gt(n, 40);
    for (size_t i = 0; i < n; i++) {
        const cfg_setting_t *s = cfg_setting_at(i);
        char text[1024], again[1024], err[256];
        cr_assert(s->desc && *s->desc, "%s has no description", s->key);
        cr_assert(s->why && *s->why, "%s does not say when/why it applies", s->key);
        cr_assert(s->def || s->compute || (s->flags & CFG_F_OPTIONAL),
                  "%s has no default and is not optional", s->key);
        size_t idx;
        cr_assert_eq(cfg_setting_find(s->key, &idx), s);
        cr_assert_eq(idx, i);
        cfg_value_text(cfg, i, text, sizeof text);
        if (!text[0] && (s->flags & CFG_F_OPTIONAL))
            continue;
        cr_assert_eq(cfg_value_set(cfg, i, text, err, sizeof err), 0, "%s = '%s': %s", s->key,
                     text, err);
        cr_assert_str_eq(cfg_value_text(cfg, i, again, sizeof again), text, "%s", s->key);
    }
}

Test(config, sources_say_default_file_position_or_environment)
{
    setenv("EVBUS_REDIS_URL", "redis://10.0.0.1:6379/2", 1);
    manifest("00.yaml", "redis: { url: redis://x }\nreclaim:\n  max_deliveries: 9\n");
    load_ok();
    char src[600], want[600];
    size_t i;
    cr_assert(cfg_setting_find("redis.url", &i));
    cr_assert_str_eq(cfg->core.redis_url, "redis://10.0.0.1:6379/2");
    cr_assert_str_eq(cfg_source_text(cfg, i, src, sizeof src), "env EVBUS_REDIS_URL");
    cr_assert(cfg_setting_find("reclaim.max_deliveries", &i));
    snprintf(want, sizeof want, "%s/00.yaml:3:19", confd);
    cr_assert_str_eq(cfg_source_text(cfg, i, src, sizeof src), want);
    cr_assert(cfg_setting_find("batch_size", &i));
    cr_assert_str_eq(cfg_source_text(cfg, i, src, sizeof src), "default");
    /* a computed default follows what it depends on */
    cr_assert(cfg_setting_find("dlq.stream", &i));
    cr_assert_str_eq(cfg->core.dlq_stream, "evbus:events:dlq");
    cr_assert_str_eq(cfg_source_text(cfg, i, src, sizeof src), "default");
}

Test(config, reload_merge_keeps_restart_settings_and_applies_live_ones)
{
    manifest("00.yaml", "worker_threads: 2\ndlq: { capacity: 100 }\n");
    load_ok();
    evbus_config_t *prev = cfg;
    cfg = NULL;
    manifest("00.yaml", "worker_threads: 4\ndlq: { capacity: 50 }\nstream: other\n");
    load_ok();
    cfg_pending_list_t pend = {0};
    size_t live = config_reload_merge(prev, cfg, &pend);
    cr_expect_eq(live, 1); /* dlq.capacity */
    cr_expect_eq(cfg->core.dlq_capacity, 50);
    cr_expect_eq(cfg->core.worker_threads, 2, "restart settings keep the running value");
    cr_expect_str_eq(cfg->core.stream, "evbus:events");
    cr_expect_str_eq(cfg->core.dlq_stream, "evbus:events:dlq");
    cr_assert_eq(pend.count, 3); /* stream, worker_threads, dlq.stream (computed from stream) */
    char want[600];
    snprintf(want, sizeof want, "%s/00.yaml:1:17", confd);
    bool seen = false;
    for (size_t i = 0; i < pend.count; i++)
        if (!strcmp(pend.items[i].key, "worker_threads")) {
            seen = true;
            cr_expect_str_eq(pend.items[i].pos, want);
            cr_expect_str_eq(pend.items[i].old, "2");
            cr_expect_str_eq(pend.items[i].now, "4");
        }
    cr_expect(seen);
    /* the kept value's source is the running one's, not the new file's */
    size_t i;
    char src[600];
    cr_assert(cfg_setting_find("stream", &i));
    cr_expect_str_eq(cfg_source_text(cfg, i, src, sizeof src), "default");
    cfg_pending_free(&pend);
    config_free(prev);
}

static const char *running_of(void *arg, const char *key)
{
    (void)arg;
    if (!strcmp(key, "worker_threads"))
        return "3";
    if (!strcmp(key, "batch_size"))
        return "7";
    return NULL;
}

Test(config, diff_against_the_running_record_lists_restart_changes)
{
    manifest("00.yaml", "worker_threads: 2\n");
    load_ok();
    cfg_pending_list_t pend = {0};
    cr_expect_eq(config_diff_text(cfg, running_of, NULL, &pend), 1); /* batch_size 1000 vs 7 */
    cr_assert_eq(pend.count, 1);
    cr_expect_str_eq(pend.items[0].key, "worker_threads");
    cr_expect_str_eq(pend.items[0].old, "3");
    cr_expect_str_eq(pend.items[0].now, "2");
    cfg_pending_free(&pend);
}

Test(config, settings_json_marks_pending_values)
{
    manifest("00.yaml", "batch_size: 5\n");
    load_ok();
    cfg_pending_t item = {.key = "batch_size", .pos = "x", .old = "5", .now = "6"};
    cfg_pending_list_t pend = {.items = &item, .count = 1};
    json_t *rows = config_settings_json(cfg, &pend);
    cr_assert_eq(json_array_size(rows), cfg_settings_count());
    size_t i;
    json_t *row;
    int found = 0;
    json_array_foreach(rows, i, row)
    {
        if (strcmp(json_string_value(json_object_get(row, "key")), "batch_size"))
            continue;
        found = 1;
        cr_expect_str_eq(json_string_value(json_object_get(row, "value")), "5");
        cr_expect_str_eq(json_string_value(json_object_get(row, "reload")), "live");
        cr_expect_str_eq(json_string_value(json_object_get(row, "pending_restart")), "6");
        cr_expect_str_eq(json_string_value(json_object_get(row, "type")), "int ≥ 1");
    }
    cr_expect(found);
    json_decref(rows);
}

/* What shows settings to people masks passwords in the value in force and
 * in the value waiting for a restart. */
Test(config, settings_redact_masks_value_and_pending_restart)
{
    manifest("00.yaml", "redis: { url: \"redis://:old-pw@127.0.0.1:6379/0\" }\n");
    load_ok();
    cfg_pending_t item = {.key = "redis.url", .pos = "x", .old = "redis://:old-pw@127.0.0.1:6379/0",
                          .now = "redis://:new-pw@127.0.0.1:6379/0"};
    cfg_pending_list_t pend = {.items = &item, .count = 1};
    json_t *rows = config_settings_json(cfg, &pend);
    config_settings_redact(rows);
    char *all = json_dumps(rows, 0);
    cr_expect(!strstr(all, "old-pw") && !strstr(all, "new-pw"), "%s", all);
    free(all);
    size_t i;
    json_t *row;
    int found = 0;
    json_array_foreach(rows, i, row)
    {
        if (strcmp(json_string_value(json_object_get(row, "key")), "redis.url"))
            continue;
        found = 1;
        cr_expect_str_eq(json_string_value(json_object_get(row, "value")),
                         "redis://:***@127.0.0.1:6379/0");
        cr_expect_str_eq(json_string_value(json_object_get(row, "pending_restart")),
                         "redis://:***@127.0.0.1:6379/0");
    }
    cr_expect(found);
    json_decref(rows);
}

Test(config, publish_maxlen_is_refused_with_a_pointer_to_retention)
{
    manifest("00.yaml", "stream: s\npublish_maxlen: 100\n");
    load_fails();
    expect_errors(1, "%s/00.yaml:2:1: publish_maxlen was removed: publishers no longer trim the "
                     "stream (that lost unread events); set retention: { max_entries: N } (or "
                     "max_age, max_bytes) instead, which never trims an entry a consumer group "
                     "still owes (docs/operations.md, Retention)");
}

Test(config, durations_and_sizes_read_and_print_in_units)
{
    manifest("00.yaml", "retention: { max_age: 3600, max_bytes: 1536KiB, block_timeout: 90s }\n");
    load_ok();
    cr_expect_eq(cfg->retention.max_age_ms, 3600000);
    cr_expect_eq(cfg->retention.max_bytes, 1536ull * 1024);
    size_t i;
    char t[64];
    cr_assert(cfg_setting_find("retention.max_age", &i));
    cr_expect_str_eq(cfg_value_text(cfg, i, t, sizeof t), "1h");
    cr_assert(cfg_setting_find("retention.max_bytes", &i));
    cr_expect_str_eq(cfg_value_text(cfg, i, t, sizeof t), "1536KiB");
    cr_assert(cfg_setting_find("retention.block_timeout", &i));
    cr_expect_str_eq(cfg_value_text(cfg, i, t, sizeof t), "90s");
}

Test(config, durations_take_a_unit_or_seconds_and_show_the_largest_exact_unit)
{
    static const char *const cases[][2] = {
        {"30d", "30d"}, {"12h", "12h"}, {"90m", "90m"}, {"3600s", "1h"},
        {"3600", "1h"}, {"61", "61s"},  {"0", "0"},     {"48h", "2d"},
    };
    size_t i;
    cr_assert(cfg_setting_find("postgres.metadata.retention", &i));
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char yaml[128], text[64];
        snprintf(yaml, sizeof yaml, "postgres: { metadata: { retention: %s } }\n", cases[k][0]);
        manifest("00.yaml", yaml);
        load_ok();
        cr_expect_str_eq(cfg_value_text(cfg, i, text, sizeof text), cases[k][1], "%s",
                         cases[k][0]);
        config_free(cfg);
        cfg = NULL;
    }
}

Test(config, bad_durations_say_what_is_expected)
{
    static const char *const bad[] = {"30x", "d", "3651d", "-1d"};
    for (int k = 0; k < 4; k++) {
        char name[16], yaml[128];
        snprintf(name, sizeof name, "%02d.yaml", k);
        snprintf(yaml, sizeof yaml, "postgres: { metadata: { retention: %s } }\n", bad[k]);
        manifest(name, yaml);
    }
    load_fails();
    expect_errors(4,
                  "%s/00.yaml:1:36: postgres.metadata.retention: expected a duration such as "
                  "30s, 15m, 12h or 7d, got '30x'",
                  "%s/01.yaml:1:36: postgres.metadata.retention: expected a duration such as "
                  "30s, 15m, 12h or 7d, got 'd'",
                  "%s/02.yaml:1:36: postgres.metadata.retention: must be between 0 and 3650d, "
                  "got '3651d'",
                  "%s/03.yaml:1:36: postgres.metadata.retention: expected a duration such as "
                  "30s, 15m, 12h or 7d, got '-1d'");
}

/* ---- the tolerant load (evbusctl) ------------------------------------- */

static bool *doubtful;

static bool doubt(const char *key)
{
    size_t i;
    cr_assert(cfg_setting_find(key, &i), "no row %s", key);
    return doubtful[i];
}

static size_t doubts(void)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg_settings_count(); i++)
        n += doubtful[i];
    return n;
}

static void load_partial(size_t n_errors)
{
    cfg = config_load_partial(confd, &errs, &doubtful);
    cr_assert_not_null(cfg, "a readable directory always gives a config");
    cr_assert_not_null(doubtful);
    cr_assert_eq(errs.count, n_errors, "%zu errors, first: %s", errs.count,
                 errs.count ? errs.msgs[0] : "");
}

static void partial_done(void)
{
    free(doubtful);
    doubtful = NULL;
}

Test(config, partial_load_keeps_what_parsed_beside_a_broken_plugin_entry)
{
    manifest("00-host.yaml", "stream: s1\nadmin: { listen: \"127.0.0.1:9001\" }\n");
    manifest("20-bad.yaml", "plugins:\n  - { name: x, plugin: nowhere }\n");
    load_partial(1);
    cr_expect(strstr(errs.msgs[0], "20-bad.yaml:2:24: plugin 'nowhere': no such file"),
              "got %s", errs.msgs[0]);
    cr_expect_str_eq(cfg->core.stream, "s1");
    cr_expect_str_eq(cfg->admin.listen, "127.0.0.1:9001");
    cr_expect_eq(doubts(), 0, "no setting is in doubt");
    partial_done();
}

Test(config, the_strict_load_still_refuses_what_the_partial_load_accepts)
{
    manifest("00-host.yaml", "stream: s1\n");
    manifest("20-bad.yaml", "plugins:\n  - { name: x, plugin: nowhere }\n");
    load_fails();
}

Test(config, partial_load_a_refused_value_keeps_the_earlier_one_and_is_doubtful)
{
    manifest("00-host.yaml", "stream: s1\nadmin: { listen: \"127.0.0.1:9001\" }\n");
    manifest("30-bad.yaml", "admin: { listen: nope }\nbatch_size: 0\n");
    load_partial(2);
    cr_expect_str_eq(cfg->admin.listen, "127.0.0.1:9001");
    cr_expect(doubt("admin.listen"));
    cr_expect(doubt("batch_size"), "refused with its default in force");
    cr_expect_eq(cfg->core.batch_size, 1000);
    cr_expect_not(doubt("stream"));
    cr_expect_eq(doubts(), 2);
    partial_done();
}

Test(config, partial_load_a_later_valid_value_settles_an_earlier_refused_one)
{
    manifest("10.yaml", "admin: { listen: nope }\n");
    manifest("20.yaml", "admin: { listen: \"127.0.0.1:9002\" }\n");
    load_partial(1);
    cr_expect_str_eq(cfg->admin.listen, "127.0.0.1:9002");
    cr_expect_eq(doubts(), 0);
    partial_done();
}

Test(config, partial_load_an_unreadable_file_casts_doubt_on_every_row_no_file_set)
{
    manifest("00-host.yaml", "stream: s1\n");
    manifest("40-bad.yaml", "admin: { listen: \"127.0.0.1:9003\" }\nstream: [oops\n");
    load_partial(1);
    cr_expect_null(cfg->admin.listen, "nothing of the broken file is applied");
    cr_expect(doubt("admin.listen"));
    cr_expect(doubt("redis.url"));
    cr_expect(doubt("dlq.stream"), "a computed default no file set");
    cr_expect_not(doubt("stream"), "set by a readable file");
    partial_done();
}

Test(config, partial_load_unknown_keys_and_misshapen_sections_cast_doubt_too)
{
    manifest("00.yaml", "redis: { uri: \"redis://10.0.0.1:6379/0\" }\nstream: s1\n");
    load_partial(1);
    cr_expect(doubt("redis.url"), "'uri' may have meant url");
    cr_expect_not(doubt("stream"));
    partial_done();
    config_free(cfg);
    cfg_errors_free(&errs);
    manifest("00.yaml", "admin: \"127.0.0.1:9004\"\nstream: s1\n");
    load_partial(1);
    cr_expect(doubt("admin.listen"));
    cr_expect_not(doubt("stream"));
    partial_done();
}

Test(config, partial_load_a_row_the_environment_sets_is_never_doubtful)
{
    setenv("EVBUS_REDIS_URL", "redis://10.0.0.9:6379/0", 1);
    manifest("00.yaml", "redis: { url: [a] }\n");
    load_partial(1);
    cr_expect_str_eq(cfg->core.redis_url, "redis://10.0.0.9:6379/0");
    cr_expect_not(doubt("redis.url"));
    partial_done();
}

Test(config, partial_load_of_an_unreadable_directory_is_null)
{
    char missing[400];
    snprintf(missing, sizeof missing, "%s/none", root);
    cfg = config_load_partial(missing, &errs, &doubtful);
    cr_expect_null(cfg);
    cr_expect_null(doubtful);
    cr_expect_eq(errs.count, 1);
}
