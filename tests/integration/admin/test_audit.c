/*
 * The audit log (host/admin/audit.h) with both backends: the JSONL file in
 * a private state_dir, and a real PostgreSQL (tests/support/harness_pg)
 * migrated with the embedded migrations.  The same behaviours are checked
 * against each: newest first, tenant filtering before pagination, cursor
 * continuation, argument errors; plus what only one backend has (ids going
 * on after a restart and the file's mode; drops while PostgreSQL is down).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "admin/audit.h"
#include "harness.h"
#include "harness_pg.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/metrics.h"

static harness_pg_t pg;
static bool pg_started;
static char *tmp;
static evbus_config_t cfg;
static char state_dir[512];

static void file_setup(void)
{
    tmp = harness_tmpdir("audit");
    cr_assert_not_null(tmp);
    snprintf(state_dir, sizeof state_dir, "%s/state", tmp);
    memset(&cfg, 0, sizeof cfg);
    cfg.daemon.state_dir = state_dir;
}

static void pg_setup(void)
{
    file_setup();
    cr_assert_eq(harness_pg_start(&pg), 0, "PostgreSQL did not start (see %s/pg.log)", pg.dir);
    pg_started = true;
    char err[512];
    PGconn *c = store_connect(pg.url, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    cr_assert_eq(store_migrate(c, 0, NULL, NULL, err, sizeof err), 0, "%s", err);
    PQfinish(c);
    cfg.store.postgres_url = pg.url;
}

static void teardown(void)
{
    if (pg_started)
        harness_pg_stop(&pg);
    pg_started = false;
    harness_rmrf(tmp);
    free(tmp);
}

TestSuite(audit_file, .init = file_setup, .fini = teardown, .timeout = 60);
TestSuite(audit_pg, .init = pg_setup, .fini = teardown, .timeout = 120);

static audit_t *start(void)
{
    char err[512];
    audit_t *a = audit_start(&cfg, err, sizeof err);
    cr_assert_not_null(a, "audit_start: %s", err);
    return a;
}

static void put(audit_t *a, const char *tenant, const char *action, const char *target,
                int64_t count)
{
    audit_record_t r = {.token = "oncall", .tenant = tenant, .action = action,
                        .target = target, .count = count, .result = "ok"};
    cr_assert_eq(audit_write(a, &r), 0);
}

/* One page; asserts success. */
static json_t *page(audit_t *a, const char *tenant, size_t limit, const char *cursor,
                    char next[64])
{
    json_t *items;
    char err[512];
    int rc = audit_list(a, tenant, NULL, 0, 0, limit, cursor, &items, next, 64, err, sizeof err);
    cr_assert_eq(rc, 0, "audit_list: %s", err);
    return items;
}

static const char *field(json_t *items, size_t i, const char *key)
{
    return json_string_value(json_object_get(json_array_get(items, i), key));
}

/* ---- the behaviours both backends share --------------------------------- */

static void newest_first_with_every_field(void)
{
    audit_t *a = start();
    int64_t before = clock_wall_ms();
    audit_record_t r = {.token = "oncall", .tenant = "acme", .action = "dlq.retry",
                        .target = "1700000000000-0", .count = 1, .result = "ok",
                        .request_id = "req-1"};
    cr_assert_eq(audit_write(a, &r), 0);
    audit_record_t r2 = {.token = "admin", .action = "reload", .count = -1,
                         .result = "error: 3 config errors"};
    cr_assert_eq(audit_write(a, &r2), 0);
    cr_assert_eq(audit_sync(a, 10000), 0);

    char next[64];
    json_t *items = page(a, NULL, 10, NULL, next);
    cr_assert_eq(json_array_size(items), 2);
    cr_expect_str_eq(next, "");
    /* newest first: the reload, made with a token of every tenant */
    json_t *o = json_array_get(items, 0);
    cr_expect_str_eq(field(items, 0, "action"), "reload");
    cr_expect_str_eq(field(items, 0, "tenant"), "*");
    cr_expect_str_eq(field(items, 0, "result"), "error: 3 config errors");
    cr_expect(json_is_null(json_object_get(o, "target")));
    cr_expect(json_is_null(json_object_get(o, "count")));
    cr_expect(json_is_null(json_object_get(o, "request_id")));
    json_t *p = json_array_get(items, 1);
    cr_expect_str_eq(field(items, 1, "token"), "oncall");
    cr_expect_str_eq(field(items, 1, "tenant"), "acme");
    cr_expect_str_eq(field(items, 1, "target"), "1700000000000-0");
    cr_expect_str_eq(field(items, 1, "request_id"), "req-1");
    cr_expect_eq(json_integer_value(json_object_get(p, "count")), 1);
    cr_expect_gt(json_integer_value(json_object_get(o, "id")),
                 json_integer_value(json_object_get(p, "id")));
    int64_t ts = json_integer_value(json_object_get(p, "ts_ms"));
    cr_expect(ts >= before && ts <= clock_wall_ms(), "ts_ms %lld", (long long)ts);
    char at[CLOCK_RFC3339_LEN];
    cr_expect_str_eq(field(items, 1, "at"), clock_rfc3339(ts, at));
    json_decref(items);
    audit_stop(a);
}

/* 5 records of tenant a, 5 of tenant b and 2 of "*", interleaved: tenant a
 * pages through exactly its own 5, newest first, 2 at a time. */
static void tenant_filter_before_pagination(void)
{
    audit_t *a = start();
    char target[32];
    for (int i = 0; i < 5; i++) {
        snprintf(target, sizeof target, "a-%d", i);
        put(a, "a", "dlq.delete", target, 1);
        snprintf(target, sizeof target, "b-%d", i);
        put(a, "b", "dlq.delete", target, 1);
        if (i % 2 == 0 && i < 4)
            put(a, "*", "reload", NULL, -1);
    }
    cr_assert_eq(audit_sync(a, 10000), 0);

    const char *want[] = {"a-4", "a-3", "a-2", "a-1", "a-0"};
    char next[64] = "", cursor[64] = "";
    size_t seen = 0;
    for (int pg_no = 0; pg_no < 3; pg_no++) {
        json_t *items = page(a, "a", 2, pg_no ? cursor : NULL, next);
        size_t n = json_array_size(items);
        cr_assert_eq(n, pg_no < 2 ? 2u : 1u, "page %d has %zu items", pg_no, n);
        for (size_t i = 0; i < n; i++, seen++) {
            cr_expect_str_eq(field(items, i, "tenant"), "a");
            cr_expect_str_eq(field(items, i, "target"), want[seen]);
        }
        json_decref(items);
        if (pg_no < 2)
            cr_assert_neq(next[0], '\0', "page %d says there is no next page", pg_no);
        else
            cr_expect_str_eq(next, "", "the last page still has a cursor");
        strcpy(cursor, next);
    }
    cr_expect_eq(seen, 5u);

    /* "*" lists only the records of every-tenant tokens; NULL lists all */
    char n2[64];
    json_t *star = page(a, "*", 10, NULL, n2);
    cr_expect_eq(json_array_size(star), 2u);
    json_decref(star);
    json_t *all = page(a, NULL, 100, NULL, n2);
    cr_expect_eq(json_array_size(all), 12u);
    json_decref(all);
    json_t *none = page(a, "c", 10, NULL, n2);
    cr_expect_eq(json_array_size(none), 0u);
    json_decref(none);
    audit_stop(a);
}

static void action_and_time_filters(void)
{
    audit_t *a = start();
    audit_record_t r = {.token = "t", .action = "dlq.retry", .count = 1, .result = "ok",
                        .ts_ms = 1000000};
    cr_assert_eq(audit_write(a, &r), 0);
    r.ts_ms = 2000000;
    cr_assert_eq(audit_write(a, &r), 0);
    r.action = "reload";
    cr_assert_eq(audit_write(a, &r), 0);
    cr_assert_eq(audit_sync(a, 10000), 0);
    json_t *items;
    char next[64], err[256];
    cr_assert_eq(audit_list(a, NULL, "dlq.retry", 0, 0, 10, NULL, &items, next, sizeof next,
                            err, sizeof err), 0, "%s", err);
    cr_expect_eq(json_array_size(items), 2u);
    json_decref(items);
    /* since inclusive, until exclusive */
    cr_assert_eq(audit_list(a, NULL, NULL, 2000000, 0, 10, NULL, &items, next, sizeof next,
                            err, sizeof err), 0, "%s", err);
    cr_expect_eq(json_array_size(items), 2u);
    json_decref(items);
    cr_assert_eq(audit_list(a, NULL, NULL, 1, 2000000, 10, NULL, &items, next, sizeof next,
                            err, sizeof err), 0, "%s", err);
    cr_expect_eq(json_array_size(items), 1u);
    json_decref(items);
    audit_stop(a);
}

static void bad_arguments_are_einval(void)
{
    audit_t *a = start();
    json_t *items;
    char next[64], err[256];
    cr_expect_eq(audit_list(a, NULL, NULL, 0, 0, 0, NULL, &items, next, sizeof next, err,
                            sizeof err), AUDIT_EINVAL);
    cr_expect(strncmp(err, "limit:", 6) == 0, "%s", err);
    cr_expect_eq(audit_list(a, NULL, NULL, 0, 0, AUDIT_LIST_MAX + 1, NULL, &items, next,
                            sizeof next, err, sizeof err), AUDIT_EINVAL);
    const char *forged[] = {"abc", "-1", "0", "12a", "99999999999999999999", "1 "};
    for (size_t i = 0; i < sizeof forged / sizeof *forged; i++) {
        cr_expect_eq(audit_list(a, NULL, NULL, 0, 0, 10, forged[i], &items, next, sizeof next,
                                err, sizeof err), AUDIT_EINVAL, "cursor '%s'", forged[i]);
        cr_expect(strncmp(err, "cursor:", 7) == 0, "%s", err);
    }
    cr_expect_eq(audit_list(a, NULL, NULL, 5, 5, 10, NULL, &items, next, sizeof next, err,
                            sizeof err), AUDIT_EINVAL);
    /* a record missing a required field is refused, and counted */
    uint64_t dropped = METRIC_GET(audit_dropped);
    audit_record_t r = {.token = "t", .action = "x"};
    cr_expect_eq(audit_write(a, &r), -1);
    cr_expect_eq(METRIC_GET(audit_dropped), dropped + 1);
    audit_stop(a);
}

Test(audit_file, lists_newest_first_with_every_field) { newest_first_with_every_field(); }
Test(audit_pg, lists_newest_first_with_every_field) { newest_first_with_every_field(); }
Test(audit_file, filters_by_tenant_before_pagination) { tenant_filter_before_pagination(); }
Test(audit_pg, filters_by_tenant_before_pagination) { tenant_filter_before_pagination(); }
Test(audit_file, filters_by_action_and_time) { action_and_time_filters(); }
Test(audit_pg, filters_by_action_and_time) { action_and_time_filters(); }
Test(audit_file, refuses_bad_limits_and_forged_cursors) { bad_arguments_are_einval(); }
Test(audit_pg, refuses_bad_limits_and_forged_cursors) { bad_arguments_are_einval(); }

/* ---- what one backend has ------------------------------------------------ */

Test(audit_file, is_private_and_ids_go_on_after_a_restart)
{
    audit_t *a = start();
    cr_expect_str_eq(audit_where(a), strcat(strcpy((char[600]){0}, state_dir), "/admin-audit.jsonl"));
    put(a, "a", "dlq.retry", "x", 1);
    put(a, "a", "dlq.retry", "y", 1);
    audit_stop(a); /* flushes */
    char path[600];
    snprintf(path, sizeof path, "%s/admin-audit.jsonl", state_dir);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
    cr_assert_eq(stat(state_dir, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0700, "state_dir mode %o", st.st_mode & 0777);
    cr_expect_eq(harness_count_lines(path), 2u);
    /* a torn last line (a crash mid-write) is skipped, and not continued */
    FILE *f = fopen(path, "a");
    fputs("{\"id\":99,\"tok", f);
    fclose(f);

    a = start();
    put(a, "a", "dlq.retry", "z", 1);
    cr_assert_eq(audit_sync(a, 10000), 0);
    char next[64];
    json_t *items = page(a, NULL, 10, NULL, next);
    cr_assert_eq(json_array_size(items), 3u);
    cr_expect_str_eq(field(items, 0, "target"), "z");
    cr_expect_eq(json_integer_value(json_object_get(json_array_get(items, 0), "id")), 3);
    json_decref(items);
    audit_stop(a);
}

Test(audit_file, rotation_by_rename_starts_a_new_file)
{
    audit_t *a = start();
    put(a, "a", "dlq.retry", "old", 1);
    cr_assert_eq(audit_sync(a, 10000), 0);
    char path[600], old[610];
    snprintf(path, sizeof path, "%s/admin-audit.jsonl", state_dir);
    snprintf(old, sizeof old, "%s.1", path);
    cr_assert_eq(rename(path, old), 0);
    put(a, "a", "dlq.retry", "new", 1);
    cr_assert_eq(audit_sync(a, 10000), 0);
    cr_expect_eq(harness_count_lines(path), 1u);
    cr_expect_eq(harness_count_lines(old), 1u);
    audit_stop(a);
}

Test(audit_file, strings_that_are_not_utf8_are_kept_as_json)
{
    audit_t *a = start();
    put(a, "a", "dlq.retry", "id-\xff\xfe-\"quoted\"\n", 1);
    cr_assert_eq(audit_sync(a, 10000), 0);
    char next[64];
    json_t *items = page(a, NULL, 10, NULL, next);
    cr_assert_eq(json_array_size(items), 1u);
    cr_expect_str_eq(field(items, 0, "target"), "id-?" "?-\"quoted\"\n");
    json_decref(items);
    audit_stop(a);
}

/* PostgreSQL down: writing never waits, the queue fills, the rest is
 * dropped and counted, and stop gives up within its bound. */
Test(audit_pg, a_dead_server_drops_and_counts_without_blocking)
{
    char url[128];
    snprintf(url, sizeof url, "postgresql://postgres@127.0.0.1:%d/postgres", harness_free_port());
    cfg.store.postgres_url = url;
    audit_t *a = start();
    cr_expect_str_eq(audit_where(a), "postgres");
    uint64_t dropped = METRIC_GET(audit_dropped), written = METRIC_GET(audit_written);
    int64_t t0 = clock_mono_ms();
    int total = AUDIT_QUEUE_CAP + 1000, refused = 0;
    for (int i = 0; i < total; i++) {
        audit_record_t r = {.token = "t", .action = "dlq.retry", .count = 1, .result = "ok"};
        refused += audit_write(a, &r) != 0;
    }
    cr_expect_lt(clock_mono_ms() - t0, 1000, "writing %d records took %lld ms", total,
                 (long long)(clock_mono_ms() - t0));
    cr_expect_geq(refused, 1000 - AUDIT_BATCH_MAX);
    cr_expect_eq(METRIC_GET(audit_dropped) - dropped, (uint64_t)refused);
    t0 = clock_mono_ms();
    audit_stop(a);
    cr_expect_lt(clock_mono_ms() - t0, AUDIT_STOP_TIMEOUT_MS + 3000);
    cr_expect_eq(METRIC_GET(audit_dropped) - dropped, (uint64_t)total);
    cr_expect_eq(METRIC_GET(audit_written), written);
}

Test(audit_pg, reads_what_another_host_wrote_and_counts_written)
{
    uint64_t written = METRIC_GET(audit_written);
    audit_t *a = start();
    put(a, "acme", "dlq.redrive", "{\"type\":\"order.*\"}", 12);
    cr_assert_eq(audit_sync(a, 10000), 0);
    cr_expect_eq(METRIC_GET(audit_written), written + 1);
    audit_stop(a);
    /* a second audit log on the same database (another host, a restart) */
    a = start();
    char next[64];
    json_t *items = page(a, "acme", 10, NULL, next);
    cr_assert_eq(json_array_size(items), 1u);
    cr_expect_str_eq(field(items, 0, "target"), "{\"type\":\"order.*\"}");
    json_decref(items);
    audit_stop(a);
}
