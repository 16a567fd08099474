/*
 * libevbus dead-letter operations against a real redis-server.  Entries
 * are written with hiredis in the daemon's wire format (evbus_client.h),
 * so these tests pin that format from the reader's side.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "client/evbus_client.h"
#include "harness.h"

#define STREAM "evbus:events"
#define DLQ "evbus:events:dlq"

static harness_redis_t R;
static redisContext *rc_;
static evbus_client_t *C;

static void setup(void)
{
    cr_assert_eq(harness_redis_start(&R, false), 0, "redis-server did not start");
    rc_ = harness_redis_connect(&R);
    cr_assert_not_null(rc_);
    char err[256];
    C = evbus_client_new(R.url, STREAM, err, sizeof err);
    cr_assert_not_null(C, "%s", err);
}

static void teardown(void)
{
    evbus_client_free(C);
    redisFree(rc_);
    harness_redis_stop(&R);
}

TestSuite(dlq, .init = setup, .fini = teardown, .timeout = 60);

/* A dead letter as the daemon writes it; returns its DLQ id in out. */
static void add_dead(const char *type, const char *tenant, const char *reason, char out[32])
{
    char event[256];
    snprintf(event, sizeof event,
             "{\"specversion\":\"1.0\",\"id\":\"ev-%s-%s\",\"type\":\"%s\",\"tenantid\":\"%s\","
             "\"source\":\"/t\",\"data\":{}}",
             type, tenant, type, tenant);
    redisReply *r = redisCommand(
        rc_,
        "XADD %s * event %s stream %s id %s event_id ev-%s-%s type %s tenant %s reason %s "
        "handlers %s attempts %s error %s first_failure %s last_failure %s",
        DLQ, event, STREAM, "1700000000000-7", type, tenant, type, tenant, reason,
        "[\"inst/sub\"]", "3", "boom: handler failed", "2026-11-26T22:00:00.000Z",
        "2026-11-26T22:05:00.000Z");
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    snprintf(out, 32, "%s", r->str);
    freeReplyObject(r);
}

Test(dlq, get_reads_every_wire_field)
{
    char id[32];
    add_dead("order.failed", "acme", "retries_exhausted", id);
    evbus_dlq_entry_t e;
    cr_assert_eq(evbus_dlq_get(C, DLQ, id, NULL, &e, NULL, 0), 0);
    cr_assert_str_eq(e.dlq_id, id);
    cr_assert_str_eq(e.stream, STREAM);
    cr_assert_str_eq(e.orig_id, "1700000000000-7");
    cr_assert_str_eq(e.event_id, "ev-order.failed-acme");
    cr_assert_str_eq(e.type, "order.failed");
    cr_assert_str_eq(e.tenant, "acme");
    cr_assert_str_eq(e.reason, "retries_exhausted");
    cr_assert_str_eq(e.handlers, "[\"inst/sub\"]");
    cr_assert_eq(e.attempts, 3);
    cr_assert_str_eq(e.error, "boom: handler failed");
    cr_assert_str_eq(e.first_failure, "2026-11-26T22:00:00.000Z");
    cr_assert_str_eq(e.last_failure, "2026-11-26T22:05:00.000Z");
    cr_assert_null(e.replay_job);
    cr_assert(strstr(e.event, "\"tenantid\":\"acme\"") != NULL);

    json_t *j = evbus_dlq_entry_json(&e);
    cr_assert_not_null(j);
    cr_assert_str_eq(json_string_value(json_object_get(j, "dlq_id")), id);
    cr_assert_eq(json_integer_value(json_object_get(j, "attempts")), 3);
    cr_assert(json_is_array(json_object_get(j, "handlers")));
    cr_assert(json_is_null(json_object_get(j, "replay_job")));
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "event"), "type")),
                     "order.failed");
    json_decref(j);
    evbus_dlq_entry_free(&e);
}

Test(dlq, get_tolerates_missing_fields_and_reads_replay_job)
{
    redisReply *r = redisCommand(rc_, "XADD %s * event %s reason unparseable replay_job job-9",
                                 DLQ, "{not json");
    char id[32];
    snprintf(id, sizeof id, "%s", r->str);
    freeReplyObject(r);
    evbus_dlq_entry_t e;
    cr_assert_eq(evbus_dlq_get(C, DLQ, id, NULL, &e, NULL, 0), 0);
    cr_assert_str_eq(e.type, "");
    cr_assert_str_eq(e.tenant, "");
    cr_assert_str_eq(e.replay_job, "job-9");
    cr_assert_eq(e.attempts, 0);
    json_t *j = evbus_dlq_entry_json(&e);
    cr_assert(json_is_null(json_object_get(j, "event")));
    cr_assert_str_eq(json_string_value(json_object_get(j, "raw")), "{not json");
    json_decref(j);
    evbus_dlq_entry_free(&e);
    /* An entry without a tenant is invisible to any tenant-scoped call. */
    cr_assert_eq(evbus_dlq_get(C, DLQ, id, "acme", &e, NULL, 0), 1);
}

Test(dlq, get_missing_is_not_found_and_bad_id_is_einval)
{
    evbus_dlq_entry_t e;
    char err[256];
    cr_assert_eq(evbus_dlq_get(C, DLQ, "1-1", NULL, &e, err, sizeof err), 1);
    cr_assert(strstr(err, "not found") != NULL, "%s", err);
    cr_assert_eq(evbus_dlq_get(C, DLQ, "abc", NULL, &e, err, sizeof err), EVBUS_CLIENT_EINVAL);
    cr_assert_eq(evbus_dlq_get(C, DLQ, "1-", NULL, &e, err, sizeof err), EVBUS_CLIENT_EINVAL);
}

Test(dlq, list_is_newest_first_with_offset_and_limit)
{
    char ids[30][32];
    for (int i = 0; i < 30; i++)
        add_dead("a.b", "t", "reject", ids[i]);
    evbus_dlq_entry_t *es;
    size_t n;
    cr_assert_eq(evbus_dlq_list(C, DLQ, NULL, 0, 10, &es, &n, NULL, 0), 0);
    cr_assert_eq(n, 10);
    cr_assert_str_eq(es[0].dlq_id, ids[29]);
    cr_assert_str_eq(es[9].dlq_id, ids[20]);
    evbus_dlq_list_free(es, n);

    cr_assert_eq(evbus_dlq_list(C, DLQ, NULL, 25, 10, &es, &n, NULL, 0), 0);
    cr_assert_eq(n, 5);
    cr_assert_str_eq(es[0].dlq_id, ids[4]);
    cr_assert_str_eq(es[4].dlq_id, ids[0]);
    evbus_dlq_list_free(es, n);

    cr_assert_eq(evbus_dlq_list(C, DLQ, NULL, 30, 10, &es, &n, NULL, 0), 0);
    cr_assert_eq(n, 0);
    cr_assert_null(es);
    cr_assert_eq(evbus_dlq_count(C, DLQ, NULL, NULL, 0), 30);
}

Test(dlq, list_spans_scan_pages)
{
    /* More entries than one XREVRANGE page (500) so paging is exercised. */
    for (int i = 0; i < 1200; i++)
        freeReplyObject(redisCommand(rc_, "XADD %s * event {} type %s tenant %s", DLQ,
                                     i % 2 ? "odd.one" : "even.one", "t"));
    evbus_dlq_filter_t f = {.type = "odd.one"};
    cr_assert_eq(evbus_dlq_count(C, DLQ, &f, NULL, 0), 600);
    cr_assert_eq(evbus_dlq_count(C, DLQ, NULL, NULL, 0), 1200);
    evbus_dlq_entry_t *es;
    size_t n;
    cr_assert_eq(evbus_dlq_list(C, DLQ, &f, 590, 100, &es, &n, NULL, 0), 0);
    cr_assert_eq(n, 10);
    evbus_dlq_list_free(es, n);
}

Test(dlq, list_limit_outside_1_to_10000_is_einval)
{
    evbus_dlq_entry_t *es;
    size_t n;
    char err[256];
    cr_assert_eq(evbus_dlq_list(C, DLQ, NULL, 0, 10001, &es, &n, err, sizeof err),
                 EVBUS_CLIENT_EINVAL);
    cr_assert(strstr(err, "limit") != NULL);
    cr_assert_eq(evbus_dlq_list(C, DLQ, NULL, 0, 0, &es, &n, NULL, 0), EVBUS_CLIENT_EINVAL);
    cr_assert_eq(evbus_dlq_list(C, DLQ, NULL, 0, 10000, &es, &n, NULL, 0), 0);
    char next[EVBUS_STREAM_ID_LEN];
    cr_assert_eq(evbus_dlq_page(C, DLQ, NULL, NULL, 10001, &es, &n, next, NULL, 0),
                 EVBUS_CLIENT_EINVAL);
}

Test(dlq, list_filters_by_tenant_and_type)
{
    char id[32];
    add_dead("order.created", "acme", "reject", id);
    add_dead("order.item.added", "acme", "reject", id);
    add_dead("order", "acme", "reject", id);
    add_dead("orders.x", "acme", "reject", id);
    add_dead("order.created", "globex", "reject", id);

    evbus_dlq_filter_t f = {.tenant = "globex"};
    evbus_dlq_entry_t *es;
    size_t n;
    cr_assert_eq(evbus_dlq_list(C, DLQ, &f, 0, 100, &es, &n, NULL, 0), 0);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(es[0].tenant, "globex");
    evbus_dlq_list_free(es, n);

    f = (evbus_dlq_filter_t){.tenant = "acme", .type = "order.created"};
    cr_assert_eq(evbus_dlq_count(C, DLQ, &f, NULL, 0), 1);
    f = (evbus_dlq_filter_t){.tenant = "acme", .type = "order.**"};
    cr_assert_eq(evbus_dlq_count(C, DLQ, &f, NULL, 0), 3, "order.** covers order and below only");
    f = (evbus_dlq_filter_t){.type = "**"};
    cr_assert_eq(evbus_dlq_count(C, DLQ, &f, NULL, 0), 5);
    f = (evbus_dlq_filter_t){.tenant = "nobody"};
    cr_assert_eq(evbus_dlq_count(C, DLQ, &f, NULL, 0), 0);

    const char *bad[] = {"order.*", "ord*", "Order", ".**", "a.**.b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f = (evbus_dlq_filter_t){.type = bad[i]};
        cr_assert_eq(evbus_dlq_count(C, DLQ, &f, NULL, 0), EVBUS_CLIENT_EINVAL, "%s", bad[i]);
    }
}

Test(dlq, retry_republishes_as_new_entry_and_removes_dead_letter)
{
    char id[32];
    add_dead("order.failed", "acme", "reject", id);
    evbus_dlq_entry_t e;
    cr_assert_eq(evbus_dlq_get(C, DLQ, id, NULL, &e, NULL, 0), 0);

    char new_id[EVBUS_STREAM_ID_LEN], err[256];
    cr_assert_eq(evbus_dlq_retry(C, DLQ, id, "acme", new_id, sizeof new_id, err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", DLQ), 0);
    redisReply *r = redisCommand(rc_, "XRANGE %s %s %s", STREAM, new_id, new_id);
    cr_assert_eq(r->elements, 1);
    redisReply *kv = r->element[0]->element[1];
    cr_assert_eq(kv->elements, 6);
    cr_assert_str_eq(kv->element[0]->str, "event");
    cr_assert_str_eq(kv->element[1]->str, e.event, "the original bytes must be kept");
    cr_assert_str_eq(kv->element[2]->str, "retried_from");
    cr_assert_str_eq(kv->element[3]->str, id);
    cr_assert_str_eq(kv->element[4]->str, "orig_id");
    cr_assert_str_eq(kv->element[5]->str, "1700000000000-7");
    freeReplyObject(r);
    evbus_dlq_entry_free(&e);

    cr_assert_eq(evbus_dlq_retry(C, DLQ, id, NULL, new_id, sizeof new_id, NULL, 0), 1,
                 "a retried dead letter is gone");
}

Test(dlq, other_tenant_sees_not_found_everywhere)
{
    char id[32];
    add_dead("order.failed", "acme", "reject", id);
    evbus_dlq_entry_t e;
    char new_id[EVBUS_STREAM_ID_LEN], err[256];
    cr_assert_eq(evbus_dlq_get(C, DLQ, id, "globex", &e, err, sizeof err), 1);
    cr_assert(strstr(err, "not found") != NULL);
    cr_assert_eq(evbus_dlq_retry(C, DLQ, id, "globex", new_id, sizeof new_id, NULL, 0), 1);
    cr_assert_eq(evbus_dlq_delete(C, DLQ, id, "globex", NULL, 0), 1);
    evbus_dlq_filter_t f = {.tenant = "globex"};
    cr_assert_eq(evbus_dlq_purge(C, DLQ, &f, NULL, 0), 0);
    evbus_dlq_entry_t *es;
    size_t n;
    cr_assert_eq(evbus_dlq_list(C, DLQ, &f, 0, 100, &es, &n, NULL, 0), 0);
    cr_assert_eq(n, 0);
    /* Nothing happened to acme's entry. */
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", DLQ), 1);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 0);
    cr_assert_eq(evbus_dlq_get(C, DLQ, id, "acme", &e, NULL, 0), 0);
    evbus_dlq_entry_free(&e);
}

Test(dlq, delete_removes_one_entry)
{
    char a[32], b[32];
    add_dead("a.b", "t", "reject", a);
    add_dead("a.b", "t", "reject", b);
    cr_assert_eq(evbus_dlq_delete(C, DLQ, a, "t", NULL, 0), 0);
    evbus_dlq_entry_t e;
    cr_assert_eq(evbus_dlq_get(C, DLQ, a, NULL, &e, NULL, 0), 1);
    cr_assert_eq(evbus_dlq_get(C, DLQ, b, NULL, &e, NULL, 0), 0);
    evbus_dlq_entry_free(&e);
    cr_assert_eq(evbus_dlq_delete(C, DLQ, a, NULL, NULL, 0), 1);
}

Test(dlq, purge_deletes_only_matching_entries)
{
    char id[32];
    for (int i = 0; i < 700; i++)
        add_dead(i % 7 ? "order.created" : "user.created", i % 2 ? "acme" : "globex", "reject",
                 id);
    evbus_dlq_filter_t f = {.tenant = "acme", .type = "order.**"};
    ssize_t want = evbus_dlq_count(C, DLQ, &f, NULL, 0);
    cr_assert_gt(want, 0);
    cr_assert_eq(evbus_dlq_purge(C, DLQ, &f, NULL, 0), want);
    cr_assert_eq(evbus_dlq_count(C, DLQ, &f, NULL, 0), 0);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", DLQ), 700 - want);
    cr_assert_eq(evbus_dlq_purge(C, DLQ, NULL, NULL, 0), 700 - want);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", DLQ), 0);
}

Test(dlq, redis_down_is_eredis)
{
    harness_redis_stop(&R);
    evbus_dlq_entry_t *es;
    size_t n;
    cr_assert_eq(evbus_dlq_list(C, DLQ, NULL, 0, 10, &es, &n, NULL, 0), EVBUS_CLIENT_EREDIS);
    evbus_dlq_entry_t e;
    cr_assert_eq(evbus_dlq_get(C, DLQ, "1-1", NULL, &e, NULL, 0), EVBUS_CLIENT_EREDIS);
    cr_assert_eq(harness_redis_restart(&R), 0);
}

/* A dead letter at an explicit DLQ id (so its dead-letter time is known),
 * with the given reason and handlers (a JSON array). */
static void add_dead_at(const char *id, const char *type, const char *tenant,
                        const char *reason, const char *handlers)
{
    redisReply *r = redisCommand(rc_,
                                 "XADD %s %s event {\"id\":\"ev-%s\"} stream %s id 1-1 "
                                 "event_id ev-%s type %s tenant %s reason %s handlers %s "
                                 "attempts 1 error e",
                                 DLQ, id, id, STREAM, id, type, tenant, reason, handlers);
    cr_assert(r && r->type == REDIS_REPLY_STRING, "XADD %s: %s", id, r ? r->str : "no reply");
    freeReplyObject(r);
}

Test(dlq, filter_check_names_the_bad_field)
{
    char err[512];
    struct {
        evbus_dlq_filter_t f;
        const char *field;
    } bad[] = {
        {{.reason = "rejected"}, "reason"},
        {{.reason = ""}, "reason"},
        {{.handler = ""}, "handler"},
        {{.handler = "/x"}, "handler"},
        {{.handler = "a/b/c"}, "handler"},
        {{.handler = "a b"}, "handler"},
        {{.type = "a.*"}, "type"},
        {{.since_ms = 2000, .until_ms = 2000}, "since"},
        {{.until_ms = -1}, "until"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(evbus_dlq_filter_check(NULL, &bad[i].f, err, sizeof err),
                     EVBUS_CLIENT_EINVAL, "case %zu", i);
        cr_expect(strncmp(err, bad[i].field, strlen(bad[i].field)) == 0, "case %zu: %s", i, err);
    }
    evbus_dlq_filter_t ok = {.tenant = "t", .type = "a.**", .reason = "handler_gone",
                             .handler = "inst", .since_ms = 1, .until_ms = 2};
    cr_expect_eq(evbus_dlq_filter_check(NULL, &ok, err, sizeof err), 0, "%s", err);
    /* every function taking a filter refuses a bad one before reading */
    evbus_dlq_filter_t f = {.reason = "nope"};
    cr_expect_eq(evbus_dlq_count(C, DLQ, &f, err, sizeof err), EVBUS_CLIENT_EINVAL);
    cr_expect(strstr(err, "reject") != NULL, "the message lists the reasons: %s", err);
}

Test(dlq, reason_and_handler_filters)
{
    add_dead_at("1000-0", "a.b", "t", "reject", "[\"audit/main\"]");
    add_dead_at("1000-1", "a.b", "t", "reject", "[\"mail/send\",\"audit/other\"]");
    add_dead_at("1000-2", "a.b", "t", "poison", "[\"auditor/main\"]");
    add_dead_at("1000-3", "a.b", "t", "reject", "not json");
    evbus_dlq_filter_t f = {.reason = "reject"};
    cr_expect_eq(evbus_dlq_count(C, DLQ, &f, NULL, 0), 3);
    f = (evbus_dlq_filter_t){.handler = "audit/main"};
    cr_expect_eq(evbus_dlq_count(C, DLQ, &f, NULL, 0), 1);
    f = (evbus_dlq_filter_t){.handler = "audit"};
    cr_expect_eq(evbus_dlq_count(C, DLQ, &f, NULL, 0), 2, "an instance is not a prefix");
    f = (evbus_dlq_filter_t){.handler = "audit", .reason = "poison"};
    cr_expect_eq(evbus_dlq_count(C, DLQ, &f, NULL, 0), 0);
    f = (evbus_dlq_filter_t){.handler = "mail/send", .reason = "reject", .tenant = "t"};
    cr_expect_eq(evbus_dlq_count(C, DLQ, &f, NULL, 0), 1);
}

Test(dlq, since_and_until_are_dead_letter_times_from_the_dlq_id)
{
    add_dead_at("1000-0", "a.b", "t", "reject", "[]");
    add_dead_at("1999-5", "a.b", "t", "reject", "[]");
    add_dead_at("2000-0", "a.b", "t", "reject", "[]");
    add_dead_at("2000-1", "a.b", "t", "reject", "[]");
    add_dead_at("3000-0", "a.b", "t", "reject", "[]");
    evbus_dlq_filter_t f = {.since_ms = 2000};
    cr_expect_eq(evbus_dlq_count(C, DLQ, &f, NULL, 0), 3, "since is inclusive");
    f = (evbus_dlq_filter_t){.until_ms = 2000};
    cr_expect_eq(evbus_dlq_count(C, DLQ, &f, NULL, 0), 2, "until is exclusive");
    f = (evbus_dlq_filter_t){.since_ms = 1500, .until_ms = 3000};
    cr_expect_eq(evbus_dlq_count(C, DLQ, &f, NULL, 0), 3);
    evbus_dlq_entry_t *es;
    size_t n;
    char next[EVBUS_STREAM_ID_LEN];
    cr_assert_eq(evbus_dlq_page(C, DLQ, &f, "2000-1", 10, &es, &n, next, NULL, 0), 0);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(es[0].dlq_id, "2000-0");
    cr_expect_str_eq(es[1].dlq_id, "1999-5");
    cr_expect_str_eq(next, "");
    evbus_dlq_list_free(es, n);
    /* a cursor past until is bounded by until */
    cr_assert_eq(evbus_dlq_page(C, DLQ, &f, "9000-0", 1, &es, &n, next, NULL, 0), 0);
    cr_expect_str_eq(es[0].dlq_id, "2000-1");
    cr_expect_str_eq(next, "2000-1");
    evbus_dlq_list_free(es, n);
}

/* Pages of 100 over 250 entries, with dead letters added and removed
 * between pages: each entry there at the start is seen exactly once, in
 * order, and the last page says there is no next one. */
Test(dlq, page_cursor_walks_everything_once_under_concurrent_writes)
{
    char ids[250][32];
    for (int i = 0; i < 250; i++)
        add_dead("a.b", "t", "reject", ids[i]);
    char cursor[EVBUS_STREAM_ID_LEN] = "";
    int seen = 0, pages = 0;
    for (;;) {
        evbus_dlq_entry_t *es;
        size_t n;
        char next[EVBUS_STREAM_ID_LEN], err[256];
        cr_assert_eq(evbus_dlq_page(C, DLQ, NULL, cursor, 100, &es, &n, next, err, sizeof err),
                     0, "%s", err);
        pages++;
        for (size_t i = 0; i < n; i++, seen++)
            cr_assert_str_eq(es[i].dlq_id, ids[249 - seen], "entry %d", seen);
        evbus_dlq_list_free(es, n);
        char fresh[32];
        add_dead("a.b", "t", "reject", fresh); /* newer than the walk: never in it */
        if (!next[0])
            break;
        /* removing the page's last entry does not move the next page */
        cr_assert_eq(evbus_dlq_delete(C, DLQ, next, NULL, NULL, 0), 0);
        snprintf(cursor, sizeof cursor, "%s", next);
    }
    cr_expect_eq(seen, 250);
    cr_expect_eq(pages, 3);
    evbus_dlq_entry_t *es;
    size_t n;
    char next[EVBUS_STREAM_ID_LEN];
    cr_expect_eq(evbus_dlq_page(C, DLQ, NULL, "not-an-id", 10, &es, &n, next, NULL, 0),
                 EVBUS_CLIENT_EINVAL);
}

Test(dlq, page_with_exactly_limit_matches_has_no_next)
{
    char id[32];
    for (int i = 0; i < 5; i++)
        add_dead("a.b", "t", "reject", id);
    evbus_dlq_entry_t *es;
    size_t n;
    char next[EVBUS_STREAM_ID_LEN];
    cr_assert_eq(evbus_dlq_page(C, DLQ, NULL, NULL, 5, &es, &n, next, NULL, 0), 0);
    cr_expect_eq(n, 5);
    cr_expect_str_eq(next, "");
    evbus_dlq_list_free(es, n);
}

static int stop_after_two(const evbus_dlq_entry_t *e, void *ud)
{
    (void)e;
    return ++*(int *)ud == 2 ? 1 : 0;
}

static int fail_at_once(const evbus_dlq_entry_t *e, void *ud)
{
    (void)e, (void)ud;
    return -42;
}

Test(dlq, scan_stops_when_the_callback_says_so)
{
    char id[32];
    for (int i = 0; i < 5; i++)
        add_dead("a.b", "t", "reject", id);
    int calls = 0;
    cr_expect_eq(evbus_dlq_scan(C, DLQ, NULL, stop_after_two, &calls, NULL, 0), 0);
    cr_expect_eq(calls, 2);
    cr_expect_eq(evbus_dlq_scan(C, DLQ, NULL, fail_at_once, NULL, NULL, 0), -42);
}

/* The archive line of every entry: dlq_id first, then each stream field
 * in stream order, values as strings. */
static void expect_archived(const char *line, const char *dlq_id)
{
    json_error_t je;
    json_t *o = json_loads(line, 0, &je);
    cr_assert_not_null(o, "not JSON: %s", line);
    const char *key = json_object_iter_key(json_object_iter(o));
    cr_expect_str_eq(key, "dlq_id");
    cr_expect_str_eq(json_string_value(json_object_get(o, "dlq_id")), dlq_id);
    cr_expect_str_eq(json_string_value(json_object_get(o, "attempts")), "3");
    cr_expect_str_eq(json_string_value(json_object_get(o, "reason")), "reject");
    cr_expect_str_eq(json_string_value(json_object_get(o, "handlers")), "[\"inst/sub\"]");
    cr_expect(strstr(json_string_value(json_object_get(o, "event")), "\"tenantid\":\"acme\""));
    json_decref(o);
}

Test(dlq, remove_archives_first_and_reports_what_it_deleted)
{
    char a[32], b[32], other[32];
    add_dead("order.failed", "acme", "reject", a);
    add_dead("order.failed", "acme", "reject", b);
    add_dead("order.failed", "globex", "reject", other);
    char *dir = harness_tmpdir("dlq-archive");
    char path[512];
    snprintf(path, sizeof path, "%s/archive.jsonl", dir);
    const char *ids[] = {a, "1-1", b, other};
    evbus_dlq_entry_t *es;
    size_t n;
    char err[256];
    cr_assert_eq(evbus_dlq_remove(C, DLQ, ids, 4, "acme", path, &es, &n, err, sizeof err), 2,
                 "%s", err);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(es[0].dlq_id, a);
    cr_expect_str_eq(es[1].dlq_id, b);
    cr_expect_str_eq(es[1].event_id, "ev-order.failed-acme");
    evbus_dlq_list_free(es, n);
    cr_expect_eq(harness_redis_int(rc_, "XLEN %s", DLQ), 1, "globex's entry stays");
    cr_assert_eq(harness_count_lines(path), 2);
    char *text = harness_read_file(path);
    char *second = strchr(text, '\n') + 1;
    second[-1] = '\0';
    expect_archived(text, a);
    expect_archived(second, b);
    free(text);

    /* nothing matched: nothing written, nothing deleted */
    cr_assert_eq(evbus_dlq_remove(C, DLQ, ids, 2, "acme", path, NULL, NULL, NULL, 0), 0);
    cr_expect_eq(harness_count_lines(path), 2);
    harness_rmrf(dir);
    free(dir);
}

Test(dlq, remove_keeps_everything_when_the_archive_cannot_be_written)
{
    char a[32];
    add_dead("order.failed", "acme", "reject", a);
    const char *ids[] = {a};
    char err[256];
    cr_assert_eq(evbus_dlq_remove(C, DLQ, ids, 1, NULL, "/nonexistent-dir/archive.jsonl", NULL,
                                  NULL, err, sizeof err),
                 EVBUS_CLIENT_EIO);
    cr_expect(strstr(err, "/nonexistent-dir/archive.jsonl") && strstr(err, "nothing"), "%s",
              err);
    cr_expect_eq(harness_redis_int(rc_, "XLEN %s", DLQ), 1);
    /* without an archive it is simply deleted */
    cr_expect_eq(evbus_dlq_remove(C, DLQ, ids, 1, NULL, NULL, NULL, NULL, NULL, 0), 1);
    cr_expect_eq(harness_redis_int(rc_, "XLEN %s", DLQ), 0);
    const char *bad[] = {"x"};
    cr_expect_eq(evbus_dlq_remove(C, DLQ, bad, 1, NULL, NULL, NULL, NULL, NULL, 0),
                 EVBUS_CLIENT_EINVAL);
}

Test(dlq, archive_keeps_bytes_that_are_not_utf8_as_base64)
{
    redisReply *r = redisCommand(rc_, "XADD %s * event %b reason unparseable", DLQ,
                                 "\xff\xfe{", (size_t)3);
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    freeReplyObject(r);
    r = redisCommand(rc_, "XRANGE %s - +", DLQ);
    char *dir = harness_tmpdir("dlq-archive");
    char path[512];
    snprintf(path, sizeof path, "%s/a.jsonl", dir);
    char err[256];
    cr_assert_eq(evbus_dlq_archive_append(path, r->element, r->elements, err, sizeof err), 0,
                 "%s", err);
    freeReplyObject(r);
    char *text = harness_read_file(path);
    json_t *o = json_loads(text, 0, NULL);
    cr_assert_not_null(o, "%s", text);
    cr_expect_null(json_object_get(o, "event"));
    cr_expect_str_eq(json_string_value(json_object_get(o, "event_base64")), "//57");
    cr_expect_str_eq(json_string_value(json_object_get(o, "reason")), "unparseable");
    json_decref(o);
    free(text);
    harness_rmrf(dir);
    free(dir);
}

Test(dlq, retry_into_a_key_that_is_not_a_stream_keeps_the_dead_letter)
{
    redisReply *r = redisCommand(rc_, "XADD %s * event {} stream not:a:stream id 1-1 tenant t",
                                 DLQ);
    char id[32];
    snprintf(id, sizeof id, "%s", r->str);
    freeReplyObject(r);
    freeReplyObject(redisCommand(rc_, "SET not:a:stream x"));
    char new_id[EVBUS_STREAM_ID_LEN], err[256];
    cr_assert_eq(evbus_dlq_retry(C, DLQ, id, NULL, new_id, sizeof new_id, err, sizeof err),
                 EVBUS_CLIENT_EREDIS);
    cr_expect(strstr(err, "not a stream") != NULL, "%s", err);
    cr_expect_eq(harness_redis_int(rc_, "XLEN %s", DLQ), 1, "the dead letter must stay");
}
