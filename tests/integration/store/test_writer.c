/*
 * Metadata writer: status lifecycles, ordering by timestamp, batching,
 * and behaviour while PostgreSQL is down.
 */
#include "fixture.h"

#include "util/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(writer, .init = fx_pg_migrated, .fini = fx_teardown, .timeout = 180);

static store_update_t upd(const char *id, store_status_t st, int attempts, int64_t ts)
{
    return (store_update_t){.id = id, .type = "order.created", .tenant = "acme",
                            .status = st, .attempts = attempts, .timestamp_ms = ts};
}

static char *status_of(PGconn *c, const char *id)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT status FROM events WHERE id = '%s'", id);
    return fx_scalar(c, sql);
}

Test(writer, success_after_retry_ends_completed_with_attempts_and_outcomes)
{
    store_writer_t *w = store_writer_start(&fx_cfg);
    cr_assert_not_null(w);
    store_update_t u = upd("ev-1", STORE_PROCESSING, 1, 1700000000000);
    u.correlation_id = "corr-1";
    u.stream_id = "1700000000000-0";
    u.schema_version = 2;
    cr_assert_eq(store_writer_submit(w, &u), 0);
    u = upd("ev-1", STORE_RETRYING, 1, 1700000000100);
    u.last_error = "chaos/main: injected";
    u.handler_outcomes_json = "{\"audit/main\":\"ok\",\"chaos/main\":\"retry\"}";
    cr_assert_eq(store_writer_submit(w, &u), 0);
    PGconn *c = fx_connect();
    cr_assert(fx_wait_count(c, "SELECT count(*) FROM events WHERE status = 'RETRYING'", 1, 10000));
    u = upd("ev-1", STORE_COMPLETED, 2, 1700000001100);
    u.handler_outcomes_json = "{\"chaos/main\":\"ok\"}";
    cr_assert_eq(store_writer_submit(w, &u), 0);
    store_writer_stop(w, 5000);

    json_t *row = NULL;
    char err[512];
    cr_assert_eq(store_events_get(c, "ev-1", &row, err, sizeof err), 0, "%s", err);
    cr_assert_not_null(row);
    cr_expect_str_eq(json_string_value(json_object_get(row, "status")), "COMPLETED");
    cr_expect_eq(json_integer_value(json_object_get(row, "attempts")), 2);
    cr_expect_str_eq(json_string_value(json_object_get(row, "correlation_id")), "corr-1");
    cr_expect_str_eq(json_string_value(json_object_get(row, "last_error")),
                     "chaos/main: injected");
    cr_expect_eq(json_integer_value(json_object_get(row, "schema_version")), 2);
    json_t *oc = json_object_get(row, "handler_outcomes");
    cr_expect_str_eq(json_string_value(json_object_get(oc, "audit/main")), "ok");
    cr_expect_str_eq(json_string_value(json_object_get(oc, "chaos/main")), "ok");
    cr_expect(json_is_string(json_object_get(row, "completed_at")));
    cr_expect_str_eq(json_string_value(json_object_get(row, "created_at")),
                     "2023-11-14T22:13:20+00:00");
    json_decref(row);
    PQfinish(c);
}

Test(writer, dead_lettered_sequence_is_terminal_with_completed_at)
{
    store_writer_t *w = store_writer_start(&fx_cfg);
    cr_assert_not_null(w);
    store_update_t seq[] = {upd("ev-d", STORE_PROCESSING, 1, 1000),
                            upd("ev-d", STORE_RETRYING, 1, 2000),
                            upd("ev-d", STORE_RETRYING, 2, 3000),
                            upd("ev-d", STORE_DEAD_LETTERED, 3, 4000)};
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(store_writer_submit(w, &seq[i]), 0);
    store_writer_stop(w, 5000);
    PGconn *c = fx_connect();
    char *st = status_of(c, "ev-d");
    cr_assert_str_eq(st, "DEAD_LETTERED");
    free(st);
    cr_expect_eq(fx_count(c, "SELECT attempts FROM events WHERE id = 'ev-d'"), 3);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE id = 'ev-d' AND completed_at "
                             "= to_timestamp(4)"),
                 1);
    PQfinish(c);
}

Test(writer, older_update_never_overwrites_a_newer_status)
{
    store_writer_t *w = store_writer_start(&fx_cfg);
    cr_assert_not_null(w);
    PGconn *c = fx_connect();
    /* Across batches: COMPLETED is stored first, then a late PROCESSING arrives. */
    store_update_t done = upd("ev-a", STORE_COMPLETED, 1, 5000);
    cr_assert_eq(store_writer_submit(w, &done), 0);
    cr_assert(fx_wait_count(c, "SELECT count(*) FROM events WHERE id = 'ev-a'", 1, 10000));
    uint64_t written = METRIC_GET(metadata_batches);
    store_update_t late = upd("ev-a", STORE_PROCESSING, 1, 4000);
    cr_assert_eq(store_writer_submit(w, &late), 0);
    /* Within one batch: the newer timestamp wins whatever the order. */
    store_update_t b1 = upd("ev-b", STORE_IGNORED, 0, 9000);
    store_update_t b2 = upd("ev-b", STORE_PROCESSING, 0, 8000);
    cr_assert_eq(store_writer_submit(w, &b1), 0);
    cr_assert_eq(store_writer_submit(w, &b2), 0);
    store_writer_stop(w, 5000);
    cr_assert_gt(METRIC_GET(metadata_batches), written, "the late update was never sent");
    char *a = status_of(c, "ev-a"), *b = status_of(c, "ev-b");
    cr_expect_str_eq(a, "COMPLETED");
    cr_expect_str_eq(b, "IGNORED");
    free(a);
    free(b);
    PQfinish(c);
}

Test(writer, ten_thousand_updates_go_in_few_batches)
{
    store_writer_t *w = store_writer_start(&fx_cfg);
    cr_assert_not_null(w);
    uint64_t before = METRIC_GET(metadata_batches);
    char id[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(id, sizeof id, "bulk-%05d", i);
        store_update_t u = upd(id, STORE_COMPLETED, 1, 1000 + i);
        cr_assert_eq(store_writer_submit(w, &u), 0);
    }
    PGconn *c = fx_connect();
    cr_assert(fx_wait_count(c, "SELECT count(*) FROM events", 10000, 60000),
              "only %lld rows written", fx_count(c, "SELECT count(*) FROM events"));
    uint64_t batches = METRIC_GET(metadata_batches) - before;
    cr_expect_lt(batches, 200, "%llu batches for 10000 updates", (unsigned long long)batches);
    cr_expect_geq(METRIC_GET(metadata_written), 10000);
    store_writer_stop(w, 5000);
    PQfinish(c);
}

Test(writer, updates_split_over_consecutive_batches_stay_in_order)
{
    /* Small batches and a full queue: the writer builds batch k+1 while
     * batch k is in flight.  Each event's PROCESSING and COMPLETED carry the
     * same timestamp, so only the order in which they reach the server
     * decides which stays; the filler puts every 50th pair across a batch
     * boundary.  A batch written before the one queued ahead of it would
     * leave PROCESSING rows. */
    fx_cfg.store.metadata_batch_size = 100;
    fx_cfg.store.metadata_queue_size = 100000;
    store_writer_t *w = store_writer_start(&fx_cfg);
    cr_assert_not_null(w);
    store_update_t filler = upd("filler", STORE_COMPLETED, 1, 1000);
    cr_assert_eq(store_writer_submit(w, &filler), 0);
    char id[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof id, "pair-%05d", i);
        store_update_t u = upd(id, STORE_PROCESSING, 1, 5000 + i);
        cr_assert_eq(store_writer_submit(w, &u), 0);
        u = upd(id, STORE_COMPLETED, 1, 5000 + i);
        cr_assert_eq(store_writer_submit(w, &u), 0);
    }
    store_writer_stop(w, 60000);
    PGconn *c = fx_connect();
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE id LIKE 'pair-%'"), 5000);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE status <> 'COMPLETED'"), 0,
                 "rows left behind: %lld",
                 fx_count(c, "SELECT count(*) FROM events WHERE status <> 'COMPLETED'"));
    PQfinish(c);
}

Test(writer, postgres_down_submit_never_blocks_and_drops_are_counted)
{
    fx_cfg.store.metadata_queue_size = 2000;
    fx_cfg.store.metadata_batch_size = 500;
    store_writer_t *w = store_writer_start(&fx_cfg);
    cr_assert_not_null(w);
    PGconn *c = fx_connect();
    store_update_t u0 = upd("before", STORE_COMPLETED, 1, 1000);
    cr_assert_eq(store_writer_submit(w, &u0), 0);
    cr_assert(fx_wait_count(c, "SELECT count(*) FROM events", 1, 10000));
    PQfinish(c);

    cr_assert_eq(harness_pg_stop_keep(&fx_pg), 0);
    uint64_t dropped0 = METRIC_GET(metadata_dropped);
    long long t0 = harness_now_ms(), worst = 0;
    int accepted = 0;
    char id[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof id, "down-%05d", i);
        store_update_t u = upd(id, STORE_COMPLETED, 1, 2000 + i);
        long long s = harness_now_ms();
        accepted += store_writer_submit(w, &u) == 0;
        long long took = harness_now_ms() - s;
        if (took > worst)
            worst = took;
    }
    long long total = harness_now_ms() - t0;
    cr_expect_lt(total, 1000, "5000 submits took %lld ms with PostgreSQL down", total);
    cr_expect_lt(worst, 100, "one submit took %lld ms", worst);
    uint64_t dropped = METRIC_GET(metadata_dropped) - dropped0;
    cr_expect_geq(dropped, 5000 - 2000 - 500, "only %llu dropped", (unsigned long long)dropped);
    cr_expect_eq(dropped + (uint64_t)accepted, 5000);

    cr_assert_eq(harness_pg_start_again(&fx_pg), 0);
    /* The ring may still be full until the writer has reconnected. */
    store_update_t after = upd("after", STORE_COMPLETED, 1, 99000);
    long long deadline = harness_now_ms() + 30000;
    while (store_writer_submit(w, &after) != 0 && harness_now_ms() < deadline)
        usleep(20 * 1000);
    c = fx_connect();
    cr_expect(fx_wait_count(c, "SELECT count(*) FROM events WHERE id = 'after'", 1, 30000),
              "writes did not resume after PostgreSQL came back");
    /* What was queued during the outage is written, not lost. */
    cr_expect(fx_wait_count(c, "SELECT count(*) FROM events WHERE id LIKE 'down-%'",
                            accepted - 500, 30000),
              "queued updates lost: %lld of %d",
              fx_count(c, "SELECT count(*) FROM events WHERE id LIKE 'down-%'"), accepted);
    store_writer_stop(w, 5000);
    PQfinish(c);
}

Test(writer, stop_drops_and_counts_what_cannot_be_flushed)
{
    store_writer_t *w = store_writer_start(&fx_cfg);
    cr_assert_not_null(w);
    cr_assert_eq(harness_pg_stop_keep(&fx_pg), 0);
    uint64_t dropped0 = METRIC_GET(metadata_dropped);
    char id[32];
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof id, "lost-%d", i);
        store_update_t u = upd(id, STORE_COMPLETED, 1, 1000 + i);
        cr_assert_eq(store_writer_submit(w, &u), 0);
    }
    long long t0 = harness_now_ms();
    store_writer_stop(w, 300);
    cr_expect_lt(harness_now_ms() - t0, 3000, "stop overran its flush timeout");
    cr_expect_eq(METRIC_GET(metadata_dropped) - dropped0, 100);
}

Test(writer, record_published_inserts_pending_once)
{
    PGconn *c = fx_connect();
    store_update_t evs[] = {upd("pub-1", STORE_PENDING, 0, 1000),
                            upd("pub-2", STORE_PENDING, 0, 1000)};
    char err[512];
    cr_assert_eq(store_record_published(c, evs, 2, err, sizeof err), 2, "%s", err);
    cr_assert_eq(store_record_published(c, evs, 2, err, sizeof err), 0, "%s", err);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE status = 'PENDING'"), 2);
    PQfinish(c);
}

Test(writer, list_filters_by_tenant_type_status_and_limit)
{
    PGconn *c = fx_connect();
    store_update_t evs[] = {upd("l-1", STORE_PENDING, 0, 1000), upd("l-2", STORE_PENDING, 0, 2000),
                            upd("l-3", STORE_PENDING, 0, 3000)};
    evs[2].tenant = "other";
    evs[1].type = "order.paid";
    char err[512];
    cr_assert_eq(store_record_published(c, evs, 3, err, sizeof err), 3, "%s", err);
    json_t *out = NULL;
    store_event_filter_t f = {.tenant = "acme", .status = -1};
    cr_assert_eq(store_events_list(c, &f, &out, err, sizeof err), 0, "%s", err);
    cr_expect_eq(json_array_size(out), 2);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(out, 0), "id")), "l-2",
                     "not newest first");
    json_decref(out);
    f = (store_event_filter_t){.type = "order.paid", .status = STORE_PENDING};
    cr_assert_eq(store_events_list(c, &f, &out, err, sizeof err), 0, "%s", err);
    cr_expect_eq(json_array_size(out), 1);
    json_decref(out);
    f = (store_event_filter_t){.status = STORE_COMPLETED};
    cr_assert_eq(store_events_list(c, &f, &out, err, sizeof err), 0, "%s", err);
    cr_expect_eq(json_array_size(out), 0);
    json_decref(out);
    f = (store_event_filter_t){.status = -1, .since_ms = 2000, .limit = 1};
    cr_assert_eq(store_events_list(c, &f, &out, err, sizeof err), 0, "%s", err);
    cr_expect_eq(json_array_size(out), 1);
    json_decref(out);
    f = (store_event_filter_t){.status = -1, .limit = 1001};
    cr_expect_eq(store_events_list(c, &f, &out, err, sizeof err), STORE_EINVAL);
    cr_expect(strncmp(err, "limit:", 6) == 0, "%s", err);
    cr_assert_eq(store_events_get(c, "nope", &out, err, sizeof err), 0);
    cr_expect_null(out);
    PQfinish(c);
}

/* The rows travel as binary COPY: text with tabs, newlines, backslashes,
 * quotes and non-ASCII must arrive byte for byte. */
Test(writer, awkward_strings_are_stored_unchanged)
{
    store_writer_t *w = store_writer_start(&fx_cfg);
    cr_assert_not_null(w);
    static const char odd[] = "tab\there\nnew line\\N back\\slash \"quoted\" \xc3\xa9t\xc3\xa9 \xf0\x9f\x9a\x80";
    store_update_t u = upd("ev-odd\t1", STORE_DEAD_LETTERED, 4, 1700000000000);
    u.last_error = odd;
    u.source = "\\N";
    u.handler_outcomes_json = "{\"a\\tb\":\"x\\\"y\", \"\xc3\xa9\": [1, -2.5e3, true, null]}";
    cr_assert_eq(store_writer_submit(w, &u), 0);
    store_writer_stop(w, 5000);
    PGconn *c = fx_connect();
    json_t *row = NULL;
    char err[512];
    cr_assert_eq(store_events_get(c, "ev-odd\t1", &row, err, sizeof err), 0, "%s", err);
    cr_assert_not_null(row, "row missing");
    cr_expect_str_eq(json_string_value(json_object_get(row, "last_error")), odd);
    cr_expect_str_eq(json_string_value(json_object_get(row, "source")), "\\N");
    cr_expect_eq(json_integer_value(json_object_get(row, "attempts")), 4);
    json_t *oc = json_object_get(row, "handler_outcomes");
    cr_expect_str_eq(json_string_value(json_object_get(oc, "a\tb")), "x\"y");
    cr_expect_eq(json_array_size(json_object_get(oc, "\xc3\xa9")), 4);
    cr_expect_str_eq(json_string_value(json_object_get(row, "completed_at")),
                     "2023-11-14T22:13:20+00:00");
    json_decref(row);
    PQfinish(c);
}

/* Bad input costs only the bad part, never the batch it travels in. */
Test(writer, invalid_outcomes_and_utf8_lose_only_the_bad_value)
{
    store_writer_t *w = store_writer_start(&fx_cfg);
    cr_assert_not_null(w);
    uint64_t dropped0 = METRIC_GET(metadata_dropped);
    static const char *const bad_json[] = {
        "[1]", "{\"a\":1,}", "{\"a\":\"\\u0000\"}", "{\"a\":\"\\ud800\"}", "{\"a\":01}",
        "{\"a\":\"\xff\"}", "{\"a\":1} x", "{\"a\" 1}", "{\"a\":tru}", "{\"a\":\"raw\ttab\"}",
    };
    enum { NBAD = sizeof bad_json / sizeof *bad_json };
    char id[32];
    for (int i = 0; i < NBAD; i++) {
        snprintf(id, sizeof id, "badjson-%d", i);
        store_update_t u = upd(id, STORE_COMPLETED, 1, 1000 + i);
        u.handler_outcomes_json = bad_json[i];
        cr_assert_eq(store_writer_submit(w, &u), 0);
    }
    store_update_t u = upd("bad-utf8-field", STORE_COMPLETED, 1, 2000);
    u.last_error = "broken \xc3\x28 sequence";
    u.correlation_id = "\xed\xa0\x80"; /* an encoded surrogate */
    cr_assert_eq(store_writer_submit(w, &u), 0);
    u = upd("bad-id-\xc0\xaf", STORE_COMPLETED, 1, 2000);
    cr_assert_eq(store_writer_submit(w, &u), 0);
    u = upd("good", STORE_COMPLETED, 1, 3000);
    u.handler_outcomes_json = " {\"h\":\"ok\", \"n\": {\"deep\": [0.5, \"\\u00e9\\ud83d\\ude80\"]}} ";
    cr_assert_eq(store_writer_submit(w, &u), 0);
    store_writer_stop(w, 5000);

    PGconn *c = fx_connect();
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE id LIKE 'badjson-%' AND "
                             "status = 'COMPLETED' AND handler_outcomes IS NULL"),
                 NBAD, "an invalid handler_outcomes was stored or lost its row");
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE id = 'bad-utf8-field' AND "
                             "last_error IS NULL AND correlation_id IS NULL AND tenant = 'acme'"),
                 1);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE handler_outcomes->>'h' = 'ok' "
                             "AND handler_outcomes->'n'->'deep'->>1 = '\u00e9\U0001F680'"),
                 1);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events"), NBAD + 2);
    cr_expect_eq(METRIC_GET(metadata_dropped) - dropped0, 1, "the bad id was not counted");
    PQfinish(c);
}

/* Rows that already exist (PENDING from the publisher) make the direct
 * COPY fail; the batch must still land through the upsert, with the
 * consumer's status replacing PENDING. */
Test(writer, batch_meeting_existing_rows_is_upserted)
{
    PGconn *c = fx_connect();
    store_update_t pend[] = {upd("mix-1", STORE_PENDING, 0, 9000000000000),
                             upd("mix-2", STORE_PENDING, 0, 9000000000000)};
    char err[512];
    cr_assert_eq(store_record_published(c, pend, 2, err, sizeof err), 2, "%s", err);
    store_writer_t *w = store_writer_start(&fx_cfg);
    cr_assert_not_null(w);
    uint64_t giveups0 = METRIC_GET(metadata_giveups);
    char id[32];
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "mix-%d", i);
        store_update_t u = upd(id, STORE_COMPLETED, 1, 1000 + i);
        u.handler_outcomes_json = "{\"h\":\"ok\"}";
        cr_assert_eq(store_writer_submit(w, &u), 0);
    }
    store_writer_stop(w, 5000);
    cr_expect_eq(METRIC_GET(metadata_giveups), giveups0);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE status = 'COMPLETED' AND "
                             "completed_at IS NOT NULL AND handler_outcomes->>'h' = 'ok'"),
                 5);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE status = 'PENDING'"), 0);

    /* The next writer finds only new ids again and must not be stuck on
     * the slow path: rows written by COPY have the same columns. */
    w = store_writer_start(&fx_cfg);
    cr_assert_not_null(w);
    store_update_t u = upd("fresh", STORE_PROCESSING, 1, 5000);
    u.schema_version = 3;
    cr_assert_eq(store_writer_submit(w, &u), 0);
    store_writer_stop(w, 5000);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE id = 'fresh' AND status = "
                             "'PROCESSING' AND completed_at IS NULL AND schema_version = 3 AND "
                             "status_at = to_timestamp(5) AND created_at = to_timestamp(5) AND "
                             "updated_at > now() - interval '1 minute'"),
                 1);
    PQfinish(c);
}

/* Several updates of one id in one batch merge their outcomes in order. */
Test(writer, outcomes_of_one_batch_merge_in_order)
{
    store_writer_t *w = store_writer_start(&fx_cfg);
    cr_assert_not_null(w);
    store_update_t u = upd("merge", STORE_RETRYING, 1, 1000);
    u.handler_outcomes_json = "{\"a\":\"retry\",\"b\":\"ok\"}";
    cr_assert_eq(store_writer_submit(w, &u), 0);
    u = upd("merge", STORE_COMPLETED, 2, 2000);
    u.handler_outcomes_json = "{\"a\":\"ok\"}";
    cr_assert_eq(store_writer_submit(w, &u), 0);
    u = upd("merge", STORE_PROCESSING, 2, 1500); /* older: status ignored */
    cr_assert_eq(store_writer_submit(w, &u), 0);
    store_writer_stop(w, 5000);
    PGconn *c = fx_connect();
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM events WHERE id = 'merge' AND "
                             "status = 'COMPLETED' AND attempts = 2 AND "
                             "handler_outcomes::jsonb = '{\"a\":\"ok\",\"b\":\"ok\"}'::jsonb"),
                 1);
    PQfinish(c);
}

/* ---- status history (migration 0010) ---------------------------------------- */

/* The row's status_history through store_events_get (asserts it exists). */
static json_t *history_of(PGconn *c, const char *id)
{
    json_t *row = NULL;
    char err[512];
    cr_assert_eq(store_events_get(c, id, &row, err, sizeof err), 0, "%s", err);
    cr_assert_not_null(row, "no row %s", id);
    json_t *h = json_incref(json_object_get(row, "status_history"));
    json_decref(row);
    cr_assert(json_is_array(h), "status_history is not an array");
    return h;
}

static void expect_transition(json_t *h, size_t i, const char *status, int attempts,
                              const char *at, const char *error)
{
    json_t *x = json_array_get(h, i);
    cr_assert(json_is_object(x), "no transition %zu", i);
    cr_expect_str_eq(json_string_value(json_object_get(x, "status")), status, "transition %zu",
                     i);
    cr_expect_eq(json_integer_value(json_object_get(x, "attempts")), attempts, "transition %zu",
                 i);
    cr_expect_str_eq(json_string_value(json_object_get(x, "at")), at, "transition %zu", i);
    if (error)
        cr_expect_str_eq(json_string_value(json_object_get(x, "error")), error,
                         "transition %zu", i);
    else
        cr_expect(json_is_null(json_object_get(x, "error")), "transition %zu", i);
}

Test(writer, status_history_keeps_every_transition_of_one_batch_and_across_batches)
{
    store_writer_t *w = store_writer_start(&fx_cfg);
    cr_assert_not_null(w);
    PGconn *c = fx_connect();
    /* one batch: straight into events (the direct COPY) */
    store_update_t u = upd("ev-h", STORE_PROCESSING, 1, 1700000000000);
    u.stream_id = "1700000000000-0";
    cr_assert_eq(store_writer_submit(w, &u), 0);
    u = upd("ev-h", STORE_RETRYING, 1, 1700000000100);
    u.stream_id = "1700000000000-0";
    u.last_error = "chaos/main: \"quoted\"\nand a newline";
    cr_assert_eq(store_writer_submit(w, &u), 0);
    cr_assert(fx_wait_count(c, "SELECT count(*) FROM events WHERE id = 'ev-h' AND "
                               "status = 'RETRYING'", 1, 10000));
    /* later batches: the upsert appends */
    u = upd("ev-h", STORE_RETRYING, 2, 1700000001100);
    u.stream_id = "1700000000000-0";
    u.last_error = "chaos/main: again";
    cr_assert_eq(store_writer_submit(w, &u), 0);
    cr_assert(fx_wait_count(c, "SELECT count(*) FROM events WHERE id = 'ev-h' AND "
                               "attempts = 2", 1, 10000));
    u = upd("ev-h", STORE_DEAD_LETTERED, 3, 1700000003100);
    u.stream_id = "1700000000000-0";
    u.last_error = "chaos/main: gave up";
    cr_assert_eq(store_writer_submit(w, &u), 0);
    store_writer_stop(w, 5000);

    json_t *h = history_of(c, "ev-h");
    cr_assert_eq(json_array_size(h), 4, "%s", json_dumps(h, 0));
    expect_transition(h, 0, "PROCESSING", 1, "2023-11-14T22:13:20.000Z", NULL);
    expect_transition(h, 1, "RETRYING", 1, "2023-11-14T22:13:20.100Z",
                      "chaos/main: \"quoted\"\nand a newline");
    expect_transition(h, 2, "RETRYING", 2, "2023-11-14T22:13:21.100Z", "chaos/main: again");
    expect_transition(h, 3, "DEAD_LETTERED", 3, "2023-11-14T22:13:23.100Z",
                      "chaos/main: gave up");
    json_decref(h);

    /* an operator's delete of the dead letter adds PURGED */
    const char *ids[] = {"ev-h"};
    char err[512];
    cr_assert_eq(store_events_mark_purged(c, ids, 1, err, sizeof err), 1, "%s", err);
    h = history_of(c, "ev-h");
    cr_assert_eq(json_array_size(h), 5);
    json_t *p = json_array_get(h, 4);
    cr_expect_str_eq(json_string_value(json_object_get(p, "status")), "PURGED");
    cr_expect_eq(json_integer_value(json_object_get(p, "attempts")), 3);
    cr_expect(strlen(json_string_value(json_object_get(p, "at"))) == 24, "RFC 3339 with ms");
    json_decref(h);
    PQfinish(c);
}

Test(writer, status_history_is_bounded_to_the_newest_and_errors_are_cut)
{
    fx_cfg.store.metadata_batch_size = 7; /* several batches: the upsert's bound too */
    store_writer_t *w = store_writer_start(&fx_cfg);
    cr_assert_not_null(w);
    char big[1000];
    memset(big, 'e', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memcpy(big + 299, "é", 2); /* a 2-byte character across the 300-byte cut */
    for (int i = 1; i <= 45; i++) {
        store_update_t u = upd("ev-b", STORE_RETRYING, i, 1700000000000 + i);
        u.stream_id = "1700000000000-7";
        u.last_error = big;
        cr_assert_eq(store_writer_submit(w, &u), 0);
        if (i % 9 == 0)
            usleep(300 * 1000);
    }
    store_writer_stop(w, 5000);
    PGconn *c = fx_connect();
    json_t *h = history_of(c, "ev-b");
    cr_assert_eq(json_array_size(h), STORE_STATUS_HISTORY_MAX);
    for (size_t i = 0; i < STORE_STATUS_HISTORY_MAX; i++)
        cr_expect_eq(json_integer_value(json_object_get(json_array_get(h, i), "attempts")),
                     45 - STORE_STATUS_HISTORY_MAX + 1 + (long long)i, "the newest, in order");
    const char *e = json_string_value(json_object_get(json_array_get(h, 0), "error"));
    cr_expect_eq(strlen(e), 299, "cut before the character that does not fit");
    json_decref(h);
    PQfinish(c);
}

Test(writer, without_migration_0010_the_writer_still_writes_and_the_history_is_empty)
{
    PGconn *c = fx_connect();
    /* as a database not yet migrated to 0010 */
    PGresult *r = PQexec(c, "ALTER TABLE events DROP COLUMN status_history;"
                            " DELETE FROM schema_migrations WHERE version = 10");
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
    PQclear(r);
    store_writer_t *w = store_writer_start(&fx_cfg);
    cr_assert_not_null(w);
    store_update_t u = upd("ev-old", STORE_PROCESSING, 1, 1700000000000);
    u.stream_id = "1700000000000-3";
    cr_assert_eq(store_writer_submit(w, &u), 0);
    cr_assert(fx_wait_count(c, "SELECT count(*) FROM events WHERE id = 'ev-old'", 1, 10000));
    u = upd("ev-old", STORE_COMPLETED, 1, 1700000000500);
    u.stream_id = "1700000000000-3";
    cr_assert_eq(store_writer_submit(w, &u), 0);
    store_writer_stop(w, 5000);
    char *st = status_of(c, "ev-old");
    cr_expect_str_eq(st, "COMPLETED");
    free(st);
    json_t *h = history_of(c, "ev-old");
    cr_expect_eq(json_array_size(h), 0, "no column: an empty history, not an error");
    json_decref(h);
    PQfinish(c);
}
