/*
 * The operator API's events and replays routes (docs/admin-api.md,
 * "Events" and "Replays") against a real evbusd, redis-server and
 * PostgreSQL: publishing (tenant stamping, refusals that write nothing,
 * events really handled), event metadata and replay jobs seen only by
 * their tenant, cursors, and 503 without PostgreSQL.
 *
 * Tokens: publisher of tenant a, publisher "*", viewers of a and b,
 * operators of a and "*".
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "harness_pg.h"

#define PUB_A "evb_test_publisher_a_token_0000000000000"
#define PUB_ALL "evb_test_publisher_all_token_00000000000"
#define VIEW_A "evb_test_viewer_a_token_000000000000000"
#define VIEW_B "evb_test_viewer_b_token_000000000000000"
#define OP_A "evb_test_operator_a_token_0000000000000"
#define OP_ALL "evb_test_operator_all_token_00000000000"

static fx_t F;
static harness_pg_t PG;
static bool pg_on;
static char rec[700];

static void setup_pg(void)
{
    fx_start(&F, false);
    cr_assert_eq(harness_pg_start(&PG), 0, "PostgreSQL did not start (see %s/pg.log)", PG.dir);
    pg_on = true;
}

static void setup_no_pg(void)
{
    fx_start(&F, false);
    pg_on = false;
}

static void teardown(void)
{
    /* a clean stop, so a sanitizer build reports leaks in evbusd.log */
    if (F.d.pid > 0 && harness_kill(&F.d, SIGTERM, 15000) >= 0)
        F.d.pid = 0;
    fx_stop(&F);
    if (pg_on)
        harness_pg_stop(&PG);
}

TestSuite(admin_data, .init = setup_pg, .fini = teardown, .timeout = 180);
TestSuite(admin_data_nopg, .init = setup_no_pg, .fini = teardown, .timeout = 120);

static void token_row(char *out, size_t len, const char *name, const char *token,
                      const char *role, const char *tenant)
{
    char hash[72];
    harness_token_hash(token, hash);
    snprintf(out, len, "{ name: %s, hash: \"%s\", roles: [%s], tenant: \"%s\" }", name, hash,
             role, tenant);
}

/* evbusd with the six tokens, the testkit recorder on approval.**, and
 * PostgreSQL when the suite has one. */
static void start_daemon(void)
{
    F.admin_port = harness_free_port();
    fx_path(&F, "rec.tsv", rec, sizeof rec);
    char t[6][200];
    token_row(t[0], sizeof t[0], "pub-a", PUB_A, "publisher", "a");
    token_row(t[1], sizeof t[1], "pub-all", PUB_ALL, "publisher", "*");
    token_row(t[2], sizeof t[2], "view-a", VIEW_A, "viewer", "a");
    token_row(t[3], sizeof t[3], "view-b", VIEW_B, "viewer", "b");
    token_row(t[4], sizeof t[4], "op-a", OP_A, "operator", "a");
    token_row(t[5], sizeof t[5], "op-all", OP_ALL, "operator", "*");
    char extra[4096];
    int n = snprintf(extra, sizeof extra,
                     "admin: { listen: \"127.0.0.1:%d\", tokens: [ %s, %s, %s, %s, %s, %s ],\n"
                     "  rate_limit: { per_token_per_s: 100000, burst: 100000 } }\n",
                     F.admin_port, t[0], t[1], t[2], t[3], t[4], t[5]);
    if (pg_on)
        snprintf(extra + n, sizeof extra - (size_t)n,
                 "postgres: { url: \"%s\", migrate_on_start: true }\n", PG.url);
    fx_host_conf(&F, "c1", extra);
    char plugins[1024];
    snprintf(plugins, sizeof plugins,
             "plugins:\n"
             "  - name: rec\n"
             "    plugin: %s\n"
             "    config: { out: %s }\n"
             "    subscriptions:\n"
             "      - { pattern: \"approval.**\", handler: record }\n",
             fx_plugin("plugins/testkit/testkit.so"), rec);
    fx_conf(&F, "10-plugins.yaml", plugins);
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000), "evbusd did not start");
}

/* A request; the reply parsed (NULL when it is not JSON) and its status. */
static json_t *call(const char *method, const char *path, const char *token, const char *body,
                    int *status)
{
    char *text = harness_http(F.admin_port, method, path, token, body, NULL, status, NULL);
    cr_assert(text, "%s %s: no answer", method, path);
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    return j;
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* An approval.item.approved v2 event (valid data), with tenantid when
 * tenant is not NULL, as JSON text (malloc'd). */
static char *event_text(int i, const char *tenant)
{
    char data[512], *out = malloc(1024);
    snprintf(data, sizeof data, FX_APPROVED_V2, i);
    if (tenant)
        snprintf(out, 1024, "{\"type\":\"approval.item.approved\",\"tenantid\":\"%s\",\"data\":%s}",
                 tenant, data);
    else
        snprintf(out, 1024, "{\"type\":\"approval.item.approved\",\"data\":%s}", data);
    return out;
}

/* "[ev, ev, ...]" of n events of tenant (NULL: no tenantid). */
static char *event_array(int n, const char *tenant)
{
    size_t cap = (size_t)n * 1024 + 16, len = 0;
    char *out = malloc(cap);
    out[len++] = '[';
    for (int i = 0; i < n; i++) {
        char *e = event_text(i, tenant);
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? "," : "", e);
        free(e);
    }
    snprintf(out + len, cap - len, "]");
    return out;
}

/* POST /api/v1/events expecting 201; the reply. */
static json_t *publish(const char *token, const char *body)
{
    int st;
    json_t *j = call("POST", "/api/v1/events", token, body, &st);
    cr_assert_eq(st, 201, "publish: %d %s", st, json_dumps(j, JSON_COMPACT));
    return j;
}

/* Asserts a status and an error body naming field. */
static void expect_error(const char *method, const char *path, const char *token,
                         const char *body, int status, const char *field)
{
    int st;
    json_t *j = call(method, path, token, body, &st);
    char *dump = json_dumps(j, JSON_COMPACT);
    cr_expect_eq(st, status, "%s %s: %d %s", method, path, st, dump);
    if (field)
        cr_expect_str_eq(jstr(j, "field") ? jstr(j, "field") : "(none)", field, "%s %s: %s",
                         method, path, dump);
    free(dump);
    json_decref(j);
}

/* The stream's event field of entry sid. */
static char *stream_event(const char *sid)
{
    redisContext *c = harness_redis_connect(&F.redis);
    cr_assert_not_null(c);
    redisReply *r = redisCommand(c, "XRANGE t:events %s %s", sid, sid);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1, "no entry %s", sid);
    redisReply *fields = r->element[0]->element[1];
    char *out = NULL;
    for (size_t k = 0; k + 1 < fields->elements; k += 2)
        if (strcmp(fields->element[k]->str, "event") == 0)
            out = strdup(fields->element[k + 1]->str);
    freeReplyObject(r);
    redisFree(c);
    cr_assert_not_null(out);
    return out;
}

/* stream_event() parsed. */
static json_t *stream_json(const char *sid)
{
    char *text = stream_event(sid);
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    cr_assert_not_null(j, "entry %s: not JSON", sid);
    return j;
}

typedef struct {
    const char *id, *token, *status;
    json_t *row;
} wait_event_t;

static bool event_has_status(void *ud)
{
    wait_event_t *w = ud;
    char path[256];
    snprintf(path, sizeof path, "/api/v1/events/%s", w->id);
    int st;
    json_t *j = call("GET", path, w->token, NULL, &st);
    if (st == 200 && (!w->status || !strcmp(jstr(j, "status"), w->status))) {
        json_decref(w->row);
        w->row = j;
        return true;
    }
    json_decref(j);
    return false;
}

/* Waits for the event's metadata row (in status, unless NULL). */
static json_t *wait_event(const char *id, const char *token, const char *status)
{
    wait_event_t w = {id, token, status, NULL};
    cr_assert(harness_wait_until(event_has_status, &w, 15000), "event %s never reached %s", id,
              status ? status : "a row");
    return w.row;
}

static void rfc3339(time_t t, char out[32])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- publishing ------------------------------------------------------------ */

Test(admin_data, publishing_one_event_stamps_the_token_tenant_and_it_is_handled)
{
    start_daemon();
    char *ev = event_text(1, NULL);
    json_t *j = publish(PUB_A, ev);
    free(ev);
    cr_assert_eq(json_array_size(json_object_get(j, "ids")), 1);
    const char *sid = json_string_value(json_array_get(json_object_get(j, "ids"), 0));
    const char *eid = json_string_value(json_array_get(json_object_get(j, "event_ids"), 0));
    cr_assert(sid && strchr(sid, '-'), "not a stream id: %s", sid ? sid : "null");
    cr_assert_not_null(eid);

    json_t *written = stream_json(sid);
    cr_expect_str_eq(jstr(written, "tenantid"), "a", "the token's tenant is stamped");
    cr_expect_str_eq(jstr(written, "id"), eid);
    cr_expect_str_eq(jstr(written, "source"), "/evbus/admin/pub-a");
    json_decref(written);

    json_t *row = wait_event(eid, VIEW_A, "COMPLETED");
    cr_expect_str_eq(jstr(row, "tenant"), "a");
    cr_expect_str_eq(jstr(row, "stream_id"), sid);
    cr_expect_str_eq(jstr(json_object_get(row, "handler_outcomes"), "rec/record"), "ok");
    /* the status history (migration 0010): the transition evbusd reported */
    json_t *hist = json_object_get(row, "status_history");
    cr_assert(json_is_array(hist) && json_array_size(hist) >= 1, "status_history: %s",
              json_dumps(row, 0));
    json_t *last = json_array_get(hist, json_array_size(hist) - 1);
    cr_expect_str_eq(jstr(last, "status"), "COMPLETED");
    cr_expect_eq(json_integer_value(json_object_get(last, "attempts")), 1);
    cr_expect(jstr(last, "at") && strlen(jstr(last, "at")) == 24, "RFC 3339: %s", jstr(last, "at"));
    cr_expect(json_is_null(json_object_get(last, "error")));
    json_decref(row);
    int lst;
    json_t *list = call("GET", "/api/v1/events?limit=5", VIEW_A, NULL, &lst);
    cr_expect_eq(lst, 200);
    cr_expect_null(json_object_get(json_array_get(json_object_get(list, "events"), 0),
                                   "status_history"),
                   "lists leave the history out");
    json_decref(list);
    json_decref(j);
}

Test(admin_data, publishing_an_array_returns_every_stream_id_in_order)
{
    start_daemon();
    char *body = event_array(3, "a"); /* its own tenant, spelled out: fine */
    json_t *j = publish(PUB_A, body);
    free(body);
    json_t *ids = json_object_get(j, "ids"), *eids = json_object_get(j, "event_ids");
    cr_assert_eq(json_array_size(ids), 3);
    cr_assert_eq(json_array_size(eids), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *w = stream_json(json_string_value(json_array_get(ids, i)));
        cr_expect_str_eq(jstr(w, "id"), json_string_value(json_array_get(eids, i)));
        char want[64];
        snprintf(want, sizeof want, "6f1c2b1e-0000-4000-8000-%012zu", i);
        cr_expect_str_eq(jstr(json_object_get(w, "data"), "approvalId"), want, "order");
        json_decref(w);
    }
    for (size_t i = 0; i < 3; i++)
        json_decref(wait_event(json_string_value(json_array_get(eids, i)), VIEW_A, "COMPLETED"));
    cr_expect(fx_wait_lines(rec, 3, 10000), "the recorder saw the three events");
    json_decref(j);
}

Test(admin_data, a_star_publisher_names_any_tenant_and_must_name_one)
{
    start_daemon();
    char *ev = event_text(1, "b");
    json_t *j = publish(PUB_ALL, ev);
    free(ev);
    json_t *w = stream_json(json_string_value(json_array_get(json_object_get(j, "ids"), 0)));
    cr_expect_str_eq(jstr(w, "tenantid"), "b");
    json_decref(w);
    json_decref(j);
    ev = event_text(1, NULL);
    expect_error("POST", "/api/v1/events", PUB_ALL, ev, 400, "tenantid");
    free(ev);
}

Test(admin_data, refused_publishes_name_index_and_field_and_write_nothing)
{
    start_daemon();
    long long before = fx_xlen(&F, "t:events");

    char *ev = event_text(1, "b");
    expect_error("POST", "/api/v1/events", PUB_A, ev, 403, "tenantid");
    free(ev);

    /* event 1 of 3 names another tenant: 403, and event 0 is not written */
    char body[4096];
    char *e0 = event_text(0, NULL), *e1 = event_text(1, "b"), *e2 = event_text(2, NULL);
    snprintf(body, sizeof body, "[%s,%s,%s]", e0, e1, e2);
    expect_error("POST", "/api/v1/events", PUB_A, body, 403, "[1].tenantid");

    /* event 2's data breaks its schema (approvalId must be a uuid) */
    snprintf(body, sizeof body,
             "[%s,%s,{\"type\":\"approval.item.approved\",\"data\":{\"approvalId\":5}}]", e0, e2);
    int st;
    json_t *j = call("POST", "/api/v1/events", PUB_A, body, &st);
    cr_expect_eq(st, 400);
    cr_expect_str_eq(jstr(j, "error"), "invalid_argument");
    cr_expect(jstr(j, "field") && !strncmp(jstr(j, "field"), "[2].data", 8), "field: %s",
              json_dumps(j, JSON_COMPACT));
    json_decref(j);

    /* the envelope: no type, a bad type, a bad time */
    snprintf(body, sizeof body, "[%s,{\"data\":{}}]", e0);
    expect_error("POST", "/api/v1/events", PUB_A, body, 400, "[1].type");
    expect_error("POST", "/api/v1/events", PUB_A, "{\"type\":\"Not A Type\"}", 400, "type");
    expect_error("POST", "/api/v1/events", PUB_A,
                 "{\"type\":\"approval.item.approved\",\"time\":\"yesterday\"}", 400, "time");
    expect_error("POST", "/api/v1/events", PUB_A, "[1]", 400, "[0]");
    expect_error("POST", "/api/v1/events", PUB_A, "[]", 400, "body");
    free(e0);
    free(e1);
    free(e2);

    char *big = event_array(1001, NULL);
    expect_error("POST", "/api/v1/events", PUB_A, big, 400, "body");
    free(big);

    ev = event_text(1, "a");
    expect_error("POST", "/api/v1/events", VIEW_A, ev, 403, "token");
    expect_error("POST", "/api/v1/events", OP_ALL, ev, 403, "token");
    expect_error("POST", "/api/v1/events", NULL, ev, 401, "Authorization");
    free(ev);

    cr_expect_eq(fx_xlen(&F, "t:events"), before, "a refused publish wrote something");
}

/* ---- event metadata ---------------------------------------------------------- */

/* The ids of a list reply's rows, appended to seen (asserting no repeats). */
static void collect(json_t *reply, const char *key, json_t *seen)
{
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(reply, key), i, row)
    {
        cr_assert(!json_object_get(seen, jstr(row, "id")), "row %s listed twice", jstr(row, "id"));
        const char *tenant = jstr(row, "tenant");
        json_object_set_new(seen, jstr(row, "id"), json_string(tenant ? tenant : "*"));
    }
}

/* Every row of a list, page by page (limit per page); asserts the
 * cursors and returns {id: tenant}. */
static json_t *walk(const char *route, const char *key, const char *token, int limit,
                    int *pages)
{
    json_t *seen = json_object();
    char path[1024];
    snprintf(path, sizeof path, "%s?limit=%d", route, limit);
    *pages = 0;
    for (;;) {
        int st;
        json_t *j = call("GET", path, token, NULL, &st);
        cr_assert_eq(st, 200, "%s: %d %s", path, st, json_dumps(j, JSON_COMPACT));
        cr_assert_leq(json_array_size(json_object_get(j, key)), (size_t)limit);
        cr_expect_eq(json_integer_value(json_object_get(j, "count")),
                     (json_int_t)json_array_size(json_object_get(j, key)));
        collect(j, key, seen);
        ++*pages;
        const char *next = jstr(j, "next_cursor");
        if (!next) {
            json_decref(j);
            return seen;
        }
        snprintf(path, sizeof path, "%s?limit=%d&cursor=%s", route, limit, next);
        json_decref(j);
        cr_assert_lt(*pages, 50, "the cursor never ends");
    }
}

static bool all_rows(void *ud)
{
    int pages;
    json_t *seen = walk("/api/v1/events", "events", OP_ALL, 500, &pages);
    bool ok = json_object_size(seen) >= *(size_t *)ud;
    json_decref(seen);
    return ok;
}

Test(admin_data, event_metadata_is_seen_only_by_its_tenant_page_by_page)
{
    start_daemon();
    char *a = event_array(5, NULL), *b = event_array(3, "b");
    json_t *ja = publish(PUB_A, a), *jb = publish(PUB_ALL, b);
    free(a);
    free(b);
    size_t want = 8;
    cr_assert(harness_wait_until(all_rows, &want, 15000), "the 8 metadata rows never appeared");

    int pages;
    json_t *seen = walk("/api/v1/events", "events", VIEW_A, 2, &pages);
    cr_expect_eq(json_object_size(seen), 5, "tenant a sees its 5 events");
    cr_expect_eq(pages, 3, "5 rows in pages of 2");
    const char *k;
    json_t *v;
    json_object_foreach(seen, k, v) cr_expect_str_eq(json_string_value(v), "a");
    size_t i;
    json_array_foreach(json_object_get(ja, "event_ids"), i, v)
        cr_expect(json_object_get(seen, json_string_value(v)), "a's %s missing",
                  json_string_value(v));
    json_decref(seen);

    seen = walk("/api/v1/events", "events", VIEW_B, 1, &pages);
    cr_expect_eq(json_object_size(seen), 3, "tenant b sees its 3 events only");
    json_array_foreach(json_object_get(ja, "event_ids"), i, v)
        cr_expect(!json_object_get(seen, json_string_value(v)), "b sees a's event");
    json_decref(seen);

    /* a "*" viewer may narrow to one tenant; a tenant token may not widen */
    int st;
    json_t *j = call("GET", "/api/v1/events?tenant=b", OP_ALL, NULL, &st);
    cr_expect_eq(st, 200);
    cr_expect_eq(json_array_size(json_object_get(j, "events")), 3);
    json_decref(j);
    expect_error("GET", "/api/v1/events?tenant=b", VIEW_A, NULL, 403, "tenant");
    j = call("GET", "/api/v1/events?tenant=a", VIEW_A, NULL, &st);
    cr_expect_eq(st, 200);
    cr_expect_eq(json_array_size(json_object_get(j, "events")), 5);
    json_decref(j);

    /* filters */
    j = call("GET", "/api/v1/events?type=approval.item.approved&status=PENDING", VIEW_B, NULL,
             &st);
    cr_expect_eq(st, 200);
    json_decref(j);
    j = call("GET", "/api/v1/events?type=no.such.type", OP_ALL, NULL, &st);
    cr_expect_eq(json_array_size(json_object_get(j, "events")), 0);
    json_decref(j);
    j = call("GET", "/api/v1/events?until=2001-01-01T00:00:00Z", OP_ALL, NULL, &st);
    cr_expect_eq(st, 200);
    cr_expect_eq(json_array_size(json_object_get(j, "events")), 0, "until bounds the list");
    json_decref(j);
    j = call("GET", "/api/v1/events?since=2001-01-01T00:00:00Z", OP_ALL, NULL, &st);
    cr_expect_eq(json_array_size(json_object_get(j, "events")), 8);
    json_decref(j);

    /* one event: another tenant's is exactly a missing one */
    const char *a0 = json_string_value(json_array_get(json_object_get(ja, "event_ids"), 0));
    char path[256];
    snprintf(path, sizeof path, "/api/v1/events/%s", a0);
    j = call("GET", path, VIEW_A, NULL, &st);
    cr_expect_eq(st, 200);
    cr_expect_str_eq(jstr(j, "id"), a0);
    json_decref(j);
    char *other = harness_http(F.admin_port, "GET", path, VIEW_B, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 404);
    char *missing = harness_http(F.admin_port, "GET", "/api/v1/events/no-such-event", VIEW_B,
                                 NULL, NULL, &st, NULL);
    cr_expect_eq(st, 404);
    cr_expect_str_eq(other, missing, "another tenant's event must look missing");
    free(other);
    free(missing);

    /* bad input */
    expect_error("GET", "/api/v1/events?limit=0", VIEW_A, NULL, 400, "limit");
    expect_error("GET", "/api/v1/events?limit=501", VIEW_A, NULL, 400, "limit");
    expect_error("GET", "/api/v1/events?limit=-1", VIEW_A, NULL, 400, "limit");
    expect_error("GET", "/api/v1/events?status=LOST", VIEW_A, NULL, 400, "status");
    expect_error("GET", "/api/v1/events?since=yesterday", VIEW_A, NULL, 400, "since");
    expect_error("GET",
                 "/api/v1/events?since=2030-01-01T00:00:00Z&until=2029-01-01T00:00:00Z",
                 VIEW_A, NULL, 400, "until");
    expect_error("GET", "/api/v1/events?offset=3", VIEW_A, NULL, 400, "offset");
    expect_error("GET", "/api/v1/events?cursor=abc.def", VIEW_A, NULL, 400, "cursor");
    expect_error("GET", "/api/v1/events", PUB_A, NULL, 403, "token");

    /* a cursor works only for the tenant it was issued to, on its route */
    j = call("GET", "/api/v1/events?limit=1", VIEW_A, NULL, &st);
    const char *cur = jstr(j, "next_cursor");
    cr_assert_not_null(cur);
    snprintf(path, sizeof path, "/api/v1/events?limit=1&cursor=%s", cur);
    expect_error("GET", path, VIEW_B, NULL, 400, "cursor");
    snprintf(path, sizeof path, "/api/v1/replays?limit=1&cursor=%s", cur);
    expect_error("GET", path, VIEW_A, NULL, 400, "cursor");
    /* a forged payload with the signature of another */
    char forged[1024];
    snprintf(forged, sizeof forged, "/api/v1/events?cursor=MjAzMHxh%s", strchr(cur, '.'));
    expect_error("GET", forged, VIEW_A, NULL, 400, "cursor");
    json_decref(j);
    json_decref(ja);
    json_decref(jb);
}

/* ---- replays ------------------------------------------------------------------ */

static json_t *replay_create(const char *token, const char *tenant, int rate, int status)
{
    char from[32], to[32], body[512];
    time_t now = time(NULL);
    rfc3339(now - 600, from);
    rfc3339(now + 600, to);
    int n = snprintf(body, sizeof body, "{\"from\":\"%s\",\"to\":\"%s\",\"types\":[\"approval.**\"]",
                     from, to);
    if (tenant)
        n += snprintf(body + n, sizeof body - (size_t)n, ",\"tenant\":\"%s\"", tenant);
    if (rate)
        n += snprintf(body + n, sizeof body - (size_t)n, ",\"rate\":%d", rate);
    snprintf(body + n, sizeof body - (size_t)n, "}");
    int st;
    json_t *j = call("POST", "/api/v1/replays", token, body, &st);
    cr_assert_eq(st, status, "create: %d %s", st, json_dumps(j, JSON_COMPACT));
    return j;
}

Test(admin_data, replays_follow_the_token_tenant)
{
    start_daemon();
    /* events in the window, so a slow job (1 event/s) is still running
     * when it is cancelled */
    char *a = event_array(5, NULL);
    json_decref(publish(PUB_A, a));
    free(a);

    json_t *ja = replay_create(OP_A, NULL, 1, 201);
    cr_expect_str_eq(jstr(ja, "tenant"), "a", "the job is forced to the token's tenant");
    cr_expect_str_eq(jstr(ja, "requested_by"), "admin-api:op-a");
    json_t *ja2 = replay_create(OP_A, "a", 1, 201);
    json_t *jb = replay_create(OP_ALL, "b", 0, 201);
    cr_expect_str_eq(jstr(jb, "tenant"), "b");
    json_t *jall = replay_create(OP_ALL, NULL, 0, 201);
    cr_expect(json_is_null(json_object_get(jall, "tenant")), "a * job replays every tenant");
    json_decref(replay_create(OP_A, "b", 0, 403));
    json_decref(replay_create(VIEW_A, NULL, 0, 403));
    json_decref(replay_create(PUB_A, NULL, 0, 403));

    /* bad bodies */
    expect_error("POST", "/api/v1/replays", OP_A, "{\"from\":\"2026-01-01T00:00:00Z\"}", 400,
                 NULL);
    expect_error("POST", "/api/v1/replays", OP_A,
                 "{\"from\":\"2026-01-02T00:00:00Z\",\"to\":\"2026-01-01T00:00:00Z\"}", 400,
                 "from");
    expect_error("POST", "/api/v1/replays", OP_A,
                 "{\"from\":\"2026-01-01T00:00:00Z\",\"to\":\"2026-01-01T01:00:00Z\","
                 "\"types\":[\"a..b\"]}",
                 400, "types[0]");
    expect_error("POST", "/api/v1/replays", OP_A,
                 "{\"from\":\"2026-01-01T00:00:00Z\",\"to\":\"2026-01-01T01:00:00Z\","
                 "\"extra\":1}",
                 400, NULL);

    char path[256];
    snprintf(path, sizeof path, "/api/v1/replays/%s", jstr(ja, "id"));
    int st;
    json_t *j = call("GET", path, VIEW_A, NULL, &st);
    cr_expect_eq(st, 200);
    cr_expect_str_eq(jstr(j, "id"), jstr(ja, "id"));
    json_decref(j);
    char *other = harness_http(F.admin_port, "GET", path, VIEW_B, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 404);
    char *missing = harness_http(F.admin_port, "GET", "/api/v1/replays/no-such-job", VIEW_B,
                                 NULL, NULL, &st, NULL);
    cr_expect_eq(st, 404);
    cr_expect_str_eq(other, missing, "another tenant's job must look missing");
    free(other);
    free(missing);
    snprintf(path, sizeof path, "/api/v1/replays/%s", jstr(jall, "id"));
    expect_error("GET", path, VIEW_A, NULL, 404, "id"); /* every tenant's: not a's */

    /* lists: own jobs only, page by page */
    int pages;
    json_t *seen = walk("/api/v1/replays", "replays", VIEW_A, 1, &pages);
    cr_expect_eq(json_object_size(seen), 2);
    cr_expect_eq(pages, 2);
    cr_expect(json_object_get(seen, jstr(ja, "id")) && json_object_get(seen, jstr(ja2, "id")));
    json_decref(seen);
    seen = walk("/api/v1/replays", "replays", VIEW_B, 10, &pages);
    cr_expect_eq(json_object_size(seen), 1);
    cr_expect(json_object_get(seen, jstr(jb, "id")));
    json_decref(seen);
    seen = walk("/api/v1/replays", "replays", OP_ALL, 3, &pages);
    cr_expect_eq(json_object_size(seen), 4, "%s", json_dumps(seen, JSON_COMPACT));
    cr_expect_eq(pages, 2);
    json_decref(seen);
    expect_error("GET", "/api/v1/replays?tenant=b", VIEW_A, NULL, 403, "tenant");
    expect_error("GET", "/api/v1/replays?limit=0", VIEW_A, NULL, 400, "limit");
    expect_error("GET", "/api/v1/replays?cursor=x", VIEW_A, NULL, 400, "cursor");

    /* cancel: only the own tenant's, only once */
    snprintf(path, sizeof path, "/api/v1/replays/%s", jstr(jb, "id"));
    expect_error("DELETE", path, OP_A, NULL, 404, "id");
    snprintf(path, sizeof path, "/api/v1/replays/%s", jstr(ja, "id"));
    expect_error("DELETE", path, VIEW_A, NULL, 403, "token");
    j = call("DELETE", path, OP_A, NULL, &st);
    cr_expect_eq(st, 200, "%s", json_dumps(j, JSON_COMPACT));
    cr_expect_str_eq(jstr(j, "status"), "cancelled");
    json_decref(j);
    expect_error("DELETE", path, OP_A, NULL, 409, "id");
    expect_error("DELETE", "/api/v1/replays/no-such-job", OP_ALL, NULL, 404, "id");
    snprintf(path, sizeof path, "/api/v1/replays/%s", jstr(ja2, "id"));
    j = call("DELETE", path, OP_ALL, NULL, &st);
    cr_expect(st == 200 || st == 409, "a * operator cancels any job: %d", st);
    json_decref(j);

    json_decref(ja);
    json_decref(ja2);
    json_decref(jb);
    json_decref(jall);
}

/* ---- without PostgreSQL ------------------------------------------------------ */

Test(admin_data_nopg, routes_needing_postgres_answer_503_and_publishing_still_works)
{
    start_daemon();
    const char *reads[] = {"/api/v1/events", "/api/v1/events/some-id", "/api/v1/replays",
                           "/api/v1/replays/some-id"};
    for (size_t i = 0; i < sizeof reads / sizeof *reads; i++) {
        int st;
        json_t *j = call("GET", reads[i], VIEW_A, NULL, &st);
        cr_expect_eq(st, 503, "%s: %d", reads[i], st);
        cr_expect_str_eq(jstr(j, "error"), "unavailable");
        cr_expect(strstr(jstr(j, "message"), "postgres.url"), "%s: %s", reads[i],
                  jstr(j, "message"));
        json_decref(j);
    }
    expect_error("POST", "/api/v1/replays", OP_A,
                 "{\"from\":\"2026-01-01T00:00:00Z\",\"to\":\"2026-01-01T01:00:00Z\"}", 503, "");
    expect_error("DELETE", "/api/v1/replays/some-id", OP_A, NULL, 503, "");

    char *ev = event_text(1, NULL);
    json_t *j = publish(PUB_A, ev);
    free(ev);
    cr_expect_eq(json_array_size(json_object_get(j, "ids")), 1);
    json_decref(j);
    cr_expect(fx_wait_lines(rec, 1, 10000), "the event was handled");
}
