/*
 * The archive (retention.archive: postgres): entries reach PostgreSQL
 * before the trimmer removes them, replay reads what the stream no longer
 * holds from there byte for byte and in order, PostgreSQL down stops
 * trimming instead of losing entries, archiving a chunk twice stores it
 * once, and the missing-range warning names only what neither holds.
 *
 * Real redis-server and PostgreSQL (tests/support); the trimmer, the
 * archiver thread and the replay worker are driven through their C
 * contracts (retention.h, retention_archive.h, store.h).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/evbus_client.h"
#include "fixture.h"
#include "retention/retention.h"

#define STREAM "evbus:events"

TestSuite(archive, .init = fx_pg_redis, .fini = fx_teardown, .timeout = 240);

/* ------------------------------------------------------------ entries */

typedef struct entry {
    char id[48];
    char *event;  /* NULL: no event field */
    size_t len;
    bool retry;   /* carries a `retry` field */
    bool extra;   /* carries a binary `trace` field */
} entry_t;

static entry_t E[600];
static size_t NE;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Events whose bytes a re-encoding would change: odd spacing, escapes,
 * raw UTF-8, number forms, key order; plus one that is not JSON at all
 * (NUL and 0xFF bytes: archived exactly, skipped by replay). */
static void make_event(size_t i, entry_t *e)
{
    char buf[512];
    int n;
    switch (i % 5) {
    case 0:
        n = snprintf(buf, sizeof buf,
                     "{\"type\":\"order.created\",\"tenantid\":\"acme\",\"id\":\"e-%zu\","
                     "\"data\":{\"i\":%zu}}", i, i);
        break;
    case 1:
        n = snprintf(buf, sizeof buf,
                     "{ \"id\" : \"e-%zu\" ,\n\t\"type\":\"order.created\", \"tenantid\":\"acme\","
                     " \"data\":{\"name\":\"J\\u00fcrgen \\u2603 Zo\xc3\xab \xe6\x97\xa5\","
                     "\"n\":1.50e+3,\"k\":[1,2 ,3]}}", i);
        break;
    case 2:
        n = snprintf(buf, sizeof buf,
                     "   {\"data\":{\"s\":\"\\\"q\\\" \\\\ \\/\"},\"tenantid\":\"acme\","
                     "\"type\":\"order.paid\",\"id\":\"e-%zu\"}   ", i);
        break;
    case 3:
        n = snprintf(buf, sizeof buf,
                     "{\"type\":\"order.created\",\"tenantid\":\"acme\",\"id\":\"e-%zu\","
                     "\"data\":{\"big\":12345678901234567890.0125e-3,\"f\":-0.0}}", i);
        break;
    default:
        n = snprintf(buf, sizeof buf, "not json \x01%zu", i);
        buf[3] = '\0';
        buf[4] = (char)0xff;
        break;
    }
    e->event = malloc((size_t)n + 1);
    memcpy(e->event, buf, (size_t)n + 1);
    e->len = (size_t)n;
    e->retry = i % 7 == 6;
    e->extra = i % 11 == 10;
}

/* XADD n entries to `stream` at ms, ms + step, ... (seq 0, and a seq 1
 * every 13th). */
static void add_entries_to(redisContext *r, const char *stream, int64_t ms, int64_t step,
                           size_t n)
{
    for (size_t k = 0; k < n; k++) {
        cr_assert_lt(NE, sizeof E / sizeof *E);
        entry_t *e = &E[NE];
        int seq = k > 0 && NE % 13 == 12 ? 1 : 0;
        int64_t at = seq ? ms + (int64_t)(k - 1) * step : ms + (int64_t)k * step;
        snprintf(e->id, sizeof e->id, "%lld-%d", (long long)at, seq);
        make_event(NE, e);
        const char *argv[10];
        size_t lens[10];
        int argc = 0;
        argv[argc] = "XADD", lens[argc++] = 4;
        argv[argc] = stream, lens[argc++] = strlen(stream);
        argv[argc] = e->id, lens[argc++] = strlen(e->id);
        argv[argc] = "event", lens[argc++] = 5;
        argv[argc] = e->event, lens[argc++] = e->len;
        if (e->retry) {
            argv[argc] = "retry", lens[argc++] = 5;
            argv[argc] = "{\"attempt\":2}", lens[argc++] = 13;
        }
        if (e->extra) {
            argv[argc] = "trace", lens[argc++] = 5;
            argv[argc] = "\x00\xfftr", lens[argc++] = 4;
        }
        redisReply *x = redisCommandArgv(r, argc, argv, lens);
        cr_assert(x && x->type == REDIS_REPLY_STRING, "XADD %s: %s", e->id,
                  x && x->type == REDIS_REPLY_ERROR ? x->str : "failed");
        freeReplyObject(x);
        NE++;
    }
}

static void add_entries(redisContext *r, int64_t ms, int64_t step, size_t n)
{
    add_entries_to(r, STREAM, ms, step, n);
}

/* Whether replay dispatches entry i (JSON, not a retry). */
static bool dispatched(size_t i) { return !E[i].retry && i % 5 != 4; }

static void free_entries(void)
{
    for (size_t i = 0; i < NE; i++)
        free(E[i].event);
    NE = 0;
}

/* A consumer group that has read and acknowledged everything of stream. */
static void group_done_on(redisContext *r, const char *stream)
{
    redisReply *x = redisCommand(r, "XGROUP CREATE %s g $", stream);
    if (x && x->type == REDIS_REPLY_ERROR)
        x = (freeReplyObject(x), redisCommand(r, "XGROUP SETID %s g $", stream));
    cr_assert(x && x->type == REDIS_REPLY_STATUS, "group: %s", x ? x->str : "failed");
    freeReplyObject(x);
}

static void group_done(redisContext *r) { group_done_on(r, STREAM); }

/* ------------------------------------------------------------ trimmer */

typedef struct trimmer {
    retention_t *r;
    retention_settings_t s;
    int64_t now;
} trimmer_t;

static char PROTECT[] = "all";

static void trimmer_start(trimmer_t *t, uint64_t max_age_ms, bool archiver)
{
    memset(t, 0, sizeof *t);
    t->r = retention_new(STREAM, "host-a", 1, NULL);
    cr_assert_not_null(t->r);
    t->s = (retention_settings_t){.max_age_ms = max_age_ms, .protect_groups = PROTECT,
                                  .interval_ms = 100, .archive = RETENTION_ARCHIVE_POSTGRES,
                                  .archive_retention_ms = 0};
    if (archiver) {
        retention_archive_opts_t o = {.postgres_url = fx_pg.url, .redis_url = fx_redis.url,
                                      .redis_connect_ms = 2000,
                                      .redis_command_ms = 5000, .partitions_ahead = 3};
        cr_assert_eq(retention_start_archive(t->r, &o), 0);
    }
}

static void tick(trimmer_t *t, redisContext *r)
{
    t->now += 100000;
    cr_assert_eq(retention_tick(t->r, r, &t->s, t->now), 0, "retention_tick: %s", r->errstr);
}

static long long xlen(redisContext *r) { return harness_redis_int(r, "XLEN %s", STREAM); }

static long long archived_rows(PGconn *c)
{
    return fx_count(c, "SELECT count(*) FROM events_archive");
}

static int idcmp(const char *a, const char *b)
{
    long long am = strtoll(a, NULL, 10), bm = strtoll(b, NULL, 10);
    if (am != bm)
        return am < bm ? -1 : 1;
    long long as = strtoll(strchr(a, '-') + 1, NULL, 10);
    long long bs = strtoll(strchr(b, '-') + 1, NULL, 10);
    return as < bs ? -1 : as > bs;
}

/* No entry from E[first] on is in neither place: the archive holds a
 * prefix of them (it archives oldest first), so the stream must start at
 * or before the first entry it lacks. */
static void expect_no_loss(redisContext *r, PGconn *c, size_t first)
{
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM events_archive WHERE (ms, seq) >= (%lld, %s)",
             (long long)strtoll(E[first].id, NULL, 10), strchr(E[first].id, '-') + 1);
    size_t rows = (size_t)fx_count(c, sql);
    if (first + rows >= NE)
        return;
    redisReply *x = redisCommand(r, "XRANGE %s - + COUNT 1", STREAM);
    cr_assert(x && x->type == REDIS_REPLY_ARRAY);
    cr_assert(x->elements == 1, "entries from %s on are in neither Redis nor the archive",
              E[first + rows].id);
    cr_assert(idcmp(x->element[0]->element[0]->str, E[first + rows].id) <= 0,
              "lost: the stream starts at %s, the archive stops before %s",
              x->element[0]->element[0]->str, E[first + rows].id);
    freeReplyObject(x);
}

/* Tick every 50 ms, checking that nothing from E[first] on is lost, until
 * XLEN is want_len and the archive holds want_rows; true when reached
 * within timeout_ms. */
static bool run_until(trimmer_t *t, redisContext *r, PGconn *c, size_t first,
                      long long want_len, long long want_rows, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    while (harness_now_ms() < deadline) {
        tick(t, r);
        expect_no_loss(r, c, first);
        if (xlen(r) == want_len && archived_rows(c) == want_rows)
            return true;
        usleep(50 * 1000);
    }
    return false;
}

static json_t *archive_health(trimmer_t *t)
{
    json_t *h = retention_health(t->r);
    json_t *a = json_incref(json_object_get(h, "archive"));
    json_decref(h);
    return a;
}

/* ------------------------------------------------------------- replay */

typedef struct got {
    char id[48];
    char *raw;
    size_t len;
} got_t;

static pthread_mutex_t got_mu = PTHREAD_MUTEX_INITIALIZER;
static got_t GOT[600];
static size_t NGOT;

static int record(void *ud, const char *job_id, unsigned partition, const char *stream_id,
                  const char *raw, size_t len)
{
    (void)ud;
    (void)job_id;
    (void)partition;
    pthread_mutex_lock(&got_mu);
    if (NGOT < sizeof GOT / sizeof *GOT) {
        got_t *g = &GOT[NGOT++];
        snprintf(g->id, sizeof g->id, "%s", stream_id);
        g->raw = malloc(len + 1);
        memcpy(g->raw, raw, len + 1);
        g->len = len;
    }
    pthread_mutex_unlock(&got_mu);
    return 0;
}

static void got_clear(void)
{
    for (size_t i = 0; i < NGOT; i++)
        free(GOT[i].raw);
    NGOT = 0;
}

/* Run one replay job over [from, to] with the archive read or not; the
 * finished job (caller decrefs). */
static json_t *replay(PGconn *c, int64_t from, int64_t to, bool archive)
{
    got_clear();
    fx_cfg.retention.archive = archive ? RETENTION_ARCHIVE_POSTGRES : RETENTION_ARCHIVE_OFF;
    fx_cfg.store.replay_chunk = 64; /* several chunks from each source */
    store_replay_worker_t *w = store_replay_worker_start(&fx_cfg, record, NULL);
    cr_assert_not_null(w);
    char id[64], err[512];
    store_replay_request_t req = {.from_ms = from, .to_ms = to};
    cr_assert_eq(store_replay_create(c, &req, 0, id, sizeof id, err, sizeof err), 0, "%s", err);
    long long deadline = harness_now_ms() + 60000;
    json_t *job = NULL;
    for (;;) {
        cr_assert_eq(store_replay_get(c, id, &job, err, sizeof err), 0, "%s", err);
        const char *st = json_string_value(json_object_get(job, "status"));
        if (strcmp(st, "pending") && strcmp(st, "running"))
            break;
        json_decref(job);
        cr_assert_lt(harness_now_ms(), deadline, "job %s did not finish", id);
        usleep(50 * 1000);
    }
    store_replay_worker_stop(w);
    cr_expect_str_eq(json_string_value(json_object_get(job, "status")), "completed", "%s",
                     json_string_value(json_object_get(job, "error")));
    return job;
}

static int64_t ms_of(const char *id) { return strtoll(id, NULL, 10); }

/* Entries [a, b) of E that replay dispatches were dispatched exactly in
 * order, byte for byte, and nothing else. */
static void expect_dispatched(size_t a, size_t b)
{
    size_t k = 0;
    for (size_t i = a; i < b; i++) {
        if (!dispatched(i))
            continue;
        cr_assert_lt(k, NGOT, "%zu dispatched, entry %s missing", NGOT, E[i].id);
        cr_expect_str_eq(GOT[k].id, E[i].id, "dispatch %zu", k);
        cr_expect(GOT[k].len == E[i].len && memcmp(GOT[k].raw, E[i].event, E[i].len) == 0,
                  "entry %s: %zu bytes differ from the original %zu", E[i].id, GOT[k].len,
                  E[i].len);
        k++;
    }
    cr_expect_eq(NGOT, k, "dispatched %zu events, want %zu", NGOT, k);
}

static long long jint(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

/* -------------------------------------------------------------- tests */

Test(archive, a_trimmed_range_is_replayed_from_the_archive_byte_identical_and_in_order)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    PGconn *c = fx_connect();
    int64_t base = wall_ms() - 600000;
    add_entries(r, base, 7, 400);
    group_done(r);
    trimmer_t t;
    trimmer_start(&t, 60000, true);
    cr_assert(run_until(&t, r, c, 0, 0, 400, 30000), "XLEN %lld, %lld archived", xlen(r),
              archived_rows(c));

    /* every field stored exactly: the event, and the others in order */
    const char *params[] = {STREAM};
    PGresult *res = PQexecParams(c, "SELECT ms || '-' || seq, event, fields FROM events_archive"
                                    " WHERE stream = $1 ORDER BY ms, seq",
                                 1, NULL, params, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);
    res = PQexecParams(c, "SELECT event, coalesce(array_length(fields, 1), 0),"
                          " fields[1], fields[2] FROM events_archive WHERE stream = $1"
                          " ORDER BY ms, seq",
                       1, NULL, params, NULL, NULL, 1);
    cr_assert_eq(PQntuples(res), 400);
    for (int i = 0; i < 400; i++) {
        const entry_t *e = &E[i];
        cr_expect(PQgetlength(res, i, 0) == (int)e->len &&
                      memcmp(PQgetvalue(res, i, 0), e->event, e->len) == 0,
                  "archived event %s differs", e->id);
        const char *n = PQgetvalue(res, i, 1);
        int nfields = (n[0] << 24) | (n[1] << 16) | (n[2] << 8) | n[3];
        cr_expect_eq(nfields, (e->retry ? 2 : 0) + (e->extra ? 2 : 0), "%s", e->id);
        if (e->retry)
            cr_expect(memcmp(PQgetvalue(res, i, 2), "retry", 5) == 0, "%s", e->id);
        else if (e->extra)
            cr_expect(PQgetlength(res, i, 3) == 4 &&
                          memcmp(PQgetvalue(res, i, 3), "\x00\xfftr", 4) == 0,
                      "%s", e->id);
    }
    PQclear(res);

    json_t *a = archive_health(&t);
    cr_expect_str_eq(json_string_value(json_object_get(a, "mode")), "postgres");
    cr_expect_str_eq(json_string_value(json_object_get(a, "watermark")), E[399].id);
    cr_expect_eq(jint(a, "archived_total"), 400);
    json_decref(a);
    retention_free(t.r);

    json_t *job = replay(c, ms_of(E[0].id), ms_of(E[399].id), true);
    expect_dispatched(0, 400);
    cr_expect(json_is_null(json_object_get(job, "warning")), "warning: %s",
              json_string_value(json_object_get(job, "warning")));
    cr_expect_eq(jint(job, "total"), 400);
    cr_expect_eq(jint(job, "processed") + jint(job, "skipped"), 400);
    cr_expect_str_eq(json_string_value(json_object_get(job, "position")), E[399].id);
    json_decref(job);
    got_clear();
    free_entries();
    PQfinish(c);
    redisFree(r);
}

Test(archive, a_window_across_the_archive_and_the_stream_is_replayed_once_in_order)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    PGconn *c = fx_connect();
    int64_t now = wall_ms();
    add_entries(r, now - 600000, 11, 150); /* past max_age: trimmed once archived */
    add_entries(r, now - 5000, 3, 150);    /* within it: archived, kept in Redis */
    group_done(r);
    trimmer_t t;
    trimmer_start(&t, 60000, true);
    cr_assert(run_until(&t, r, c, 0, 150, 300, 30000), "XLEN %lld, %lld archived", xlen(r),
              archived_rows(c));
    retention_free(t.r);

    /* the whole window: the trimmed half from the archive, then the stream */
    json_t *job = replay(c, ms_of(E[0].id), ms_of(E[299].id), true);
    expect_dispatched(0, 300);
    cr_expect(json_is_null(json_object_get(job, "warning")));
    cr_expect_eq(jint(job, "total"), 300);
    json_decref(job);

    /* from the middle of the archived part to the middle of the stream's */
    job = replay(c, ms_of(E[75].id), ms_of(E[224].id) , true);
    size_t a = 75, b = 225;
    while (a > 0 && ms_of(E[a - 1].id) == ms_of(E[75].id))
        a--;
    while (b < 300 && ms_of(E[b].id) == ms_of(E[224].id))
        b++;
    expect_dispatched(a, b);
    json_decref(job);

    /* without the archive, the same window says exactly what is gone */
    job = replay(c, ms_of(E[0].id), ms_of(E[299].id), false);
    expect_dispatched(150, 300);
    const char *warning = json_string_value(json_object_get(job, "warning"));
    cr_assert_not_null(warning);
    char want[200], t0[40], t1[40];
    time_t s0 = (time_t)(ms_of(E[0].id) / 1000), s1 = (time_t)(ms_of(E[150].id) / 1000);
    struct tm tm;
    strftime(t0, sizeof t0, "%Y-%m-%dT%H:%M:%S", gmtime_r(&s0, &tm));
    strftime(t1, sizeof t1, "%Y-%m-%dT%H:%M:%S", gmtime_r(&s1, &tm));
    snprintf(want, sizeof want, "1 missing range: %s.%03dZ to %s.%03dZ is no longer in the "
             "stream (trimmed by retention)", t0, (int)(ms_of(E[0].id) % 1000), t1,
             (int)(ms_of(E[150].id) % 1000));
    cr_expect(strstr(warning, want), "%s\nwanted %s", warning, want);
    json_decref(job);
    got_clear();
    free_entries();
    PQfinish(c);
    redisFree(r);
}

Test(archive, postgresql_down_stops_trimming_at_the_watermark_and_loses_nothing)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    PGconn *c = fx_connect();
    int64_t base = wall_ms() - 600000;
    add_entries(r, base, 5, 100);
    group_done(r);
    trimmer_t t;
    trimmer_start(&t, 60000, true);
    cr_assert(run_until(&t, r, c, 0, 0, 100, 30000), "XLEN %lld", xlen(r));
    PQfinish(c);

    /* PostgreSQL goes; 100 more entries past max_age are read and acknowledged */
    cr_assert_eq(harness_pg_stop_keep(&fx_pg), 0);
    add_entries(r, base + 100000, 5, 100);
    group_done(r);
    for (int i = 0; i < 40; i++) {
        tick(&t, r);
        usleep(50 * 1000);
    }
    cr_expect_eq(xlen(r), 100, "trimmed without the archive");
    char wm[48];
    cr_assert_eq(retention_archive_watermark(r, STREAM, wm, sizeof wm), 0);
    cr_expect_str_eq(wm, E[99].id);
    json_t *a = archive_health(&t);
    cr_expect_str_eq(json_string_value(json_object_get(a, "state")), "error");
    cr_expect(json_string_value(json_object_get(a, "last_error")), "no last_error");
    cr_expect(json_is_true(json_object_get(a, "trim_waiting")));
    json_decref(a);
    cr_expect_eq(retention_level(t.r), 2);

    /* back: the backlog is archived first, then trimmed */
    cr_assert_eq(harness_pg_start_again(&fx_pg), 0);
    c = fx_connect();
    cr_assert(run_until(&t, r, c, 0, 0, 200, 40000), "XLEN %lld, %lld archived", xlen(r),
              archived_rows(c));
    a = archive_health(&t);
    cr_expect_str_eq(json_string_value(json_object_get(a, "state")), "ok");
    cr_expect(json_is_null(json_object_get(a, "last_error")));
    json_decref(a);
    cr_expect_eq(retention_level(t.r), 0);
    retention_free(t.r);
    json_t *job = replay(c, ms_of(E[0].id), ms_of(E[199].id), true);
    expect_dispatched(0, 200);
    json_decref(job);
    got_clear();
    free_entries();
    PQfinish(c);
    redisFree(r);
}

Test(archive, a_crash_between_the_copy_and_the_watermark_archives_once_and_trims_nothing_early)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    PGconn *c = fx_connect();
    int64_t base = wall_ms() - 600000;
    add_entries(r, base, 5, 120);
    group_done(r);
    char upto[48], err[512];
    snprintf(upto, sizeof upto, "%lld-0", (long long)wall_ms());

    /* the COPY commits, then the host dies before recording the watermark */
    retention_archive_step_t st;
    cr_assert_eq(retention_archive_chunk(r, c, STREAM, "", upto, 1000, &st, err, sizeof err), 0,
                 "%s", err);
    cr_expect_eq(st.read, 120);
    cr_expect_eq(st.inserted, 120);
    cr_expect(st.caught_up);
    cr_expect_str_eq(st.last, E[119].id);

    /* a trimmer without the watermark trims nothing */
    trimmer_t t;
    trimmer_start(&t, 60000, false);
    for (int i = 0; i < 3; i++)
        tick(&t, r);
    cr_expect_eq(xlen(r), 120);

    /* the restarted host archives the chunk again: stored once, no error */
    cr_assert_eq(retention_archive_chunk(r, c, STREAM, "", upto, 1000, &st, err, sizeof err), 0,
                 "%s", err);
    cr_expect_eq(st.read, 120);
    cr_expect_eq(st.inserted, 0);
    cr_expect_eq(archived_rows(c), 120);
    /* a partial overlap too: half the rows are new */
    add_entries(r, base + 1000, 5, 40);
    snprintf(upto, sizeof upto, "%lld-0", (long long)wall_ms());
    cr_assert_eq(retention_archive_chunk(r, c, STREAM, E[99].id, upto, 1000, &st, err, sizeof err),
                 0, "%s", err);
    cr_expect_eq(st.read, 60);
    cr_expect_eq(st.inserted, 40);
    cr_expect_eq(archived_rows(c), 160);

    /* a recorded watermark alone is not enough: the trimmer also waits for
     * its archiver to have seen it in PostgreSQL */
    cr_assert_eq(retention_archive_mark(r, STREAM, E[119].id), 0);
    group_done(r);
    tick(&t, r);
    cr_expect_eq(xlen(r), 160);
    /* the watermark never goes back */
    cr_assert_eq(retention_archive_mark(r, STREAM, E[10].id), 0);
    char wm[48];
    cr_assert_eq(retention_archive_watermark(r, STREAM, wm, sizeof wm), 0);
    cr_expect_str_eq(wm, E[119].id);
    retention_free(t.r);

    /* the restarted host's archiver checks the watermark against
     * PostgreSQL, goes on from it (rows already there are stored once) and
     * only then lets the trimmer cut */
    trimmer_start(&t, 60000, true);
    cr_assert(run_until(&t, r, c, 0, 0, 160, 30000), "XLEN %lld, %lld archived", xlen(r),
              archived_rows(c));
    cr_assert_eq(retention_archive_watermark(r, STREAM, wm, sizeof wm), 0);
    cr_expect_str_eq(wm, E[159].id);
    retention_free(t.r);
    free_entries();
    PQfinish(c);
    redisFree(r);
}

Test(archive, a_watermark_beyond_what_postgresql_holds_is_lowered_and_archived_again)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    PGconn *c = fx_connect();
    int64_t base = wall_ms() - 600000;
    add_entries(r, base, 5, 50);
    group_done(r);
    /* the watermark says everything is archived, but PostgreSQL has nothing
     * (a restored or truncated archive): nothing may go before it is there */
    cr_assert_eq(retention_archive_mark(r, STREAM, E[49].id), 0);
    trimmer_t t;
    trimmer_start(&t, 60000, true);
    cr_assert(run_until(&t, r, c, 0, 0, 50, 30000), "XLEN %lld, %lld archived", xlen(r),
              archived_rows(c));
    char wm[48];
    cr_assert_eq(retention_archive_watermark(r, STREAM, wm, sizeof wm), 0);
    cr_expect_str_eq(wm, E[49].id);
    retention_free(t.r);
    free_entries();
    PQfinish(c);
    redisFree(r);
}

Test(archive, the_missing_range_with_the_archive_is_what_neither_holds)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    PGconn *c = fx_connect();
    int64_t now = wall_ms();
    add_entries(r, now - 600000, 11, 60);
    group_done(r);
    /* trimmed while the archive was off: gone from both */
    trimmer_t t;
    trimmer_start(&t, 60000, true);
    t.s.archive = RETENTION_ARCHIVE_OFF;
    for (int i = 0; i < 3; i++)
        tick(&t, r);
    cr_assert_eq(xlen(r), 0);
    /* then archived (and trimmed) */
    add_entries(r, now - 300000, 7, 60);
    add_entries(r, now - 5000, 3, 60);
    group_done(r);
    t.s.archive = RETENTION_ARCHIVE_POSTGRES;
    cr_assert(run_until(&t, r, c, 60, 60, 120, 30000), "XLEN %lld, %lld archived", xlen(r),
              archived_rows(c));
    retention_free(t.r);

    json_t *job = replay(c, ms_of(E[0].id), ms_of(E[179].id), true);
    expect_dispatched(60, 180);
    const char *warning = json_string_value(json_object_get(job, "warning"));
    cr_assert_not_null(warning);
    char want[300], t0[40], t1[40];
    time_t s0 = (time_t)(ms_of(E[0].id) / 1000), s1 = (time_t)(ms_of(E[60].id) / 1000);
    struct tm tm;
    strftime(t0, sizeof t0, "%Y-%m-%dT%H:%M:%S", gmtime_r(&s0, &tm));
    strftime(t1, sizeof t1, "%Y-%m-%dT%H:%M:%S", gmtime_r(&s1, &tm));
    snprintf(want, sizeof want, "1 missing range: %s.%03dZ to %s.%03dZ is neither in the stream "
             "nor in the archive", t0, (int)(ms_of(E[0].id) % 1000), t1,
             (int)(ms_of(E[60].id) % 1000));
    cr_expect(strstr(warning, want), "%s\nwanted %s", warning, want);
    cr_expect_eq(jint(job, "total"), 120);
    json_decref(job);
    got_clear();
    free_entries();
    PQfinish(c);
    redisFree(r);
}

Test(archive, the_publish_guard_makes_room_only_below_the_watermark)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    int64_t base = wall_ms() - 600000;
    add_entries(r, base, 5, 5);
    group_done(r);
    /* the trimmer publishes the policy: cap 5, archive on (no archiver here) */
    trimmer_t t;
    trimmer_start(&t, 0, false);
    t.s.max_entries = 5;
    tick(&t, r);
    char err[512], id[64];
    evbus_client_t *cl = evbus_client_new(fx_redis.url, STREAM, err, sizeof err);
    cr_assert_not_null(cl, "%s", err);
    const char *ev = "{\"type\":\"order.created\",\"tenantid\":\"acme\",\"id\":\"x\"}";
    int rc = evbus_publish_raw(cl, ev, strlen(ev), NULL, id, sizeof id, err, sizeof err);
    cr_expect_eq(rc, EVBUS_CLIENT_EFULL, "published past the cap: %s", err);
    cr_expect(strstr(err, "the archive (retention.archive) has not stored them yet"), "%s", err);
    cr_expect_eq(xlen(r), 5);
    /* once the first entry is archived, the guard may trim it */
    cr_assert_eq(retention_archive_mark(r, STREAM, E[0].id), 0);
    rc = evbus_publish_raw(cl, ev, strlen(ev), NULL, id, sizeof id, err, sizeof err);
    cr_expect_eq(rc, 0, "%s", err);
    cr_expect_eq(xlen(r), 5);
    redisReply *x = redisCommand(r, "XRANGE %s - + COUNT 1", STREAM);
    cr_expect_str_eq(x->element[0]->element[0]->str, E[1].id);
    freeReplyObject(x);
    evbus_client_free(cl);
    retention_free(t.r);
    free_entries();
    redisFree(r);
}

Test(archive, partitions_are_created_ahead_and_expired_days_dropped_whole)
{
    PGconn *c = fx_connect();
    int64_t now = wall_ms(), day = 86400000;
    char old35[48], old40[48], today[48];
    snprintf(old35, sizeof old35, "%lld-0", (long long)(now - 35 * day));
    snprintf(old40, sizeof old40, "%lld-0", (long long)(now - 40 * day));
    snprintf(today, sizeof today, "%lld-0", (long long)now);
    PQclear(PQexec(c, "SELECT evbus_archive_partition_create("
                      "((now() AT TIME ZONE 'UTC') - interval '35 days')::date)"));
    const char *f[] = {"event", "{}"};
    size_t l[] = {5, 2};
    store_archive_entry_t e[] = {{old40, f, l, 2}, {old35, f, l, 2}, {today, f, l, 2}};
    long inserted;
    char err[512];
    cr_assert_eq(store_archive_write(c, STREAM, e, 3, &inserted, err, sizeof err), 0, "%s", err);
    cr_expect_eq(inserted, 3);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events_archive_default"), 1);

    store_retention_t rt = {.retention_s = 30 * 86400, .partitions_ahead = 5};
    store_upkeep_t up;
    cr_assert_eq(store_archive_upkeep(c, &rt, true, now, &up, err, sizeof err), 0, "%s", err);
    cr_expect_eq(up.created, 2, "today + 3 exist since the migration; + 4 and + 5 are new");
    cr_expect_eq(up.dropped, 1);
    cr_expect_eq(archived_rows(c), 1, "only today's entry is left");
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM pg_inherits WHERE inhparent ="
                             " 'events_archive'::regclass"),
                 1 + 6);
    /* without create and retention, a round changes nothing */
    rt.retention_s = 0;
    cr_assert_eq(store_archive_upkeep(c, &rt, false, now, &up, err, sizeof err), 0, "%s", err);
    cr_expect_eq(up.created + up.dropped, 0);
    PQfinish(c);
}

Test(archive, an_entry_id_beyond_bigint_is_refused_by_name)
{
    PGconn *c = fx_connect();
    const char *f[] = {"event", "{}"};
    size_t l[] = {5, 2};
    store_archive_entry_t e[] = {{"1-1", f, l, 2}, {"1-18446744073709551615", f, l, 2}};
    long inserted;
    char err[512];
    cr_expect_eq(store_archive_write(c, STREAM, e, 2, &inserted, err, sizeof err), STORE_EINVAL);
    cr_expect(strncmp(err, "entries[1]: id 1-18446744073709551615", 37) == 0, "%s", err);
    cr_expect_eq(archived_rows(c), 0, "nothing of a refused chunk is stored");
    PQfinish(c);
}

Test(archive, while_a_group_drains_a_backlog_the_archiver_takes_one_chunk_per_round)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    PGconn *c = fx_connect();
    for (int i = 0; i < 30000; i++)
        redisAppendCommand(r, "XADD %s * event {\"type\":\"order.created\",\"i\":%d}", STREAM, i);
    for (int i = 0; i < 30000; i++) {
        redisReply *x = NULL;
        cr_assert_eq(redisGetReply(r, (void **)&x), REDIS_OK);
        freeReplyObject(x);
    }
    group_done(r);
    /* an unprotected group 30,000 entries behind: a drain in progress */
    harness_redis_int(r, "XGROUP CREATE %s slow 0", STREAM);
    trimmer_t t;
    trimmer_start(&t, 3600000, true);
    static char only_g[] = "g";
    t.s.protect_groups = only_g;
    t.s.interval_ms = 5000;
    tick(&t, r);
    long long until = harness_now_ms() + 10000;
    while (archived_rows(c) < RETENTION_ARCHIVE_CHUNK && harness_now_ms() < until)
        usleep(50 * 1000);
    usleep(1000 * 1000);
    cr_expect_eq(archived_rows(c), RETENTION_ARCHIVE_CHUNK,
                 "one chunk per round while paced, not %lld rows", archived_rows(c));
    json_t *a = archive_health(&t);
    cr_expect_str_eq(json_string_value(json_object_get(a, "state")), "paced");
    cr_expect_gt(jint(a, "lag_entries"), 0);
    json_decref(a);
    /* the backlog is gone: flat out until caught up */
    harness_redis_int(r, "XGROUP DESTROY %s slow", STREAM);
    long long deadline = harness_now_ms() + 30000;
    while (archived_rows(c) < 30000 && harness_now_ms() < deadline)
        usleep(50 * 1000);
    cr_expect_eq(archived_rows(c), 30000);
    a = archive_health(&t);
    cr_expect_str_eq(json_string_value(json_object_get(a, "state")), "ok");
    cr_expect_eq(jint(a, "lag_entries"), 0);
    json_decref(a);
    cr_expect_eq(xlen(r), 30000, "nothing is younger than max_age: archived, not trimmed");
    retention_free(t.r);
    PQfinish(c);
    redisFree(r);
}

/* ---------------------------------------------------------- partitions */

#define NPART 3
static const char *const PART[NPART] = {"{evbus:events:0}", "{evbus:events:1}",
                                        "{evbus:events:2}"};

Test(archive, one_archiver_stores_every_partitions_entries_under_its_stream_and_replay_reads_one)
{
    redisContext *r = harness_redis_connect(&fx_redis);
    PGconn *c = fx_connect();
    /* partition p holds E[100p .. 100p + 100), interleaved in time */
    int64_t base = wall_ms() - 600000;
    for (unsigned p = 0; p < NPART; p++) {
        add_entries_to(r, PART[p], base + p, 7, 100);
        group_done_on(r, PART[p]);
    }
    /* the trimmers of one stream's partitions, led by partition 0's */
    retention_t *t[NPART];
    for (unsigned p = 0; p < NPART; p++) {
        t[p] = retention_new(PART[p], "host-a", NPART, p ? t[0] : NULL);
        cr_assert_not_null(t[p]);
    }
    retention_settings_t s = {.max_age_ms = 60000, .protect_groups = PROTECT, .interval_ms = 100,
                              .archive = RETENTION_ARCHIVE_POSTGRES};
    retention_archive_opts_t o = {.postgres_url = fx_pg.url, .redis_url = fx_redis.url,
                                  .redis_connect_ms = 2000, .redis_command_ms = 5000,
                                  .partitions_ahead = 3};
    cr_assert_eq(retention_start_archive(t[0], &o), 0);
    int64_t now = 0;
    long long deadline = harness_now_ms() + 30000, left = -1, rows = -1;
    while (harness_now_ms() < deadline) {
        now += 100000;
        for (unsigned p = 0; p < NPART; p++)
            cr_assert_eq(retention_tick(t[p], r, &s, now), 0, "%s", r->errstr);
        left = 0;
        for (unsigned p = 0; p < NPART; p++) {
            long long n = harness_redis_int(r, "XLEN %s", PART[p]);
            long long stored = 0;
            char sql[160];
            snprintf(sql, sizeof sql,
                     "SELECT count(*) FROM events_archive WHERE stream = '%s'", PART[p]);
            stored = fx_count(c, sql);
            /* nothing in neither place: what left the stream is stored */
            cr_assert_geq(stored + n, 100, "%s: %lld in the stream, %lld archived", PART[p], n,
                          stored);
            left += n;
        }
        rows = archived_rows(c);
        if (left == 0 && rows == 300)
            break;
        usleep(50 * 1000);
    }
    cr_assert(left == 0 && rows == 300, "%lld entries left in the partitions, %lld archived",
              left, rows);
    for (unsigned p = 0; p < NPART; p++) {
        char sql[200];
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM events_archive WHERE stream = '%s'", PART[p]);
        cr_expect_eq(fx_count(c, sql), 100, "rows of %s", PART[p]);
        /* each partition's watermark, in its own policy hash */
        redisReply *w = redisCommand(r, "HGET %s:retention archived", PART[p]);
        cr_expect(w && w->type == REDIS_REPLY_STRING && !strcmp(w->str, E[100 * p + 99].id),
                  "watermark of %s: %s, want %s", PART[p], w && w->str ? w->str : "none",
                  E[100 * p + 99].id);
        freeReplyObject(w);
        json_t *h = retention_health(t[p]);
        json_t *a = json_object_get(h, "archive");
        cr_expect_str_eq(json_string_value(json_object_get(a, "watermark")), E[100 * p + 99].id);
        cr_expect_eq(jint(a, "archived_total"), 100, "%s", PART[p]);
        json_decref(h);
    }
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events_archive WHERE stream = '" STREAM "'"),
                 0, "rows under the unpartitioned stream's name");
    for (unsigned p = 0; p < NPART; p++)
        retention_free(t[p]);

    /* replay of partition 1 reads its history back from the archive */
    fx_cfg.core.stream = (char *)PART[1];
    json_t *job = replay(c, ms_of(E[100].id), ms_of(E[199].id), true);
    expect_dispatched(100, 200);
    cr_expect_eq(jint(job, "total"), 100);
    json_decref(job);
    got_clear();
    free_entries();
    PQfinish(c);
    redisFree(r);
}
