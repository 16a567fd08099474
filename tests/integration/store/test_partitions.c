/*
 * events partitioned by day (migration 0006): converting a populated
 * table, partitions created ahead, retention dropping whole days and
 * nothing else, and reads and writer upserts across partitions.
 *
 * Rows get explicit times through their stream ids ("<ms>-<seq>"), which
 * is what places a row (its created_at) since 0006.
 */
#include "fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DAY_MS INT64_C(86400000)

TestSuite(partitions, .init = fx_pg_migrated, .fini = fx_teardown, .timeout = 180);

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "events_pYYYYMMDD" of the UTC day holding ms. */
static const char *part_of(int64_t ms, char *out, size_t len)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(out, len, "events_p%Y%m%d", &tm);
    return out;
}

static bool has_partition(PGconn *c, const char *name)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass AND "
             "inhrelid::regclass::text = '%s'",
             name);
    return fx_count(c, sql) == 1;
}

/* The partition the row of id lives in, malloc'd (NULL: no row). */
static char *where_is(PGconn *c, const char *id)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT tableoid::regclass::text FROM events WHERE id = '%s'", id);
    return fx_scalar(c, sql);
}

/* Publishes (PENDING) one event whose stream id says it was added at ms. */
static void publish_at(PGconn *c, const char *id, int64_t ms)
{
    char sid[32], err[512];
    snprintf(sid, sizeof sid, "%lld-0", (long long)ms);
    store_update_t u = {.id = id, .type = "order.created", .tenant = "acme", .stream_id = sid,
                        .status = STORE_PENDING, .timestamp_ms = ms};
    cr_assert_eq(store_record_published(c, &u, 1, err, sizeof err), 1, "%s: %s", id, err);
}

static void create_partition(PGconn *c, int64_t ms)
{
    char sql[128], day[16];
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(day, sizeof day, "%Y-%m-%d", &tm);
    snprintf(sql, sizeof sql, "SELECT evbus_events_partition_create('%s')", day);
    free(fx_scalar(c, sql));
}

static store_upkeep_t upkeep(PGconn *c, uint32_t retention_s, uint32_t ahead, int64_t now)
{
    store_retention_t r = {.retention_s = retention_s, .partitions_ahead = ahead};
    store_upkeep_t up;
    char err[512];
    cr_assert_eq(store_events_upkeep(c, &r, now, &up, err, sizeof err), 0, "%s", err);
    return up;
}

Test(partitions_migration, converts_a_populated_table_into_day_partitions, .init = fx_pg_only,
     .fini = fx_teardown, .timeout = 180)
{
    PGconn *c = fx_connect();
    char err[512];
    size_t upto0005 = 0;
    while (upto0005 < store_migrations_count && store_migrations[upto0005].version <= 5)
        upto0005++;
    cr_assert_eq(upto0005, 5);
    cr_assert_eq(store_migrate_list(c, store_migrations, upto0005, 0, NULL, NULL, err,
                                    sizeof err),
                 0, "%s", err);
    cr_assert_eq(fx_count(c, "SELECT count(*) FROM pg_class WHERE relname = 'events' AND "
                             "relkind = 'r'"),
                 1, "0005 should leave a plain table");
    /* the pre-0006 writer's rows: created_at is the first status seen, a
     * moment after the stream id's time; one row has no stream id */
    cr_assert_eq(
        fx_count(c,
                 "WITH ins AS (INSERT INTO events (id, type, tenant, stream_id, status, "
                 "attempts, handler_outcomes, status_at, created_at, completed_at) VALUES "
                 "('old-1', 't', 'acme', '1714557600000-0', 'COMPLETED', 2, '{\"h\":\"ok\"}', "
                 " '2024-05-01 10:00:02+00', '2024-05-01 10:00:00.250+00', "
                 " '2024-05-01 10:00:02+00'),"
                 "('old-2', 't', 'acme', '1714780799999-3', 'RETRYING', 1, NULL, "
                 " '2024-05-04 00:00:01+00', '2024-05-04 00:00:00.500+00', NULL),"
                 "('old-3', 't', 'beta', NULL, 'PENDING', 0, NULL, "
                 " '2024-05-02 08:00:00+00', '2024-05-02 08:00:00+00', NULL),"
                 "('old-4', 't', 'beta', 'not-a-stream-id', 'DEAD_LETTERED', 5, NULL, "
                 " '2024-05-02 09:00:00+00', '2024-05-02 09:00:00+00', "
                 " '2024-05-02 09:00:00+00') RETURNING 1) SELECT count(*) FROM ins"),
        4);

    cr_assert_eq(store_migrate(c, 0, NULL, NULL, err, sizeof err), 0, "%s", err);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM pg_class WHERE relname = 'events' AND "
                             "relkind = 'p'"),
                 1, "events is not partitioned");
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM pg_class WHERE relname = 'events_pre0006'"),
                 0);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events"), 4);
    /* each row in its day's partition; created_at re-anchored on the stream
     * id (old-2's stream id is from the day before its first status) */
    char *p1 = where_is(c, "old-1"), *p2 = where_is(c, "old-2"), *p3 = where_is(c, "old-3"),
         *p4 = where_is(c, "old-4");
    cr_expect_str_eq(p1, "events_p20240501");
    cr_expect_str_eq(p2, "events_p20240503");
    cr_expect_str_eq(p3, "events_p20240502");
    cr_expect_str_eq(p4, "events_p20240502");
    free(p1);
    free(p2);
    free(p3);
    free(p4);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE id = 'old-1' AND created_at = "
                             "'2024-05-01 10:00:00+00' AND status = 'COMPLETED' AND attempts "
                             "= 2 AND handler_outcomes->>'h' = 'ok' AND completed_at = "
                             "'2024-05-01 10:00:02+00'"),
                 1);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE id = 'old-2' AND created_at = "
                             "'2024-05-03 23:59:59.999+00'"),
                 1);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE id = 'old-3' AND created_at = "
                             "'2024-05-02 08:00:00+00'"),
                 1);
    /* today and the next three days exist for the writer */
    char name[32];
    int64_t now = now_ms();
    for (int k = 0; k <= 3; k++)
        cr_expect(has_partition(c, part_of(now + k * DAY_MS, name, sizeof name)), "%s", name);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events_default"), 0);
    /* the indexes the reads and the upsert need came along */
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM pg_indexes WHERE tablename = 'events' AND "
                             "indexname IN ('events_pkey', 'events_tenant_created', "
                             "'events_status_open', 'events_created_brin')"),
                 4);

    /* the writer meets the converted rows: with the stream id, and without */
    store_writer_t *w = store_writer_start(&fx_cfg);
    cr_assert_not_null(w);
    store_update_t u = {.id = "old-2", .stream_id = "1714780799999-3",
                        .status = STORE_COMPLETED, .attempts = 2, .timestamp_ms = now};
    cr_assert_eq(store_writer_submit(w, &u), 0);
    u = (store_update_t){.id = "old-3", .status = STORE_PROCESSING, .attempts = 1,
                         .timestamp_ms = now};
    cr_assert_eq(store_writer_submit(w, &u), 0);
    store_writer_stop(w, 5000);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events"), 4, "an update made a second row");
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE id = 'old-2' AND status = "
                             "'COMPLETED' AND attempts = 2 AND completed_at IS NOT NULL"),
                 1);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE id = 'old-3' AND status = "
                             "'PROCESSING' AND created_at = '2024-05-02 08:00:00+00'"),
                 1);
    PQfinish(c);
}

Test(partitions, upkeep_creates_partitions_ahead_and_takes_in_waiting_rows)
{
    PGconn *c = fx_connect();
    int64_t now = now_ms();
    char name[32];
    /* an event stamped ten days ahead (a skewed clock) waits in the default
     * partition until its day gets one */
    publish_at(c, "early", now + 10 * DAY_MS);
    char *at = where_is(c, "early");
    cr_expect_str_eq(at, "events_default");
    free(at);
    cr_expect(!has_partition(c, part_of(now + 10 * DAY_MS, name, sizeof name)));

    int missing = 0;
    for (int k = 0; k <= 12; k++)
        missing += !has_partition(c, part_of(now + k * DAY_MS, name, sizeof name));
    cr_expect_geq(missing, 9, "the migration creates today and 3 days ahead only");
    store_upkeep_t up = upkeep(c, 0, 12, now);
    cr_expect(!up.skipped);
    cr_expect_eq(up.created, missing);
    for (int k = 0; k <= 12; k++)
        cr_expect(has_partition(c, part_of(now + k * DAY_MS, name, sizeof name)), "%s", name);
    cr_expect(!has_partition(c, part_of(now + 13 * DAY_MS, name, sizeof name)));
    at = where_is(c, "early");
    cr_expect_str_eq(at, part_of(now + 10 * DAY_MS, name, sizeof name));
    free(at);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events_default"), 0);

    up = upkeep(c, 0, 12, now);
    cr_expect_eq(up.created, 0, "a second round created %d", up.created);
    cr_expect_eq(up.dropped, 0);
    PQfinish(c);
}

Test(partitions, upkeep_of_another_host_in_progress_is_skipped)
{
    PGconn *a = fx_connect(), *b = fx_connect();
    PQclear(PQexec(a, "BEGIN"));
    char *got = fx_scalar(a, "SELECT pg_try_advisory_xact_lock(435509404772)::text");
    cr_assert_str_eq(got, "true");
    free(got);
    store_upkeep_t up = upkeep(b, 0, 20, now_ms());
    cr_expect(up.skipped);
    cr_expect_eq(up.created, 0);
    PQclear(PQexec(a, "ROLLBACK"));
    up = upkeep(b, 0, 20, now_ms());
    cr_expect(!up.skipped);
    cr_expect_gt(up.created, 0);
    PQfinish(a);
    PQfinish(b);
}

Test(partitions, retention_drops_the_days_older_than_it_and_nothing_else)
{
    PGconn *c = fx_connect();
    int64_t now = now_ms();
    char id[32], name[32];
    /* one event on each of the last ten days, each day with its partition,
     * and a stray 40 days old in the default partition */
    for (int k = 0; k < 10; k++) {
        create_partition(c, now - k * DAY_MS);
        snprintf(id, sizeof id, "day-%d", k);
        publish_at(c, id, now - k * DAY_MS);
    }
    publish_at(c, "stray", now - 40 * DAY_MS);
    cr_assert_eq(fx_count(c, "SELECT count(*) FROM events"), 11);

    /* 3 days: a partition goes once its whole day is more than 3 days old,
     * so days 4..9 go and day 3 (partly younger than 3 days) stays */
    store_upkeep_t up = upkeep(c, 3 * 86400, 3, now);
    cr_expect_eq(up.dropped, 6);
    for (int k = 0; k < 10; k++) {
        snprintf(id, sizeof id, "day-%d", k);
        char *at = where_is(c, id);
        if (k <= 3)
            cr_expect_str_eq(at, part_of(now - k * DAY_MS, name, sizeof name), "%s", id);
        else
            cr_expect_null(at, "%s survived in %s", id, at);
        free(at);
        cr_expect_eq(has_partition(c, part_of(now - k * DAY_MS, name, sizeof name)), k <= 3,
                     "%s", name);
    }
    cr_expect_null(where_is(c, "stray"));
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events"), 4);
    /* what went is recorded: six days and the stray */
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events_expired WHERE partition LIKE "
                             "'events_p%' AND retention_s = 259200"),
                 6);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events_expired WHERE partition = "
                             "'events_default' AND rows_estimate = 1"),
                 1);
    json_t *exp = NULL;
    char err[512];
    cr_assert_eq(store_events_expired(c, &exp, err, sizeof err), 0, "%s", err);
    cr_assert_not_null(exp);
    cr_expect_eq(json_integer_value(json_object_get(exp, "retention_s")), 259200);
    int64_t before = 0;
    cr_expect_eq(store_parse_rfc3339(json_string_value(json_object_get(exp, "before")), &before),
                 0);
    cr_expect_eq(before, now - 3 * 86400 * INT64_C(1000), "before = the cutoff");
    json_decref(exp);

    /* a second round with the same clock finds nothing more to drop */
    cr_expect_eq(upkeep(c, 3 * 86400, 3, now).dropped, 0);
    /* retention 0 keeps everything, however old */
    cr_expect_eq(upkeep(c, 0, 3, now + 365 * DAY_MS).dropped, 0);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events"), 4);
    PQfinish(c);
}

Test(partitions, reads_and_writer_upserts_keep_working_after_a_drop)
{
    PGconn *c = fx_connect();
    int64_t now = now_ms();
    char id[32], sid[32], err[512];
    for (int k = 0; k < 6; k++) {
        create_partition(c, now - k * DAY_MS);
        snprintf(id, sizeof id, "r-%d", k);
        publish_at(c, id, now - k * DAY_MS);
    }
    cr_assert_eq(upkeep(c, 2 * 86400, 3, now).dropped, 3);

    json_t *row = NULL;
    cr_assert_eq(store_events_get(c, "r-1", &row, err, sizeof err), 0, "%s", err);
    cr_expect_not_null(row);
    json_decref(row);
    cr_assert_eq(store_events_get(c, "r-5", &row, err, sizeof err), 0, "%s", err);
    cr_expect_null(row, "a dropped event is still found");
    store_event_filter_t f = {.tenant = "acme", .status = -1};
    json_t *list = NULL;
    cr_assert_eq(store_events_list(c, &f, &list, err, sizeof err), 0, "%s", err);
    cr_expect_eq(json_array_size(list), 3);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(list, 0), "id")), "r-0");
    json_decref(list);
    f = (store_event_filter_t){.status = STORE_PENDING, .since_ms = now - DAY_MS - 1000};
    cr_assert_eq(store_events_list(c, &f, &list, err, sizeof err), 0, "%s", err);
    cr_expect_eq(json_array_size(list), 2);
    json_decref(list);

    /* statuses of a kept event two days old, and a new event of today */
    store_writer_t *w = store_writer_start(&fx_cfg);
    cr_assert_not_null(w);
    snprintf(sid, sizeof sid, "%lld-0", (long long)(now - 2 * DAY_MS));
    store_update_t u = {.id = "r-2", .stream_id = sid, .status = STORE_PROCESSING,
                        .attempts = 1, .timestamp_ms = now};
    cr_assert_eq(store_writer_submit(w, &u), 0);
    u.status = STORE_COMPLETED;
    u.timestamp_ms = now + 5;
    u.handler_outcomes_json = "{\"h\":\"ok\"}";
    cr_assert_eq(store_writer_submit(w, &u), 0);
    snprintf(sid, sizeof sid, "%lld-7", (long long)now);
    u = (store_update_t){.id = "fresh", .stream_id = sid, .status = STORE_COMPLETED,
                         .attempts = 1, .timestamp_ms = now + 9};
    cr_assert_eq(store_writer_submit(w, &u), 0);
    store_writer_stop(w, 5000);
    char name[32];
    char *at = where_is(c, "r-2");
    cr_expect_str_eq(at, part_of(now - 2 * DAY_MS, name, sizeof name));
    free(at);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE id = 'r-2' AND status = "
                             "'COMPLETED' AND handler_outcomes->>'h' = 'ok'"),
                 1);
    at = where_is(c, "fresh");
    cr_expect_str_eq(at, part_of(now, name, sizeof name));
    free(at);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE id = 'fresh' AND created_at = "
                             "evbus_stream_time(stream_id) AND status_at > created_at"),
                 1, "a new row's created_at is its stream id's time");
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events"), 4);
    PQfinish(c);
}

/* The consumer reports every status with the event's original stream id:
 * an update days later meets the row in that day's partition. */
Test(partitions, an_update_days_later_finds_the_row_of_its_stream_id_day)
{
    PGconn *c = fx_connect();
    int64_t now = now_ms(), then = now - 5 * DAY_MS;
    create_partition(c, then);
    publish_at(c, "late", then);
    store_writer_t *w = store_writer_start(&fx_cfg);
    cr_assert_not_null(w);
    char sid[32];
    snprintf(sid, sizeof sid, "%lld-0", (long long)then);
    store_update_t u = {.id = "late", .stream_id = sid, .status = STORE_RETRYING,
                        .attempts = 1, .timestamp_ms = now};
    cr_assert_eq(store_writer_submit(w, &u), 0);
    cr_assert(fx_wait_count(c, "SELECT count(*) FROM events WHERE status = 'RETRYING'", 1,
                            10000));
    /* and one without a stream id is looked up */
    u = (store_update_t){.id = "late", .status = STORE_DEAD_LETTERED, .attempts = 3,
                         .timestamp_ms = now + 1000};
    cr_assert_eq(store_writer_submit(w, &u), 0);
    store_writer_stop(w, 5000);
    char name[32];
    char *at = where_is(c, "late");
    cr_expect_str_eq(at, part_of(then, name, sizeof name));
    free(at);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE id = 'late'"), 1);
    cr_expect_eq(fx_count(c, "SELECT attempts FROM events WHERE id = 'late' AND status = "
                             "'DEAD_LETTERED'"),
                 3);
    PQfinish(c);
}

/* The same id added to the stream again (a new stream id) starts a second
 * row; show reads the newest. */
Test(partitions, an_id_published_again_has_a_row_per_stream_id_and_get_reads_the_newest)
{
    PGconn *c = fx_connect();
    int64_t now = now_ms();
    publish_at(c, "twice", now - 1000);
    publish_at(c, "twice", now);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE id = 'twice'"), 2);
    json_t *row = NULL;
    char err[512], sid[32];
    cr_assert_eq(store_events_get(c, "twice", &row, err, sizeof err), 0, "%s", err);
    snprintf(sid, sizeof sid, "%lld-0", (long long)now);
    cr_expect_str_eq(json_string_value(json_object_get(row, "stream_id")), sid);
    json_decref(row);
    PQfinish(c);
}

Test(partitions, the_writer_keeps_partitions_ahead_and_applies_a_new_retention_live)
{
    PGconn *c = fx_connect();
    int64_t now = now_ms();
    char name[32];
    create_partition(c, now - 3 * DAY_MS);
    publish_at(c, "three-days", now - 3 * DAY_MS);
    fx_cfg.store.metadata_partitions_ahead = 6;
    fx_cfg.store.metadata_retention_ms = 30ull * 86400000;
    store_writer_t *w = store_writer_start(&fx_cfg);
    cr_assert_not_null(w);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_class WHERE relname = '%s'",
             part_of(now + 6 * DAY_MS, name, sizeof name));
    cr_expect(fx_wait_count(c, sql, 1, 10000), "%s was not created at start", name);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE id = 'three-days'"), 1);

    /* a reload: more days ahead, and a retention the event is older than */
    fx_cfg.store.metadata_partitions_ahead = 8;
    fx_cfg.store.metadata_retention_ms = 86400000;
    store_writer_configure(w, &fx_cfg);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_class WHERE relname = '%s'",
             part_of(now + 8 * DAY_MS, name, sizeof name));
    cr_expect(fx_wait_count(c, sql, 1, 10000), "%s was not created after the reload", name);
    cr_expect(fx_wait_count(c, "SELECT count(*) FROM events_expired", 1, 10000));
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE id = 'three-days'"), 0);
    store_writer_stop(w, 5000);
    PQfinish(c);
}
