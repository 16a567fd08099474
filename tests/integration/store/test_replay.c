/*
 * Replay: exact time windows over explicit stream ids, type/tenant
 * filters, retry entries skipped, cancellation, retention, rate limiting,
 * warnings and request validation.
 */
#include "fixture.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

TestSuite(replay, .init = fx_pg_redis, .fini = fx_teardown, .timeout = 180);

#define T0 1700000000000LL

typedef struct recorder {
    pthread_mutex_t mu;
    char ids[512][48];
    unsigned parts[512]; /* the partition each was dispatched as */
    char events[512][96]; /* the event's id */
    size_t n;
    int fail_every; /* 0 = never fail */
} recorder_t;

static recorder_t rec = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int record(void *ud, const char *job_id, unsigned partition, const char *stream_id,
                  const char *raw, size_t len)
{
    recorder_t *r = ud;
    (void)job_id;
    cr_assert_eq(strlen(raw), len);
    json_t *ev = json_loads(raw, 0, NULL);
    pthread_mutex_lock(&r->mu);
    size_t k = r->n;
    if (r->n < 512) {
        r->parts[r->n] = partition;
        snprintf(r->events[r->n], sizeof r->events[0], "%s",
                 json_string_value(json_object_get(ev, "id")));
        snprintf(r->ids[r->n++], sizeof r->ids[0], "%s", stream_id);
    }
    pthread_mutex_unlock(&r->mu);
    json_decref(ev);
    return r->fail_every && (k + 1) % (size_t)r->fail_every == 0 ? 1 : 0;
}

static size_t rec_count(void)
{
    pthread_mutex_lock(&rec.mu);
    size_t n = rec.n;
    pthread_mutex_unlock(&rec.mu);
    return n;
}

/* XADD stream <ms>-<seq> event <json>. */
static void add(redisContext *r, long long ms, int seq, const char *type, const char *tenant,
                bool retry)
{
    char id[48], ev[256];
    snprintf(id, sizeof id, "%lld-%d", ms, seq);
    snprintf(ev, sizeof ev, "{\"id\":\"e-%lld-%d\",\"type\":\"%s\",\"tenantid\":\"%s\",\"data\":{}}",
             ms, seq, type, tenant);
    redisReply *rep = retry ? redisCommand(r, "XADD evbus:events %s event %s retry 1", id, ev)
                            : redisCommand(r, "XADD evbus:events %s event %s", id, ev);
    cr_assert(rep && rep->type == REDIS_REPLY_STRING, "XADD %s failed", id);
    freeReplyObject(rep);
}

static json_t *wait_job(PGconn *c, const char *id, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    char err[512];
    for (;;) {
        json_t *job = NULL;
        cr_assert_eq(store_replay_get(c, id, &job, err, sizeof err), 0, "%s", err);
        cr_assert_not_null(job, "job %s vanished", id);
        const char *st = json_string_value(json_object_get(job, "status"));
        if (strcmp(st, "pending") != 0 && strcmp(st, "running") != 0)
            return job;
        json_decref(job);
        cr_assert_lt(harness_now_ms(), deadline, "job %s did not finish", id);
        usleep(50 * 1000);
    }
}

static void create(PGconn *c, store_replay_request_t *req, char *id)
{
    char err[512];
    cr_assert_eq(store_replay_create(c, req, fx_cfg.store.replay_max_range_s, id, 64, err, sizeof err),
                 0, "%s", err);
}

static long long jint(json_t *job, const char *k)
{
    return (long long)json_integer_value(json_object_get(job, k));
}

Test(replay, dispatches_exactly_the_window_in_order)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    for (int i = 0; i < 10; i++) {
        add(r, T0 + i * 1000, 0, "order.created", "acme", false);
        if (i == 5)
            add(r, T0 + i * 1000, 1, "order.created", "acme", false);
    }
    store_replay_worker_t *w = store_replay_worker_start(&fx_cfg, record, &rec);
    cr_assert_not_null(w);
    PGconn *c = fx_connect();
    char id[64];
    store_replay_request_t req = {.from_ms = T0 + 3000, .to_ms = T0 + 6000};
    create(c, &req, id);
    json_t *job = wait_job(c, id, 30000);
    store_replay_worker_stop(w);
    cr_expect_str_eq(json_string_value(json_object_get(job, "status")), "completed");
    const char *want[] = {"1700000003000-0", "1700000004000-0", "1700000005000-0",
                          "1700000005000-1", "1700000006000-0"};
    cr_assert_eq(rec.n, 5);
    for (size_t i = 0; i < 5; i++)
        cr_expect_str_eq(rec.ids[i], want[i]);
    cr_expect_eq(jint(job, "total"), 5);
    cr_expect_eq(jint(job, "processed"), 5);
    cr_expect_eq(jint(job, "skipped"), 0);
    cr_expect(json_is_null(json_object_get(job, "warning")));
    json_decref(job);
    PQfinish(c);
    redisFree(r);
}

Test(replay, filters_by_type_pattern_and_tenant_and_skips_retry_entries)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    add(r, T0 + 1, 0, "order.created", "acme", false);
    add(r, T0 + 2, 0, "order.paid", "acme", false);
    add(r, T0 + 3, 0, "user.created", "acme", false);
    add(r, T0 + 4, 0, "order.created", "other", false);
    add(r, T0 + 5, 0, "order.created", "acme", true);
    add(r, T0 + 6, 0, "order.item.added", "acme", false);
    rec.fail_every = 2;
    store_replay_worker_t *w = store_replay_worker_start(&fx_cfg, record, &rec);
    cr_assert_not_null(w);
    PGconn *c = fx_connect();
    const char *types[] = {"order.*", "user.**"};
    char id[64];
    store_replay_request_t req = {.from_ms = T0, .to_ms = T0 + 10, .types = types, .n_types = 2,
                                  .tenant = "acme"};
    create(c, &req, id);
    json_t *job = wait_job(c, id, 30000);
    store_replay_worker_stop(w);
    cr_assert_eq(rec.n, 3, "dispatched %zu", rec.n);
    cr_expect_str_eq(rec.ids[0], "1700000000001-0");
    cr_expect_str_eq(rec.ids[1], "1700000000002-0");
    cr_expect_str_eq(rec.ids[2], "1700000000003-0");
    cr_expect_eq(jint(job, "total"), 6);
    cr_expect_eq(jint(job, "skipped"), 3);
    cr_expect_eq(jint(job, "processed"), 2);
    cr_expect_eq(jint(job, "failed"), 1, "the callback's failures are counted");
    json_decref(job);
    PQfinish(c);
    redisFree(r);
}

Test(replay, cancel_stops_a_running_job)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    for (int i = 0; i < 200; i++)
        add(r, T0 + i, 0, "order.created", "acme", false);
    store_replay_worker_t *w = store_replay_worker_start(&fx_cfg, record, &rec);
    cr_assert_not_null(w);
    PGconn *c = fx_connect();
    char id[64], err[512];
    store_replay_request_t req = {.from_ms = T0, .to_ms = T0 + 1000, .rate = 20};
    create(c, &req, id);
    long long deadline = harness_now_ms() + 20000;
    while (rec_count() < 5 && harness_now_ms() < deadline)
        usleep(20 * 1000);
    cr_assert_geq(rec_count(), 5);
    cr_assert_eq(store_replay_cancel(c, id, err, sizeof err), 0, "%s", err);
    usleep(2500 * 1000); /* > one cancellation check period */
    size_t n = rec_count();
    usleep(1000 * 1000);
    cr_expect_eq(rec_count(), n, "dispatch continued after cancel");
    cr_expect_lt(n, 200);
    json_t *job = wait_job(c, id, 1000);
    cr_expect_str_eq(json_string_value(json_object_get(job, "status")), "cancelled");
    json_decref(job);
    cr_expect_eq(store_replay_cancel(c, id, err, sizeof err), -1);
    cr_expect(strstr(err, "already cancelled") != NULL, "%s", err);
    cr_expect_eq(store_replay_cancel(c, "00000000-0000-0000-0000-000000000000", err, sizeof err),
                 -1);
    cr_expect(strstr(err, "no replay job") != NULL, "%s", err);
    store_replay_worker_stop(w);
    PQfinish(c);
    redisFree(r);
}

Test(replay, finished_jobs_are_pruned_to_the_configured_count)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    add(r, T0, 0, "order.created", "acme", false);
    fx_cfg.store.replay_keep_completed = 2;
    store_replay_worker_t *w = store_replay_worker_start(&fx_cfg, record, &rec);
    cr_assert_not_null(w);
    PGconn *c = fx_connect();
    char id[64];
    for (int i = 0; i < 5; i++) {
        store_replay_request_t req = {.from_ms = T0, .to_ms = T0 + 1};
        create(c, &req, id);
        json_decref(wait_job(c, id, 30000));
    }
    store_replay_worker_stop(w);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM replay_jobs WHERE status = 'completed'"), 2);
    json_t *job = NULL;
    char err[512];
    cr_assert_eq(store_replay_get(c, id, &job, err, sizeof err), 0, "%s", err);
    cr_expect_not_null(job, "the newest job was pruned");
    json_decref(job);

    /* Failed and cancelled jobs are kept separately. */
    for (int i = 0; i < 3; i++) {
        store_replay_request_t req = {.from_ms = T0, .to_ms = T0 + 1};
        create(c, &req, id);
        cr_assert_eq(store_replay_cancel(c, id, err, sizeof err), 0, "%s", err);
    }
    cr_expect_eq(store_replay_prune(c, 2, 1, err, sizeof err), 2);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM replay_jobs"), 3);
    PQfinish(c);
    redisFree(r);
}

Test(replay, rate_limit_is_roughly_honoured)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    for (int i = 0; i < 30; i++)
        add(r, T0 + i, 0, "order.created", "acme", false);
    store_replay_worker_t *w = store_replay_worker_start(&fx_cfg, record, &rec);
    cr_assert_not_null(w);
    PGconn *c = fx_connect();
    char id[64];
    store_replay_request_t req = {.from_ms = T0, .to_ms = T0 + 100, .rate = 10};
    create(c, &req, id);
    long long deadline = harness_now_ms() + 30000;
    while (rec_count() < 1 && harness_now_ms() < deadline)
        usleep(5 * 1000);
    long long t0 = harness_now_ms();
    json_t *job = wait_job(c, id, 30000);
    long long took = harness_now_ms() - t0;
    store_replay_worker_stop(w);
    cr_expect_eq(rec.n, 30);
    /* 30 events at 10/s: about 2-3 s (one second of burst credit at most). */
    cr_expect_geq(took, 1900 / 3, "took only %lld ms", took);
    cr_expect_leq(took, 3000 * 3, "took %lld ms", took);
    json_decref(job);
    PQfinish(c);
    redisFree(r);
}

Test(replay, warns_when_the_window_starts_before_the_oldest_entry)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    add(r, T0 + 5000, 0, "order.created", "acme", false);
    store_replay_worker_t *w = store_replay_worker_start(&fx_cfg, record, &rec);
    cr_assert_not_null(w);
    PGconn *c = fx_connect();
    char id[64];
    store_replay_request_t req = {.from_ms = T0, .to_ms = T0 + 10000};
    create(c, &req, id);
    json_t *job = wait_job(c, id, 30000);
    store_replay_worker_stop(w);
    cr_expect_str_eq(json_string_value(json_object_get(job, "status")), "completed");
    const char *warning = json_string_value(json_object_get(job, "warning"));
    cr_assert_not_null(warning);
    /* exactly which part is gone and where the stream starts */
    char want[300], t0[40], t5[40];
    time_t s0 = (time_t)(T0 / 1000), s5 = (time_t)((T0 + 5000) / 1000);
    struct tm tm;
    strftime(t0, sizeof t0, "%Y-%m-%dT%H:%M:%S", gmtime_r(&s0, &tm));
    strftime(t5, sizeof t5, "%Y-%m-%dT%H:%M:%S", gmtime_r(&s5, &tm));
    snprintf(want, sizeof want, "1 missing range: %s.%03dZ to %s.%03dZ is no longer in the "
             "stream (trimmed by retention); the first available event is at %s.%03dZ", t0,
             (int)(T0 % 1000), t5, (int)((T0 + 5000) % 1000), t5, (int)((T0 + 5000) % 1000));
    cr_expect(strstr(warning, want) != NULL, "%s\nwanted %s", warning, want);
    cr_expect_eq(rec.n, 1);
    json_decref(job);
    PQfinish(c);
    redisFree(r);
}

Test(replay, redis_unreachable_fails_the_job_with_the_reason)
{
    /* the worker retries a failed read for 3 x command_timeout_ms before
     * it fails the job: 3 s here instead of the fixture's 15 */
    fx_cfg.core.redis_command_timeout_ms = 1000;
    harness_redis_stop(&fx_redis);
    store_replay_worker_t *w = store_replay_worker_start(&fx_cfg, record, &rec);
    cr_assert_not_null(w);
    PGconn *c = fx_connect();
    char id[64];
    store_replay_request_t req = {.from_ms = T0, .to_ms = T0 + 10};
    create(c, &req, id);
    json_t *job = wait_job(c, id, 30000);
    store_replay_worker_stop(w);
    cr_expect_str_eq(json_string_value(json_object_get(job, "status")), "failed");
    const char *e = json_string_value(json_object_get(job, "error"));
    cr_expect(e && strstr(e, "redis") != NULL, "error: %s", e ? e : "(null)");
    json_decref(job);
    PQfinish(c);
}

Test(replay, invalid_requests_name_the_field)
{
    PGconn *c = fx_connect();
    char id[64], err[512];
    const char *bad_types[] = {"order.*", "Order..x"};
    struct {
        store_replay_request_t req;
        const char *prefix;
    } cases[] = {
        {{.from_ms = T0 + 10, .to_ms = T0}, "from:"},
        {{.from_ms = T0, .to_ms = T0}, "from:"},
        {{.from_ms = T0, .to_ms = T0 + 32LL * 86400 * 1000}, "to:"},
        {{.from_ms = T0, .to_ms = T0 + 10, .types = bad_types, .n_types = 2}, "types[1]:"},
        {{.from_ms = T0, .to_ms = T0 + 10, .rate = -5}, "rate:"},
        {{.from_ms = T0, .to_ms = T0 + 10, .tenant = ""}, "tenant:"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        err[0] = '\0';
        cr_expect_eq(store_replay_create(c, &cases[i].req, fx_cfg.store.replay_max_range_s, id,
                                         sizeof id, err, sizeof err),
                     STORE_EINVAL, "case %zu accepted", i);
        cr_expect(strncmp(err, cases[i].prefix, strlen(cases[i].prefix)) == 0,
                  "case %zu: \"%s\" does not start with %s", i, err, cases[i].prefix);
    }
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM replay_jobs"), 0);
    PQfinish(c);
}

/* ---------------------------------------------------------- leases */

static void sql_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

/* Makes job `id` look like a job whose host died while running it: running,
 * last heartbeat an hour ago, `handled` entries of `total` done up to
 * position `pos`, claimed `claims` times. */
static void orphan(PGconn *c, const char *id, const char *pos, long long handled, long long total,
                   int claims)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "UPDATE replay_jobs SET status = 'running', started_at = now() - interval '1 hour',"
             " heartbeat_at = now() - interval '1 hour', position = %s%s%s, processed = %lld,"
             " total = %lld, claims = %d WHERE id = '%s'",
             pos ? "'" : "", pos ? pos : "NULL", pos ? "'" : "", handled, total, claims, id);
    sql_ok(c, sql);
}

Test(replay, a_job_whose_host_died_is_claimed_again_and_resumes_after_its_position)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    for (int i = 0; i < 300; i++)
        add(r, T0 + i, 0, "order.created", "acme", false);
    PGconn *c = fx_connect();
    char id[64];
    store_replay_request_t req = {.from_ms = T0, .to_ms = T0 + 1000};
    create(c, &req, id);
    orphan(c, id, "1700000000099-0", 100, 300, 1); /* entries 0..99 were handled */
    store_replay_worker_t *w = store_replay_worker_start(&fx_cfg, record, &rec);
    cr_assert_not_null(w);
    json_t *job = wait_job(c, id, 30000);
    store_replay_worker_stop(w);
    cr_expect_str_eq(json_string_value(json_object_get(job, "status")), "completed");
    cr_assert_eq(rec.n, 200, "dispatched %zu events, want the 200 after the position", rec.n);
    cr_expect_str_eq(rec.ids[0], "1700000000100-0");
    cr_expect_str_eq(rec.ids[199], "1700000000299-0");
    cr_expect_eq(jint(job, "processed"), 300);
    cr_expect_eq(jint(job, "total"), 300);
    cr_expect_eq(jint(job, "claims"), 2);
    cr_expect_str_eq(json_string_value(json_object_get(job, "position")), "1700000000299-0");
    json_decref(job);
    PQfinish(c);
    redisFree(r);
}

Test(replay, a_running_job_with_a_live_heartbeat_is_left_to_its_host)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    for (int i = 0; i < 20; i++)
        add(r, T0 + i, 0, "order.created", "acme", false);
    PGconn *c = fx_connect();
    char id[64], sql[256];
    store_replay_request_t req = {.from_ms = T0, .to_ms = T0 + 1000};
    create(c, &req, id);
    snprintf(sql, sizeof sql,
             "UPDATE replay_jobs SET status = 'running', started_at = now(), heartbeat_at = now(),"
             " claims = 1 WHERE id = '%s'", id);
    sql_ok(c, sql);
    store_replay_worker_t *w = store_replay_worker_start(&fx_cfg, record, &rec);
    cr_assert_not_null(w);
    usleep(1500 * 1000); /* three polls */
    cr_expect_eq(rec_count(), 0, "a job with a live heartbeat was taken over");
    json_t *job = NULL;
    char err[512];
    cr_assert_eq(store_replay_get(c, id, &job, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(json_string_value(json_object_get(job, "status")), "running");
    cr_expect_eq(jint(job, "claims"), 1);
    json_decref(job);
    /* once its heartbeat is older than the lease, it is taken */
    orphan(c, id, NULL, 0, 0, 1);
    job = wait_job(c, id, 30000);
    store_replay_worker_stop(w);
    cr_expect_str_eq(json_string_value(json_object_get(job, "status")), "completed");
    cr_expect_eq(rec_count(), 20);
    json_decref(job);
    PQfinish(c);
    redisFree(r);
}

Test(replay, a_job_claimed_too_often_fails_instead_of_going_round)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    add(r, T0, 0, "order.created", "acme", false);
    PGconn *c = fx_connect();
    char id[64];
    store_replay_request_t req = {.from_ms = T0, .to_ms = T0 + 1000};
    create(c, &req, id);
    orphan(c, id, NULL, 0, 1, 3);
    store_replay_worker_t *w = store_replay_worker_start(&fx_cfg, record, &rec);
    cr_assert_not_null(w);
    json_t *job = wait_job(c, id, 30000);
    store_replay_worker_stop(w);
    cr_expect_str_eq(json_string_value(json_object_get(job, "status")), "failed");
    const char *e = json_string_value(json_object_get(job, "error"));
    cr_expect(e && strstr(e, "claimed 4 times") != NULL, "error: %s", e ? e : "(null)");
    cr_expect_eq(rec_count(), 0);
    json_decref(job);
    PQfinish(c);
    redisFree(r);
}

Test(replay, a_stopping_host_hands_its_job_back_and_the_next_one_finishes_it)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    for (int i = 0; i < 200; i++)
        add(r, T0 + i, 0, "order.created", "acme", false);
    PGconn *c = fx_connect();
    char id[64], err[512], sql[256];
    store_replay_request_t req = {.from_ms = T0, .to_ms = T0 + 1000, .rate = 50};
    create(c, &req, id);
    store_replay_worker_t *w = store_replay_worker_start(&fx_cfg, record, &rec);
    cr_assert_not_null(w);
    long long deadline = harness_now_ms() + 20000;
    while (rec_count() < 10 && harness_now_ms() < deadline)
        usleep(20 * 1000);
    cr_assert_geq(rec_count(), 10);
    store_replay_worker_stop(w);
    size_t first = rec_count();
    cr_assert_lt(first, 200);
    json_t *job = NULL;
    cr_assert_eq(store_replay_get(c, id, &job, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(json_string_value(json_object_get(job, "status")), "pending");
    cr_expect_eq(jint(job, "claims"), 0, "a handed-back job must not use up a claim");
    cr_expect_str_eq(json_string_value(json_object_get(job, "position")), rec.ids[first - 1]);
    json_decref(job);
    /* the next host (no rate limit now, to finish fast) takes over */
    snprintf(sql, sizeof sql, "UPDATE replay_jobs SET rate = NULL WHERE id = '%s'", id);
    sql_ok(c, sql);
    w = store_replay_worker_start(&fx_cfg, record, &rec);
    cr_assert_not_null(w);
    job = wait_job(c, id, 30000);
    store_replay_worker_stop(w);
    cr_expect_str_eq(json_string_value(json_object_get(job, "status")), "completed");
    cr_expect_eq(jint(job, "processed"), 200);
    /* every entry exactly once, in order, across the two hosts */
    cr_assert_eq(rec.n, 200);
    for (int i = 0; i < 200; i++) {
        char want[48];
        snprintf(want, sizeof want, "%lld-0", T0 + i);
        cr_expect_str_eq(rec.ids[i], want);
    }
    json_decref(job);
    PQfinish(c);
    redisFree(r);
}

/* A host that stalled past its lease and finds the job claimed by another
 * (claims moved on) stops at once and writes nothing more to the row: the
 * claim number fences every write. */
Test(replay, a_host_that_lost_its_lease_stops_and_writes_nothing)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    for (int i = 0; i < 200; i++)
        add(r, T0 + i, 0, "order.created", "acme", false);
    PGconn *c = fx_connect();
    char id[64], sql[256];
    store_replay_request_t req = {.from_ms = T0, .to_ms = T0 + 1000, .rate = 20};
    create(c, &req, id);
    store_replay_worker_t *w = store_replay_worker_start(&fx_cfg, record, &rec);
    cr_assert_not_null(w);
    long long deadline = harness_now_ms() + 20000;
    while (rec_count() < 5 && harness_now_ms() < deadline)
        usleep(20 * 1000);
    cr_assert_geq(rec_count(), 5);
    /* another host claims it (as after a lease expiry) and parks a position */
    snprintf(sql, sizeof sql,
             "UPDATE replay_jobs SET claims = claims + 1, position = 'other-host'"
             " WHERE id = '%s'", id);
    sql_ok(c, sql);
    usleep(2500 * 1000); /* > one progress write while rate-limited */
    size_t n = rec_count();
    usleep(1000 * 1000);
    cr_expect_eq(rec_count(), n, "dispatch went on after the job was taken over");
    cr_expect_lt(n, 200);
    store_replay_worker_stop(w);
    json_t *job = NULL;
    char err[512];
    cr_assert_eq(store_replay_get(c, id, &job, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(json_string_value(json_object_get(job, "status")), "running",
                     "the old host changed the new owner's job");
    cr_expect_str_eq(json_string_value(json_object_get(job, "position")), "other-host");
    cr_expect_eq(jint(job, "claims"), 2);
    json_decref(job);
    PQfinish(c);
    redisFree(r);
}

/* ------------------------------------------------ partitioned streams */

#define P 3

/* XADD {evbus:events:<p>} <ms>-0 event {"id":"<key>-<ms>","partitionkey":"<key>",...}. */
static void add_part(redisContext *r, unsigned p, long long ms, const char *key)
{
    char stream[48], id[48], ev[256];
    snprintf(stream, sizeof stream, "{evbus:events:%u}", p);
    snprintf(id, sizeof id, "%lld-0", ms);
    snprintf(ev, sizeof ev,
             "{\"id\":\"%s-%lld\",\"type\":\"order.created\",\"tenantid\":\"acme\","
             "\"partitionkey\":\"%s\",\"data\":{}}",
             key, ms, key);
    redisReply *rep = redisCommand(r, "XADD %s %s event %s", stream, id, ev);
    cr_assert(rep && rep->type == REDIS_REPLY_STRING, "XADD %s %s failed", stream, id);
    freeReplyObject(rep);
}

static json_t *part_of(json_t *job, unsigned p)
{
    json_t *parts = json_object_get(job, "partitions");
    cr_assert(json_is_array(parts), "the job has no partitions array");
    cr_assert_eq(json_array_size(parts), P);
    json_t *o = json_array_get(parts, p);
    cr_assert_eq(json_integer_value(json_object_get(o, "partition")), (json_int_t)p);
    return o;
}

static const char *jstr(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

/* Partition 0: key a at T0+0..4 s; partition 1: key b at T0+0..2 s and one
 * entry after the window; partition 2: key c starting after the window's
 * start (its first 2 s were trimmed).  The window is [T0, T0+4 s]. */
static void fill_partitions(redisContext *r)
{
    for (int i = 0; i < 5; i++)
        add_part(r, 0, T0 + i * 1000, "a");
    for (int i = 0; i < 3; i++)
        add_part(r, 1, T0 + i * 1000, "b");
    add_part(r, 1, T0 + 9000, "b");
    for (int i = 2; i < 5; i++)
        add_part(r, 2, T0 + i * 1000 + 500, "c");
}

Test(replay, a_partitioned_job_replays_every_partition_window_in_order_and_counts_each)
{
    fx_cfg.core.partitions = P;
    redisContext *r = harness_redis_connect(&fx_redis);
    fill_partitions(r);
    add(r, T0 + 2000, 0, "order.created", "acme", false); /* the unpartitioned stream: not read */
    store_replay_worker_t *w = store_replay_worker_start(&fx_cfg, record, &rec);
    cr_assert_not_null(w);
    PGconn *c = fx_connect();
    char id[64];
    store_replay_request_t req = {.from_ms = T0, .to_ms = T0 + 4000, .partitions = P};
    create(c, &req, id);
    json_t *job = wait_job(c, id, 30000);
    store_replay_worker_stop(w);
    cr_expect_str_eq(jstr(job, "status"), "completed", "error: %s", jstr(job, "error"));
    /* each partition's window in stream order, dispatched as that partition */
    static const struct {
        unsigned part;
        const char *sid, *event;
    } want[] = {
        {0, "1700000000000-0", "a-1700000000000"}, {0, "1700000001000-0", "a-1700000001000"},
        {0, "1700000002000-0", "a-1700000002000"}, {0, "1700000003000-0", "a-1700000003000"},
        {0, "1700000004000-0", "a-1700000004000"}, {1, "1700000000000-0", "b-1700000000000"},
        {1, "1700000001000-0", "b-1700000001000"}, {1, "1700000002000-0", "b-1700000002000"},
        {2, "1700000002500-0", "c-1700000002500"}, {2, "1700000003500-0", "c-1700000003500"},
    };
    size_t nw = sizeof want / sizeof *want;
    cr_assert_eq(rec.n, nw, "dispatched %zu events, want %zu", rec.n, nw);
    for (size_t i = 0; i < nw; i++) {
        cr_expect_eq(rec.parts[i], want[i].part, "event %zu: partition %u", i, rec.parts[i]);
        cr_expect_str_eq(rec.ids[i], want[i].sid);
        cr_expect_str_eq(rec.events[i], want[i].event);
    }
    /* the job's counts are the sums; each partition has its own */
    cr_expect_eq(jint(job, "total"), 10);
    cr_expect_eq(jint(job, "processed"), 10);
    cr_expect(json_is_null(json_object_get(job, "position")));
    static const long long totals[P] = {5, 3, 2};
    static const char *const last[P] = {"1700000004000-0", "1700000002000-0",
                                        "1700000003500-0"};
    for (unsigned p = 0; p < P; p++) {
        json_t *o = part_of(job, p);
        cr_expect_str_eq(jstr(o, "status"), "completed", "partition %u", p);
        cr_expect_eq(jint(o, "total"), totals[p], "partition %u", p);
        cr_expect_eq(jint(o, "processed"), totals[p], "partition %u", p);
        cr_expect_eq(jint(o, "skipped") + jint(o, "failed"), 0, "partition %u", p);
        cr_expect_str_eq(jstr(o, "position"), last[p], "partition %u", p);
    }
    /* the partition whose window was trimmed says so, and so does the job */
    cr_expect(json_is_null(json_object_get(part_of(job, 0), "warning")));
    cr_expect(json_is_null(json_object_get(part_of(job, 1), "warning")));
    const char *pw = jstr(part_of(job, 2), "warning");
    cr_expect(strstr(pw, "1 missing range") && strstr(pw, "(1700000002500 ms)"), "%s", pw);
    const char *warning = jstr(job, "warning");
    cr_expect(strncmp(warning, "partition 2: 1 missing range", 28) == 0, "%s", warning);
    json_decref(job);
    PQfinish(c);
    redisFree(r);
}

/* Makes a partitioned job look like one whose host died: partition 0
 * completed, partition 1 handled up to its first entry, partition 2
 * not begun. */
static void orphan_partitioned(PGconn *c, const char *id)
{
    char sql[1500];
    snprintf(sql, sizeof sql,
             "UPDATE replay_jobs SET status = 'running', started_at = now() - interval '1 hour',"
             " heartbeat_at = now() - interval '1 hour', claims = 1, total = 10,"
             " processed = 6, partitions = '["
             "{\"partition\":0,\"status\":\"completed\",\"total\":5,\"processed\":5,"
             "\"skipped\":0,\"failed\":0,\"position\":\"1700000004000-0\",\"warning\":null},"
             "{\"partition\":1,\"status\":\"running\",\"total\":3,\"processed\":1,"
             "\"skipped\":0,\"failed\":0,\"position\":\"1700000000000-0\",\"warning\":null},"
             "{\"partition\":2,\"status\":\"pending\",\"total\":2,\"processed\":0,"
             "\"skipped\":0,\"failed\":0,\"position\":null,\"warning\":\"w2\"}]'"
             " WHERE id = '%s'",
             id);
    sql_ok(c, sql);
}

Test(replay, a_partitioned_job_claimed_again_resumes_each_partition_after_its_own_position)
{
    fx_cfg.core.partitions = P;
    redisContext *r = harness_redis_connect(&fx_redis);
    fill_partitions(r);
    PGconn *c = fx_connect();
    char id[64];
    store_replay_request_t req = {.from_ms = T0, .to_ms = T0 + 4000, .partitions = P};
    create(c, &req, id);
    orphan_partitioned(c, id);
    store_replay_worker_t *w = store_replay_worker_start(&fx_cfg, record, &rec);
    cr_assert_not_null(w);
    json_t *job = wait_job(c, id, 30000);
    store_replay_worker_stop(w);
    cr_expect_str_eq(jstr(job, "status"), "completed", "error: %s", jstr(job, "error"));
    /* nothing of partition 0, partition 1 after its position, all of 2 */
    static const struct {
        unsigned part;
        const char *sid;
    } want[] = {{1, "1700000001000-0"}, {1, "1700000002000-0"}, {2, "1700000002500-0"},
                {2, "1700000003500-0"}};
    cr_assert_eq(rec.n, 4, "dispatched %zu events, want 4", rec.n);
    for (size_t i = 0; i < 4; i++) {
        cr_expect_eq(rec.parts[i], want[i].part, "event %zu", i);
        cr_expect_str_eq(rec.ids[i], want[i].sid, "event %zu", i);
    }
    cr_expect_eq(jint(job, "processed"), 10);
    cr_expect_eq(jint(job, "total"), 10, "a resumed job counted its window again");
    cr_expect_eq(jint(job, "claims"), 2);
    for (unsigned p = 0; p < P; p++)
        cr_expect_str_eq(jstr(part_of(job, p), "status"), "completed", "partition %u", p);
    cr_expect_eq(jint(part_of(job, 1), "processed"), 3);
    cr_expect_str_eq(jstr(part_of(job, 2), "warning"), "w2", "the saved warning was lost");
    json_decref(job);
    PQfinish(c);
    redisFree(r);
}

Test(replay, a_stopping_host_hands_back_a_partitioned_job_and_the_next_one_finishes_each_partition)
{
    fx_cfg.core.partitions = P;
    redisContext *r = harness_redis_connect(&fx_redis);
    for (unsigned p = 0; p < P; p++)
        for (int i = 0; i < 40; i++)
            add_part(r, p, T0 + i, p == 0 ? "a" : p == 1 ? "b" : "c");
    PGconn *c = fx_connect();
    char id[64], err[512], sql[256];
    store_replay_request_t req = {.from_ms = T0, .to_ms = T0 + 1000, .rate = 50,
                                  .partitions = P};
    create(c, &req, id);
    store_replay_worker_t *w = store_replay_worker_start(&fx_cfg, record, &rec);
    cr_assert_not_null(w);
    /* stop it inside partition 1 */
    long long deadline = harness_now_ms() + 20000;
    while (rec_count() < 50 && harness_now_ms() < deadline)
        usleep(20 * 1000);
    cr_assert_geq(rec_count(), 50);
    store_replay_worker_stop(w);
    size_t first = rec_count();
    cr_assert_lt(first, 80);
    json_t *job = NULL;
    cr_assert_eq(store_replay_get(c, id, &job, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(jstr(job, "status"), "pending");
    cr_expect_eq(jint(job, "claims"), 0);
    cr_expect_str_eq(jstr(part_of(job, 0), "status"), "completed");
    cr_expect_str_eq(jstr(part_of(job, 1), "status"), "running");
    cr_expect_str_eq(jstr(part_of(job, 2), "status"), "pending");
    cr_expect_str_eq(jstr(part_of(job, 1), "position"), rec.ids[first - 1]);
    cr_expect_eq(jint(part_of(job, 1), "processed"), (long long)first - 40);
    cr_expect_eq(jint(job, "processed"), (long long)first);
    json_decref(job);
    /* the next host (no rate limit now) takes over */
    snprintf(sql, sizeof sql, "UPDATE replay_jobs SET rate = NULL WHERE id = '%s'", id);
    sql_ok(c, sql);
    w = store_replay_worker_start(&fx_cfg, record, &rec);
    cr_assert_not_null(w);
    job = wait_job(c, id, 30000);
    store_replay_worker_stop(w);
    cr_expect_str_eq(jstr(job, "status"), "completed");
    cr_expect_eq(jint(job, "processed"), 3 * 40);
    /* every entry exactly once, partition after partition, in order */
    cr_assert_eq(rec.n, 3 * 40);
    for (size_t i = 0; i < rec.n; i++) {
        char want[48];
        snprintf(want, sizeof want, "%lld-0", T0 + (long long)(i % 40));
        cr_expect_eq(rec.parts[i], i / 40, "event %zu", i);
        cr_expect_str_eq(rec.ids[i], want, "event %zu", i);
    }
    for (unsigned p = 0; p < P; p++) {
        cr_expect_str_eq(jstr(part_of(job, p), "status"), "completed");
        cr_expect_eq(jint(part_of(job, p), "processed"), 40);
    }
    json_decref(job);
    PQfinish(c);
    redisFree(r);
}

Test(replay, a_job_of_another_partition_count_fails_saying_both)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    fill_partitions(r);
    PGconn *c = fx_connect();
    char id1[64], id3[64];
    store_replay_request_t req = {.from_ms = T0, .to_ms = T0 + 4000};
    create(c, &req, id1);
    req.partitions = P;
    create(c, &req, id3);
    fx_cfg.core.partitions = 2;
    store_replay_worker_t *w = store_replay_worker_start(&fx_cfg, record, &rec);
    cr_assert_not_null(w);
    json_t *j1 = wait_job(c, id1, 30000), *j3 = wait_job(c, id3, 30000);
    store_replay_worker_stop(w);
    cr_expect_eq(rec.n, 0, "a job of another count dispatched events");
    cr_expect_str_eq(jstr(j1, "status"), "failed");
    cr_expect(strstr(jstr(j1, "error"), "created for 1 partition of stream evbus:events") &&
                  strstr(jstr(j1, "error"), "now reads in 2"),
              "%s", jstr(j1, "error"));
    cr_expect_str_eq(jstr(j3, "status"), "failed");
    cr_expect(strstr(jstr(j3, "error"), "created for 3 partitions"), "%s", jstr(j3, "error"));
    json_decref(j1);
    json_decref(j3);
    PQfinish(c);
    redisFree(r);
}

Test(replay, without_migration_0011_only_partitioned_jobs_are_refused)
{
    PGconn *c = fx_connect();
    sql_ok(c, "ALTER TABLE replay_jobs DROP COLUMN partitions");
    sql_ok(c, "DELETE FROM schema_migrations WHERE version = 11");
    char id[64], err[512];
    store_replay_request_t req = {.from_ms = T0, .to_ms = T0 + 4000, .partitions = P};
    cr_expect_eq(store_replay_create(c, &req, 0, id, sizeof id, err, sizeof err), -1);
    cr_expect(strstr(err, "migration 0011") && strstr(err, "evbusctl migrate up"), "%s", err);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM replay_jobs"), 0);
    /* an unpartitioned job is created and read as before, with no partitions member */
    req.partitions = 1;
    create(c, &req, id);
    json_t *job = NULL;
    cr_assert_eq(store_replay_get(c, id, &job, err, sizeof err), 0, "%s", err);
    cr_assert_not_null(job);
    cr_expect_null(json_object_get(job, "partitions"));
    cr_expect_str_eq(jstr(job, "status"), "pending");
    json_decref(job);
    json_t *list = NULL;
    cr_assert_eq(store_replay_list(c, 10, &list, err, sizeof err), 0, "%s", err);
    cr_expect_eq(json_array_size(list), 1);
    cr_expect_null(json_object_get(json_array_get(list, 0), "partitions"));
    json_decref(list);
    /* and run as before */
    redisContext *r = harness_redis_connect(&fx_redis);
    add(r, T0 + 1000, 0, "order.created", "acme", false);
    store_replay_worker_t *w = store_replay_worker_start(&fx_cfg, record, &rec);
    cr_assert_not_null(w);
    job = wait_job(c, id, 30000);
    store_replay_worker_stop(w);
    cr_expect_str_eq(jstr(job, "status"), "completed", "error: %s", jstr(job, "error"));
    cr_expect_eq(jint(job, "processed"), 1);
    cr_expect_str_eq(jstr(job, "position"), "1700000001000-0");
    json_decref(job);
    redisFree(r);
    PQfinish(c);
}

/* An archived entry of partition p's stream: what the archiver writes
 * under the partition stream's name (docs/storage.md, "The archive"). */
static void archive_part(PGconn *c, unsigned p, long long ms, const char *key)
{
    char sql[600];
    snprintf(sql, sizeof sql,
             "INSERT INTO events_archive (stream, ms, seq, event) VALUES ('{evbus:events:%u}',"
             " %lld, 0, convert_to('{\"id\":\"%s-%lld\",\"type\":\"order.created\","
             "\"tenantid\":\"acme\",\"partitionkey\":\"%s\",\"data\":{}}', 'UTF8'))",
             p, ms, key, ms, key);
    sql_ok(c, sql);
}

Test(replay, a_partitioned_job_reads_each_partitions_archive_before_its_stream)
{
    fx_cfg.core.partitions = P;
    fx_cfg.retention.archive = RETENTION_ARCHIVE_POSTGRES;
    redisContext *r = harness_redis_connect(&fx_redis);
    PGconn *c = fx_connect();
    /* partition 0: all in its stream; 1: its first two seconds archived,
     * the rest in the stream; 2: only archived, from T0+0.5 s */
    for (int i = 0; i < 3; i++)
        add_part(r, 0, T0 + i * 1000, "a");
    archive_part(c, 1, T0, "b");
    archive_part(c, 1, T0 + 1000, "b");
    add_part(r, 1, T0 + 2000, "b");
    add_part(r, 1, T0 + 3000, "b");
    archive_part(c, 2, T0 + 500, "c");
    archive_part(c, 2, T0 + 1500, "c");
    archive_part(c, 0, T0 + 9000, "a"); /* outside the window */
    store_replay_worker_t *w = store_replay_worker_start(&fx_cfg, record, &rec);
    cr_assert_not_null(w);
    char id[64];
    store_replay_request_t req = {.from_ms = T0, .to_ms = T0 + 4000, .partitions = P};
    create(c, &req, id);
    json_t *job = wait_job(c, id, 30000);
    store_replay_worker_stop(w);
    cr_expect_str_eq(jstr(job, "status"), "completed", "error: %s", jstr(job, "error"));
    static const struct {
        unsigned part;
        const char *event;
    } want[] = {{0, "a-1700000000000"}, {0, "a-1700000001000"}, {0, "a-1700000002000"},
                {1, "b-1700000000000"}, {1, "b-1700000001000"}, {1, "b-1700000002000"},
                {1, "b-1700000003000"}, {2, "c-1700000000500"}, {2, "c-1700000001500"}};
    size_t nw = sizeof want / sizeof *want;
    cr_assert_eq(rec.n, nw, "dispatched %zu events, want %zu", rec.n, nw);
    for (size_t i = 0; i < nw; i++) {
        cr_expect_eq(rec.parts[i], want[i].part, "event %zu: partition %u", i, rec.parts[i]);
        cr_expect_str_eq(rec.events[i], want[i].event, "event %zu", i);
    }
    static const long long totals[P] = {3, 4, 2};
    for (unsigned p = 0; p < P; p++) {
        cr_expect_eq(jint(part_of(job, p), "total"), totals[p], "partition %u", p);
        cr_expect_eq(jint(part_of(job, p), "processed"), totals[p], "partition %u", p);
    }
    cr_expect(json_is_null(json_object_get(part_of(job, 1), "warning")), "%s",
              jstr(part_of(job, 1), "warning"));
    const char *w2 = jstr(part_of(job, 2), "warning");
    cr_expect(strstr(w2, "neither in the stream nor in the archive") &&
                  strstr(w2, "(1700000000500 ms)"),
              "%s", w2);
    json_decref(job);
    PQfinish(c);
    redisFree(r);
}
