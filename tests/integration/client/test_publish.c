/*
 * libevbus publishing against a real redis-server: event completion and
 * checks, single/batch/raw publish, the retention guard, and the split between
 * EVBUS_CLIENT_EINVAL (bad input) and EVBUS_CLIENT_EREDIS (Redis failure).
 */
#include <criterion/criterion.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "client/evbus_client.h"
#include "harness.h"

#define STREAM "evbus:events"

static harness_redis_t R;
static redisContext *rc_;

static void setup(void)
{
    cr_assert_eq(harness_redis_start(&R, false), 0, "redis-server did not start");
    rc_ = harness_redis_connect(&R);
    cr_assert_not_null(rc_);
}

static void teardown(void)
{
    redisFree(rc_);
    harness_redis_stop(&R);
}

TestSuite(publish, .init = setup, .fini = teardown, .timeout = 60);

static bool matches(const char *re, const char *s)
{
    regex_t rx;
    cr_assert_eq(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0);
    bool ok = regexec(&rx, s, 0, NULL, 0) == 0;
    regfree(&rx);
    return ok;
}

#define UUID4_RE "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
#define ULID_RE "^[0-7][0-9A-HJKMNP-TV-Z]{25}$"
#define TIME_RE "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$"

static evbus_client_t *client(void)
{
    char err[256];
    evbus_client_t *c = evbus_client_new(R.url, STREAM, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    return c;
}

static json_t *partial(const char *type, const char *tenant)
{
    return json_pack("{s:s, s:s, s:{s:i}}", "type", type, "tenantid", tenant, "data", "n", 1);
}

/* The "event" field of the one entry with this stream id, parsed. */
static json_t *stored_event(const char *id)
{
    redisReply *r = redisCommand(rc_, "XRANGE %s %s %s", STREAM, id, id);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1);
    redisReply *kv = r->element[0]->element[1];
    cr_assert_eq(kv->elements, 2);
    cr_assert_str_eq(kv->element[0]->str, "event");
    json_t *ev = json_loads(kv->element[1]->str, 0, NULL);
    cr_assert_not_null(ev);
    freeReplyObject(r);
    return ev;
}

static const char *sget(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    cr_assert_not_null(s, "attribute %s missing", k);
    return s;
}

Test(publish, completes_missing_attributes_with_uuid4_and_rfc3339_time)
{
    evbus_client_t *c = client();
    json_t *ev = partial("order.created", "acme");
    char id[EVBUS_STREAM_ID_LEN], err[256];
    cr_assert_eq(evbus_publish(c, ev, id, sizeof id, err, sizeof err), 0, "%s", err);
    cr_assert(matches("^[0-9]+-[0-9]+$", id), "stream id %s", id);

    json_t *st = stored_event(id);
    cr_assert(json_equal(st, ev), "stored event differs from the completed one");
    cr_assert_str_eq(sget(st, "specversion"), "1.0");
    cr_assert(matches(UUID4_RE, sget(st, "id")), "id %s", sget(st, "id"));
    cr_assert(matches(TIME_RE, sget(st, "time")), "time %s", sget(st, "time"));
    cr_assert(matches(UUID4_RE, sget(st, "correlationid")));
    cr_assert(strncmp(sget(st, "source"), "/evbus/", 7) == 0, "source %s", sget(st, "source"));
    cr_assert_str_neq(sget(st, "id"), sget(st, "correlationid"));
    json_decref(st);
    json_decref(ev);
    evbus_client_free(c);
}

Test(publish, generates_monotonic_ulids_when_asked)
{
    evbus_client_t *c = client();
    evbus_client_set_id_kind(c, EVBUS_ID_ULID);
    char prev[64] = "";
    for (int i = 0; i < 50; i++) {
        json_t *ev = partial("order.created", "acme");
        cr_assert_eq(evbus_event_complete(c, ev, NULL, 0), 0);
        const char *id = sget(ev, "id");
        cr_assert(matches(ULID_RE, id), "ulid %s", id);
        cr_assert_gt(strcmp(id, prev), 0, "%s not after %s", id, prev);
        snprintf(prev, sizeof prev, "%s", id);
        json_decref(ev);
    }
    evbus_client_free(c);
}

Test(publish, keeps_given_attributes)
{
    evbus_client_t *c = client();
    evbus_client_set_source(c, "/svc/billing");
    json_t *ev = partial("invoice.paid", "t1");
    json_object_set_new(ev, "correlationid", json_string("corr-42"));
    json_object_set_new(ev, "id", json_string("my-id"));
    json_object_set_new(ev, "time", json_string("2026-01-02T03:04:05+01:00"));
    char id[EVBUS_STREAM_ID_LEN];
    cr_assert_eq(evbus_publish(c, ev, id, sizeof id, NULL, 0), 0);
    json_t *st = stored_event(id);
    cr_assert_str_eq(sget(st, "correlationid"), "corr-42");
    cr_assert_str_eq(sget(st, "id"), "my-id");
    cr_assert_str_eq(sget(st, "time"), "2026-01-02T03:04:05+01:00");
    cr_assert_str_eq(sget(st, "source"), "/svc/billing");
    json_decref(st);
    json_decref(ev);
    evbus_client_free(c);
}

static void expect_invalid(evbus_client_t *c, json_t *ev, const char *attr)
{
    char *before = json_dumps(ev, JSON_COMPACT | JSON_ENCODE_ANY);
    char id[EVBUS_STREAM_ID_LEN], err[256];
    int rc = evbus_publish(c, ev, id, sizeof id, err, sizeof err);
    cr_assert_eq(rc, EVBUS_CLIENT_EINVAL, "rc %d for %s", rc, before);
    cr_assert(strncmp(err, attr, strlen(attr)) == 0, "error \"%s\" does not name %s", err, attr);
    cr_assert_str_eq(evbus_client_error(c), err);
    char *after = json_dumps(ev, JSON_COMPACT | JSON_ENCODE_ANY);
    cr_assert_str_eq(before, after, "a rejected event was modified");
    free(before);
    free(after);
    json_decref(ev);
}

Test(publish, rejects_bad_events_naming_the_attribute)
{
    evbus_client_t *c = client();
    expect_invalid(c, json_pack("{s:s}", "tenantid", "t"), "type:");
    expect_invalid(c, partial("Order.Created", "t"), "type:");
    expect_invalid(c, partial("order..created", "t"), "type:");
    expect_invalid(c, partial("order.created.", "t"), "type:");
    expect_invalid(c, json_pack("{s:i, s:s}", "type", 3, "tenantid", "t"), "type:");
    expect_invalid(c, json_pack("{s:s}", "type", "a.b"), "tenantid:");
    expect_invalid(c, partial("a.b", ""), "tenantid:");
    json_t *ev = partial("a.b", "t");
    json_object_set_new(ev, "time", json_string("2026-02-30T00:00:00Z"));
    expect_invalid(c, ev, "time:");
    ev = partial("a.b", "t");
    json_object_set_new(ev, "time", json_string("yesterday"));
    expect_invalid(c, ev, "time:");
    ev = partial("a.b", "t");
    json_object_set_new(ev, "specversion", json_string("0.3"));
    expect_invalid(c, ev, "specversion:");
    ev = partial("a.b", "t");
    json_object_set_new(ev, "id", json_string(""));
    expect_invalid(c, ev, "id:");
    ev = partial("a.b", "t");
    json_object_set_new(ev, "source", json_integer(1));
    expect_invalid(c, ev, "source:");
    expect_invalid(c, json_pack("[i]", 1), "event:");
    /* Keys are matched whole: "type\0x" (a key holding a NUL) is not "type". */
    ev = json_pack("{s:s}", "tenantid", "t");
    json_object_setn_new(ev, "type\0x", 6, json_string("a.b"));
    expect_invalid(c, ev, "type: missing");
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 0, "a rejected event was written");
    evbus_client_free(c);
}

Test(publish, batch_of_10000_lands_in_order)
{
    enum { N = 10000 };
    evbus_client_t *c = client();
    json_t **evs = calloc(N, sizeof *evs);
    char (*ids)[EVBUS_STREAM_ID_LEN] = calloc(N, sizeof *ids);
    int *rcs = calloc(N, sizeof *rcs);
    for (int i = 0; i < N; i++)
        evs[i] = json_pack("{s:s, s:s, s:{s:i}}", "type", "bulk.item", "tenantid", "t", "data",
                           "i", i);
    char err[256];
    ssize_t n = evbus_publish_batch(c, evs, N, ids, rcs, err, sizeof err);
    cr_assert_eq(n, N, "published %zd: %s", n, err);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(rcs[i], 0);
    /* Replies are matched to the right events: entry i carries data.i == i. */
    for (int i = 0; i < N; i += 997) {
        json_t *st = stored_event(ids[i]);
        cr_assert_eq(json_integer_value(json_object_get(json_object_get(st, "data"), "i")), i);
        cr_assert_str_eq(sget(st, "id"), sget(evs[i], "id"));
        json_decref(st);
    }
    for (int i = 0; i < N; i++)
        json_decref(evs[i]);
    free(evs);
    free(ids);
    free(rcs);
    evbus_client_free(c);
}

Test(publish, batch_reports_bad_items_and_publishes_the_rest)
{
    evbus_client_t *c = client();
    json_t *evs[3] = {partial("a.b", "t"), partial("A.B", "t"), partial("a.c", "t")};
    char ids[3][EVBUS_STREAM_ID_LEN];
    int rcs[3];
    char err[256];
    cr_assert_eq(evbus_publish_batch(c, evs, 3, ids, rcs, err, sizeof err), 2);
    cr_assert_eq(rcs[0], 0);
    cr_assert_eq(rcs[1], EVBUS_CLIENT_EINVAL);
    cr_assert_str_eq(ids[1], "");
    cr_assert_eq(rcs[2], 0);
    cr_assert(strstr(err, "event 1: type:") != NULL, "err: %s", err);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 2);
    for (int i = 0; i < 3; i++)
        json_decref(evs[i]);
    evbus_client_free(c);
}

static void publish_n(evbus_client_t *c, int n, int *accepted, int *full)
{
    json_t **evs = calloc((size_t)n, sizeof *evs);
    char (*ids)[EVBUS_STREAM_ID_LEN] = calloc((size_t)n, sizeof *ids);
    int *rcs = calloc((size_t)n, sizeof *rcs);
    for (int i = 0; i < n; i++)
        evs[i] = partial("a.b", "t");
    char err[512] = "";
    ssize_t got = evbus_publish_batch(c, evs, (size_t)n, ids, rcs, err, sizeof err);
    *accepted = *full = 0;
    for (int i = 0; i < n; i++) {
        *accepted += rcs[i] == 0;
        *full += rcs[i] == EVBUS_CLIENT_EFULL;
        json_decref(evs[i]);
    }
    cr_assert_eq(got, *accepted);
    if (*full)
        cr_assert(strstr(err, "stream full: stream evbus:events holds ") &&
                      strstr(err, " entries (retention.max_entries "),
                  "err: %s", err);
    free(evs);
    free(ids);
    free(rcs);
}

/* Read and acknowledge everything as group g. */
static void read_and_ack(const char *group)
{
    redisReply *r = redisCommand(rc_, "XREADGROUP GROUP %s c COUNT 100000 STREAMS %s >",
                                      group, STREAM);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    redisReply *ents = r->element[0]->element[1];
    for (size_t i = 0; i < ents->elements; i++)
        harness_redis_int(rc_, "XACK %s %s %s", STREAM, group, ents->element[i]->element[0]->str);
    freeReplyObject(r);
}

Test(publish, a_retention_cap_refuses_what_does_not_fit_and_never_trims_unread_entries)
{
    evbus_client_t *c = client();
    evbus_client_set_retention(c, 100, 0, 0);
    /* no consumer group has read anything: nothing may be trimmed */
    int ok, full;
    publish_n(c, 150, &ok, &full);
    cr_assert_eq(ok, 100);
    cr_assert_eq(full, 50);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 100);
    /* a group that read and acknowledged everything: room is made from its entries */
    harness_redis_int(rc_, "XGROUP CREATE %s g1 0", STREAM);
    harness_redis_int(rc_, "XGROUP CREATE %s g2 0", STREAM);
    read_and_ack("g1");
    publish_n(c, 10, &ok, &full);
    cr_assert_eq(full, 10, "g2 has read nothing: its entries are protected");
    /* protect only g1: then g2's backlog may go (the policy hash says so) */
    harness_redis_int(rc_, "HSET %s:retention protect g1", STREAM);
    publish_n(c, 10, &ok, &full);
    cr_assert_eq(ok, 10);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 100);
    evbus_client_free(c);
}

Test(publish, the_guard_keeps_every_pending_entry)
{
    evbus_client_t *c = client();
    evbus_client_set_retention(c, 50, 0, 0);
    harness_redis_int(rc_, "XGROUP CREATE %s g 0 MKSTREAM", STREAM);
    int ok, full;
    publish_n(c, 50, &ok, &full);
    cr_assert_eq(ok, 50);
    /* read everything, acknowledge none: all 50 are pending, none may go */
    redisReply *r = redisCommand(rc_, "XREADGROUP GROUP g c COUNT 1000 STREAMS %s >", STREAM);
    freeReplyObject(r);
    publish_n(c, 5, &ok, &full);
    cr_assert_eq(full, 5);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 50);
    /* acknowledge the first 20: exactly those may make room */
    r = redisCommand(rc_, "XRANGE %s - + COUNT 20", STREAM);
    for (size_t i = 0; i < r->elements; i++)
        harness_redis_int(rc_, "XACK %s g %s", STREAM, r->element[i]->element[0]->str);
    const char *twenty_first = NULL;
    redisReply *all = redisCommand(rc_, "XRANGE %s - + COUNT 21", STREAM);
    twenty_first = all->element[20]->element[0]->str;
    publish_n(c, 30, &ok, &full);
    cr_assert_eq(ok, 20);
    cr_assert_eq(full, 10);
    redisReply *first = redisCommand(rc_, "XRANGE %s - + COUNT 1", STREAM);
    cr_assert_str_eq(first->element[0]->element[0]->str, twenty_first,
                     "the oldest pending entry must be the first one left");
    freeReplyObject(first);
    freeReplyObject(all);
    freeReplyObject(r);
    evbus_client_free(c);
}

Test(publish, without_a_cap_nothing_is_trimmed)
{
    evbus_client_t *c = client();
    for (int i = 0; i < 300; i++) {
        json_t *ev = partial("a.b", "t");
        cr_assert_eq(evbus_publish(c, ev, NULL, 0, NULL, 0), 0);
        json_decref(ev);
    }
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 300);
    evbus_client_free(c);
}

Test(publish, raw_bytes_and_extra_fields_are_written_unchecked)
{
    evbus_client_t *c = client();
    const char *extra[] = {"retried_from", "1-1", "note", "x", NULL};
    char id[EVBUS_STREAM_ID_LEN];
    cr_assert_eq(evbus_publish_raw(c, "not json\0!", 10, extra, id, sizeof id, NULL, 0), 0);
    redisReply *r = redisCommand(rc_, "XRANGE %s %s %s", STREAM, id, id);
    redisReply *kv = r->element[0]->element[1];
    cr_assert_eq(kv->elements, 6);
    cr_assert_eq(kv->element[1]->len, 10);
    cr_assert_eq(memcmp(kv->element[1]->str, "not json\0!", 10), 0);
    cr_assert_str_eq(kv->element[2]->str, "retried_from");
    cr_assert_str_eq(kv->element[3]->str, "1-1");
    freeReplyObject(r);
    evbus_client_free(c);
}

Test(publish, redis_down_is_eredis_and_bad_event_still_einval)
{
    evbus_client_t *c = client();
    json_t *ev = partial("a.b", "t");
    cr_assert_eq(evbus_publish(c, ev, NULL, 0, NULL, 0), 0); /* connected once */
    json_decref(ev);
    harness_redis_stop(&R);

    char err[256];
    ev = partial("a.b", "t");
    cr_assert_eq(evbus_publish(c, ev, NULL, 0, err, sizeof err), EVBUS_CLIENT_EREDIS);
    cr_assert(strstr(err, "redis") != NULL, "err: %s", err);
    json_decref(ev);
    ev = partial("A", "t");
    cr_assert_eq(evbus_publish(c, ev, NULL, 0, err, sizeof err), EVBUS_CLIENT_EINVAL);
    json_decref(ev);

    json_t *evs[2] = {partial("a.b", "t"), partial("a.b", "t")};
    char ids[2][EVBUS_STREAM_ID_LEN];
    int rcs[2];
    cr_assert_eq(evbus_publish_batch(c, evs, 2, ids, rcs, err, sizeof err), -1);
    cr_assert_eq(rcs[0], EVBUS_CLIENT_EREDIS);
    cr_assert_eq(rcs[1], EVBUS_CLIENT_EREDIS);

    /* The client reconnects by itself once Redis is back. */
    cr_assert_eq(harness_redis_restart(&R), 0);
    cr_assert_eq(evbus_publish_batch(c, evs, 2, ids, rcs, err, sizeof err), 2, "%s", err);
    json_decref(evs[0]);
    json_decref(evs[1]);
    evbus_client_free(c);
    redisFree(rc_);
    rc_ = harness_redis_connect(&R);
}

Test(publish, url_selects_the_database)
{
    char url[160], err[256];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/3", R.port);
    evbus_client_t *c = evbus_client_new(url, STREAM, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    json_t *ev = partial("a.b", "t");
    cr_assert_eq(evbus_publish(c, ev, NULL, 0, err, sizeof err), 0, "%s", err);
    json_decref(ev);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 0);
    freeReplyObject(redisCommand(rc_, "SELECT 3"));
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 1);
    evbus_client_free(c);
}

Test(publish, bad_urls_are_refused_with_a_reason)
{
    char err[256];
    const char *bad[] = {"http://x", "redis://:pw@", "redis://h:99999", "redis://h/x",
                         "unix://relative", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        cr_assert_null(evbus_client_new(bad[i], STREAM, err, sizeof err), "%s accepted", bad[i]);
        cr_assert_neq(err[0], '\0');
    }
}

Test(publish, unreachable_redis_at_first_use_is_eredis)
{
    char url[160];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", harness_free_port());
    evbus_client_t *c = evbus_client_new(url, STREAM, NULL, 0);
    cr_assert_not_null(c);
    json_t *ev = partial("a.b", "t");
    cr_assert_eq(evbus_publish(c, ev, NULL, 0, NULL, 0), EVBUS_CLIENT_EREDIS);
    cr_assert(strstr(evbus_client_error(c), "refused") != NULL, "%s", evbus_client_error(c));
    cr_assert_null(evbus_client_redis(c));
    json_decref(ev);
    evbus_client_free(c);
}

Test(publish, time_check_follows_rfc3339)
{
    cr_assert_eq(evbus_time_check("2024-02-29T23:59:60.5z"), 0);
    cr_assert_eq(evbus_time_check("2026-11-26T22:06:42-05:30"), 0);
    cr_assert_neq(evbus_time_check("2023-02-29T00:00:00Z"), 0);
    cr_assert_neq(evbus_time_check("2026-11-26 22:06:42Z"), 0);
    cr_assert_neq(evbus_time_check("2026-11-26T22:06:42"), 0);
    cr_assert_neq(evbus_time_check("2026-11-26T22:06:42.Z"), 0);
    char t[32];
    evbus_time_now_rfc3339(t);
    cr_assert_eq(evbus_time_check(t), 0, "%s", t);
}

Test(publish, evbus_redis_connect_selects_the_url_database_and_reports_bad_urls)
{
    char url[160], err[256];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/3", R.port);
    redisContext *c = evbus_redis_connect(url, 1000, 1000, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    redisReply *r = redisCommand(c, "SET evbus-connect-probe 1");
    cr_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisFree(c);
    /* the key landed in database 3, not 0 */
    redisContext *raw = harness_redis_connect(&R);
    cr_assert_eq(harness_redis_int(raw, "EXISTS evbus-connect-probe"), 0);
    freeReplyObject(redisCommand(raw, "SELECT 3"));
    cr_assert_eq(harness_redis_int(raw, "EXISTS evbus-connect-probe"), 1);
    redisFree(raw);
    cr_assert_null(evbus_redis_connect("http://x", 100, 100, err, sizeof err));
    cr_assert(strstr(err, "must start with redis:// or unix://"), "got: %s", err);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", harness_free_port());
    cr_assert_null(evbus_redis_connect(url, 500, 500, err, sizeof err));
    cr_assert(strstr(err, "127.0.0.1"), "the failure names the server: %s", err);
}
