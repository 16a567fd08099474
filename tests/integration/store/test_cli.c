/*
 * evbusctl migrate / events / replay against a real PostgreSQL: output,
 * --json, and the exit codes (0 ok, 1 failed, 2 usage).
 */
#include "fixture.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

TestSuite(cli, .init = fx_pg_redis, .fini = fx_teardown, .timeout = 120);

/* Runs evbusctl --postgres URL args...; returns the exit status. */
static int ctl(char **out, char **err, const char *url, const char *a1, const char *a2,
               const char *a3, const char *a4, const char *a5, const char *a6)
{
    char *bin = harness_build_path("host/ctl/evbusctl");
    const char *argv[] = {bin, "--postgres", url, a1, a2, a3, a4, a5, a6, NULL};
    int rc = harness_run((char *const *)argv, NULL, NULL, out, err, 60000);
    free(bin);
    return rc;
}

Test(cli, migrate_up_then_status_json_shows_nothing_pending)
{
    char *out = NULL, *err = NULL;
    cr_assert_eq(ctl(&out, &err, fx_pg.url, "migrate", "up", NULL, NULL, NULL, NULL), 0, "%s",
                 err);
    cr_expect(strstr(out, "schema up to date") != NULL, "%s", out);
    free(out);
    free(err);
    cr_assert_eq(ctl(&out, &err, fx_pg.url, "migrate", "status", "--json", NULL, NULL, NULL), 0);
    json_t *o = json_loads(out, 0, NULL);
    cr_assert_not_null(o, "not JSON: %s", out);
    cr_expect_eq(json_integer_value(json_object_get(o, "pending")), 0);
    cr_expect_eq(json_array_size(json_object_get(o, "migrations")), store_migrations_count);
    json_decref(o);
    free(out);
    free(err);
}

Test(cli, replay_validation_errors_exit_2_naming_the_flag)
{
    struct {
        const char *a[4];
        const char *flag;
    } cases[] = {
        {{"--from", "2024-05-01T10:00:00Z", "--to", "2024-05-01T09:00:00Z"}, "--from"},
        {{"--from", "yesterday", "--to", "2024-05-01T09:00:00Z"}, "--from"},
        {{"--from", "2024-05-01T10:00:00Z", "--to", "2024-09-01T09:00:00Z"}, "--to"},
        {{"--from=2024-05-01T10:00:00Z", "--to=2024-05-01T11:00:00Z", "--rate", "0"}, "--rate"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *out = NULL, *err = NULL;
        int rc = ctl(&out, &err, fx_pg.url, "replay", "start", cases[i].a[0], cases[i].a[1],
                     cases[i].a[2], cases[i].a[3]);
        cr_expect_eq(rc, 2, "case %zu exited %d", i, rc);
        cr_expect(strstr(err, cases[i].flag) != NULL, "case %zu: %s", i, err);
        free(out);
        free(err);
    }
    char *out = NULL, *err = NULL;
    cr_expect_eq(ctl(&out, &err, fx_pg.url, "replay", "start", "--from", "2024-05-01T10:00:00Z",
                     "--type", "Order..x"),
                 2);
    free(out);
    free(err);
}

Test(cli, replay_start_status_cancel)
{
    char *out = NULL, *err = NULL;
    cr_assert_eq(ctl(&out, &err, fx_pg.url, "replay", "start", "--from", "2024-05-01T10:00:00Z",
                     "--to", "2024-05-01T12:00:00+01:00"),
                 0, "%s", err);
    char id[64];
    cr_assert_eq(sscanf(out, "%63s", id), 1);
    cr_expect_eq(strlen(id), 36, "not a uuid: %s", out);
    free(out);
    free(err);
    cr_assert_eq(ctl(&out, &err, fx_pg.url, "replay", "status", id, "--json", NULL, NULL), 0);
    json_t *job = json_loads(out, 0, NULL);
    cr_assert_not_null(job, "%s", out);
    cr_expect_str_eq(json_string_value(json_object_get(job, "status")), "pending");
    cr_expect_str_eq(json_string_value(json_object_get(job, "to_ts")),
                     "2024-05-01T11:00:00+00:00");
    json_decref(job);
    free(out);
    free(err);
    cr_expect_eq(ctl(&out, &err, fx_pg.url, "replay", "cancel", id, NULL, NULL, NULL), 0);
    free(out);
    free(err);
    cr_expect_eq(ctl(&out, &err, fx_pg.url, "replay", "cancel", id, NULL, NULL, NULL), 1);
    cr_expect(strstr(err, "already cancelled") != NULL, "%s", err);
    free(out);
    free(err);
}

static int ok_dispatch(void *ud, const char *job, unsigned partition, const char *sid,
                       const char *raw, size_t len)
{
    (void)ud, (void)job, (void)partition, (void)sid, (void)raw, (void)len;
    return 0;
}

Test(cli, replay_start_wait_follows_the_job_to_completion)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    redisReply *rep = redisCommand(r, "XADD evbus:events 1714557600000-0 event %s",
                                   "{\"id\":\"a\",\"type\":\"order.created\",\"tenantid\":\"t\"}");
    freeReplyObject(rep);
    redisFree(r);
    store_replay_worker_t *w = store_replay_worker_start(&fx_cfg, ok_dispatch, NULL);
    cr_assert_not_null(w);
    char *out = NULL, *err = NULL;
    char *bin = harness_build_path("host/ctl/evbusctl");
    const char *argv[] = {bin, "--postgres", fx_pg.url, "replay", "start", "--from",
                          "2024-05-01T10:00:00Z", "--to", "2024-05-01T11:00:00Z", "--wait",
                          "--json", NULL};
    int rc = harness_run((char *const *)argv, NULL, NULL, &out, &err, 60000);
    free(bin);
    store_replay_worker_stop(w);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, err);
    json_t *job = json_loads(out, 0, NULL);
    cr_assert_not_null(job, "%s", out);
    cr_expect_str_eq(json_string_value(json_object_get(job, "status")), "completed");
    cr_expect_eq(json_integer_value(json_object_get(job, "processed")), 1);
    json_decref(job);
    free(out);
    free(err);
}

Test(cli, unreachable_database_exits_1_with_the_libpq_message)
{
    char *out = NULL, *err = NULL;
    int rc = ctl(&out, &err, "postgresql://postgres@127.0.0.1:1/postgres", "events", "list",
                 NULL, NULL, NULL, NULL);
    cr_expect_eq(rc, 1);
    cr_expect(strstr(err, "Connection refused") != NULL, "%s", err);
    free(out);
    free(err);
    cr_expect_eq(ctl(&out, &err, fx_pg.url, "events", "show", "missing", NULL, NULL, NULL), 1);
    free(out);
    free(err);
    cr_expect_eq(ctl(&out, &err, fx_pg.url, "events", "list", "--limit", "5000", NULL, NULL), 2);
    free(out);
    free(err);
}

/* evbusctl loads libpq when a command first needs it (host/store/pq_lazy.c):
 * one that cannot be loaded is a clear failure, exit 1, and commands that
 * need no database do not care. */
Test(cli, libpq_that_cannot_be_loaded_is_reported)
{
    char *bin = harness_build_path("host/ctl/evbusctl");
    char env[] = "EVBUS_LIBPQ=/nonexistent/libpq.so.5";
    char *envp[] = {env, NULL};
    const char *argv[] = {bin, "--postgres", fx_pg.url, "events", "list", NULL};
    char *out = NULL, *err = NULL;
    int rc = harness_run((char *const *)argv, envp, NULL, &out, &err, 60000);
    cr_expect_eq(rc, 1, "stderr: %s", err);
    cr_expect(strstr(err, "cannot load libpq: /nonexistent/libpq.so.5") != NULL, "stderr: %s",
              err);
    free(out);
    free(err);
    const char *help[] = {bin, "events", "--help", NULL};
    rc = harness_run((char *const *)help, envp, NULL, &out, &err, 60000);
    cr_expect_eq(rc, 0, "stderr: %s", err);
    free(out);
    free(err);
    free(bin);
}

/* An id that is not found after retention dropped metadata: the id alone
 * does not tell its age, so show says what expired, and still exits 1. */
Test(cli, show_of_an_id_gone_with_an_expired_day_says_metadata_expired)
{
    char *out = NULL, *err = NULL;
    cr_expect_eq(ctl(&out, &err, fx_pg.url, "events", "show", "gone", NULL, NULL, NULL), 1);
    cr_expect_str_eq(err, "evbusctl events: no event gone\n");
    free(out);
    free(err);

    PGconn *c = fx_connect();
    int64_t now = (int64_t)time(NULL) * 1000, old = now - 5 * INT64_C(86400000);
    char sid[32], sql[128], day[16];
    time_t s = (time_t)(old / 1000);
    struct tm tm_old;
    strftime(day, sizeof day, "%Y-%m-%d", gmtime_r(&s, &tm_old));
    snprintf(sql, sizeof sql, "SELECT evbus_events_partition_create('%s')", day);
    free(fx_scalar(c, sql));
    snprintf(sid, sizeof sid, "%lld-0", (long long)old);
    store_update_t u = {.id = "gone", .stream_id = sid, .status = STORE_PENDING,
                        .timestamp_ms = old};
    char msg[512];
    cr_assert_eq(store_record_published(c, &u, 1, msg, sizeof msg), 1, "%s", msg);
    cr_expect_eq(ctl(&out, &err, fx_pg.url, "events", "show", "gone", NULL, NULL, NULL), 0,
                 "%s", err);
    free(out);
    free(err);

    store_retention_t r = {.retention_s = 2 * 86400, .partitions_ahead = 1};
    store_upkeep_t up;
    cr_assert_eq(store_events_upkeep(c, &r, now, &up, msg, sizeof msg), 0, "%s", msg);
    cr_assert_eq(up.dropped, 1);
    PQfinish(c);
    /* before: the end of the newest day dropped, the day after `old` */
    char want[160];
    time_t end = (s / 86400 + 1) * 86400;
    struct tm tm;
    strftime(want, sizeof want, "evbusctl events: no event gone; metadata created before "
             "%Y-%m-%dT00:00:00+00:00 has expired (retention 2d)\n", gmtime_r(&end, &tm));
    for (int json = 0; json < 2; json++) {
        cr_expect_eq(ctl(&out, &err, fx_pg.url, "events", "show", "gone", json ? "--json" : NULL,
                         NULL, NULL),
                     1);
        cr_expect_str_eq(err, want);
        free(out);
        free(err);
    }
}

/* ------------------------------------------------ dlq delete / purge */

/* evbusctl --postgres PG --redis REDIS args... (NULL-terminated). */
static int ctl_dlq(char **out, char **err, ...)
{
    char *bin = harness_build_path("host/ctl/evbusctl");
    const char *argv[24] = {bin, "--postgres", fx_pg.url, "--redis", fx_redis.url};
    int n = 5;
    va_list ap;
    va_start(ap, err);
    for (const char *a; n < 23 && (a = va_arg(ap, const char *));)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    int rc = harness_run((char *const *)argv, NULL, NULL, out, err, 60000);
    free(bin);
    return rc;
}

/* A metadata row and, with a DLQ entry, its dead letter (replay_job when
 * job is not NULL); the DLQ id goes to dlq_id. */
static void dead_event(PGconn *pg, redisContext *r, const char *id, const char *tenant,
                       const char *status, const char *job, char dlq_id[32])
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO events (id, type, tenant, status, status_at, completed_at) VALUES "
             "('%s', 'order.failed', '%s', '%s', now() - interval '1 hour', now())",
             id, tenant, status);
    PQclear(PQexec(pg, sql));
    redisReply *x = job ? redisCommand(r,
                                       "XADD evbus:events:dlq * event {} stream evbus:events "
                                       "id 1-1 event_id %s type order.failed tenant %s reason "
                                       "reject handlers [] replay_job %s",
                                       id, tenant, job)
                        : redisCommand(r,
                                       "XADD evbus:events:dlq * event {} stream evbus:events "
                                       "id 1-1 event_id %s type order.failed tenant %s reason "
                                       "reject handlers []",
                                       id, tenant);
    cr_assert(x && x->type == REDIS_REPLY_STRING);
    snprintf(dlq_id, 32, "%s", x->str);
    freeReplyObject(x);
}

static char *status_of(PGconn *pg, const char *id)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT status FROM events WHERE id = '%s'", id);
    return fx_scalar(pg, sql);
}

#define EXPECT_STATUS(pg, id, want)                                                          \
    do {                                                                                     \
        char *st_ = status_of(pg, id);                                                       \
        cr_expect(st_ && strcmp(st_, want) == 0, "%s: %s, want %s", id, st_, want);          \
        free(st_);                                                                           \
    } while (0)

Test(cli, dlq_purge_archives_and_marks_the_events_purged)
{
    PGconn *pg = fx_connect();
    redisContext *r = harness_redis_connect(&fx_redis);
    char id[32];
    dead_event(pg, r, "a-1", "a", "DEAD_LETTERED", NULL, id);
    dead_event(pg, r, "a-2", "a", "DEAD_LETTERED", NULL, id);
    dead_event(pg, r, "a-done", "a", "COMPLETED", NULL, id); /* delivered since */
    dead_event(pg, r, "a-replay", "a", "DEAD_LETTERED", "job-1", id);
    dead_event(pg, r, "b-1", "b", "DEAD_LETTERED", NULL, id);
    char *dir = harness_tmpdir("dlq-purge");
    char archive[512];
    snprintf(archive, sizeof archive, "%s/archive.jsonl", dir);

    char *out = NULL, *err = NULL;
    cr_assert_eq(ctl_dlq(&out, &err, "dlq", "purge", "--tenant", "a", "--yes", "--archive",
                         archive, "--json", NULL),
                 0, "%s", err);
    json_t *o = json_loads(out, 0, NULL);
    cr_assert_not_null(o, "%s", out);
    cr_expect_eq(json_integer_value(json_object_get(o, "purged")), 4);
    cr_expect_eq(json_integer_value(json_object_get(o, "marked_purged")), 2);
    json_decref(o);
    free(out);
    free(err);
    cr_expect_eq(harness_count_lines(archive), 4);
    EXPECT_STATUS(pg, "a-1", "PURGED");
    EXPECT_STATUS(pg, "a-2", "PURGED");
    EXPECT_STATUS(pg, "a-done", "COMPLETED");
    EXPECT_STATUS(pg, "a-replay", "DEAD_LETTERED"); /* a replay's dead letter is not the row's */
    EXPECT_STATUS(pg, "b-1", "DEAD_LETTERED");
    cr_expect_eq(fx_count(pg, "SELECT count(*) FROM events WHERE status = 'PURGED' AND "
                              "status_at > now() - interval '1 minute'"),
                 2);

    /* evbusctl events sees the new status */
    cr_assert_eq(ctl_dlq(&out, &err, "events", "list", "--status", "PURGED", "--json", NULL), 0,
                 "%s", err);
    json_t *rows = json_loads(out, 0, NULL);
    cr_expect_eq(json_array_size(rows), 2, "%s", out);
    json_decref(rows);
    free(out);
    free(err);
    PQfinish(pg);
    redisFree(r);
    harness_rmrf(dir);
    free(dir);
}

Test(cli, dlq_delete_marks_purged_and_needs_migration_0007)
{
    PGconn *pg = fx_connect();
    redisContext *r = harness_redis_connect(&fx_redis);
    char one[32], id[32];
    dead_event(pg, r, "a-1", "a", "DEAD_LETTERED", NULL, one);
    dead_event(pg, r, "b-1", "b", "DEAD_LETTERED", NULL, id);
    char *out = NULL, *err = NULL;
    cr_assert_eq(ctl_dlq(&out, &err, "dlq", "delete", one, NULL), 0, "%s", err);
    free(out);
    free(err);
    EXPECT_STATUS(pg, "a-1", "PURGED");

    /* a schema without the PURGED status: nothing is removed */
    PQclear(PQexec(pg, "DELETE FROM schema_migrations WHERE version = 7"));
    cr_expect_eq(ctl_dlq(&out, &err, "dlq", "delete", "--tenant", "b", "--yes", NULL), 1);
    cr_expect(strstr(err, "migrate up") && strstr(err, "--no-metadata"), "%s", err);
    free(out);
    free(err);
    cr_expect_eq(harness_redis_int(r, "XLEN evbus:events:dlq"), 1);
    cr_expect_eq(ctl_dlq(&out, &err, "dlq", "delete", "--tenant", "b", "--yes", "--no-metadata",
                         NULL),
                 0, "%s", err);
    free(out);
    free(err);
    cr_expect_eq(harness_redis_int(r, "XLEN evbus:events:dlq"), 0);
    EXPECT_STATUS(pg, "b-1", "DEAD_LETTERED");
    PQfinish(pg);
    redisFree(r);
}

Test(cli, events_show_prints_the_status_history_oldest_first)
{
    store_writer_t *w = store_writer_start(&fx_cfg);
    cr_assert_not_null(w);
    store_update_t u = {.id = "ev-hist", .type = "order.created", .tenant = "t",
                        .stream_id = "1714557600000-0", .status = STORE_RETRYING, .attempts = 1,
                        .last_error = "rec/main: try later", .timestamp_ms = 1714557600100};
    cr_assert_eq(store_writer_submit(w, &u), 0);
    u.status = STORE_COMPLETED;
    u.attempts = 2;
    u.last_error = NULL;
    u.timestamp_ms = 1714557601100;
    cr_assert_eq(store_writer_submit(w, &u), 0);
    store_writer_stop(w, 5000);
    char *out = NULL, *err = NULL;
    cr_assert_eq(ctl(&out, &err, fx_pg.url, "events", "show", "ev-hist", NULL, NULL, NULL), 0,
                 "%s", err);
    const char *h = strstr(out, "history:\n");
    cr_assert(h, "%s", out);
    const char *r = strstr(h, "2024-05-01T10:00:00.100Z RETRYING      attempt 1  rec/main: try later\n");
    const char *c = strstr(h, "2024-05-01T10:00:01.100Z COMPLETED     attempt 2\n");
    cr_expect(r && c && r < c, "%s", out);
    free(out);
    free(err);
    cr_assert_eq(ctl(&out, &err, fx_pg.url, "events", "show", "ev-hist", "--json", NULL, NULL),
                 0);
    json_t *j = json_loads(out, 0, NULL);
    cr_expect_eq(json_array_size(json_object_get(j, "status_history")), 2, "%s", out);
    json_decref(j);
    free(out);
    free(err);
}
