/*
 * The dead-letter routes of the operator API (docs/admin-api.md, "Dead
 * letters"), against the real evbusd: the chaos plugin rejects events of
 * tenants a and b, the daemon dead-letters them, and the tests call
 * /api/v1/dlq over HTTP with tokens of several roles and tenants.  What
 * they check above all: a tenant never sees, counts, pages through,
 * retries, deletes or re-drives another tenant's dead letters, and a
 * retried dead letter really goes back to its handler.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e.h"

static e2e_t E;

static void setup(void) { e2e_start(&E, false, false); }
static void teardown(void) { e2e_stop(&E); }

TestSuite(admin_dlq, .init = setup, .fini = teardown, .timeout = 180);

#define OP_ALL "evb_test_operator_all_tenants_0123456789"
#define VIEW_A "evb_test_viewer_tenant_a_0123456789abcdef"
#define OP_A "evb_test_operator_tenant_a_0123456789abcd"
#define VIEW_B "evb_test_viewer_tenant_b_0123456789abcdef"
#define PUB "evb_test_publisher_tenant_a_0123456789abc"

static const struct {
    const char *name, *token, *role, *tenant;
} TOKENS[] = {
    {"op-all", OP_ALL, "operator", "*"}, {"view-a", VIEW_A, "viewer", "a"},
    {"op-a", OP_A, "operator", "a"},     {"view-b", VIEW_B, "viewer", "b"},
    {"pub", PUB, "publisher", "a"},
};

/* ---- helpers --------------------------------------------------------------- */

static void write_conf(void)
{
    char extra[4096];
    int n = snprintf(extra, sizeof extra,
                     "admin:\n  listen: \"127.0.0.1:%d\"\n"
                     "  rate_limit: { per_token_per_s: 100000, burst: 100000 }\n  tokens:\n",
                     E.admin_port);
    for (size_t i = 0; i < sizeof TOKENS / sizeof *TOKENS; i++) {
        char hash[72];
        harness_token_hash(TOKENS[i].token, hash);
        n += snprintf(extra + n, sizeof extra - (size_t)n,
                      "    - { name: %s, hash: \"%s\", roles: [%s], tenant: \"%s\" }\n",
                      TOKENS[i].name, hash, TOKENS[i].role, TOKENS[i].tenant);
    }
    fx_host_conf(&E.fx, "c1", extra);
    e2e_plugins(&E, "{ pattern: \"test.**\" }", NULL);
}

static void publish_reject(const char *id, const char *tenant)
{
    char *ev = e2e_event(id, "test.e2e.happened", tenant, "{\"fault\":\"reject\"}", NULL);
    cr_assert_eq(e2e_xadd(&E, "*", ev, NULL), 0);
    free(ev);
}

/* na dead letters of tenant a (events a-0...) and nb of b, made by a real
 * run, then evbusd serving the admin API. */
static void seed(int na, int nb)
{
    write_conf();
    char id[32];
    for (int i = 0; i < na; i++) {
        snprintf(id, sizeof id, "a-%d", i);
        publish_reject(id, "a");
    }
    for (int i = 0; i < nb; i++) {
        snprintf(id, sizeof id, "b-%d", i);
        publish_reject(id, "b");
    }
    e2e_run_until_idle(&E, 1000);
    cr_assert_eq(fx_xlen(&E.fx, "t:events:dlq"), na + nb);
    e2e_evbusd(&E, 0);
    cr_assert(e2e_wait_healthy(&E, 40000), "evbusd did not come up (log %s)", E.fx.log);
}

/* One request; the reply parsed (asserted to be JSON), raw text in *raw. */
static json_t *call(const char *method, const char *path, const char *token, const char *body,
                    int *status, char **raw)
{
    char *text = harness_http(E.admin_port, method, path, token, body, NULL, status, NULL);
    cr_assert(text, "%s %s: no answer", method, path);
    json_t *j = json_loads(text, 0, NULL);
    cr_assert(j, "%s %s: not JSON: %s", method, path, text);
    if (raw)
        *raw = text;
    else
        free(text);
    return j;
}

/* call() that asserts the status. */
static json_t *call_ok(const char *method, const char *path, const char *token,
                       const char *body, int want)
{
    int st;
    char *raw;
    json_t *j = call(method, path, token, body, &st, &raw);
    cr_assert_eq(st, want, "%s %s: %d, wanted %d: %s", method, path, st, want, raw);
    free(raw);
    return j;
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static long long jint(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

/* Asserts a 400 naming field. */
static void expect_400(const char *method, const char *path, const char *token,
                       const char *body, const char *field)
{
    int st;
    char *raw;
    json_t *j = call(method, path, token, body, &st, &raw);
    cr_expect_eq(st, 400, "%s %s: %d: %s", method, path, st, raw);
    cr_expect_str_eq(jstr(j, "error"), "invalid_argument", "%s %s: %s", method, path, raw);
    cr_expect_str_eq(jstr(j, "field"), field, "%s %s: %s", method, path, raw);
    json_decref(j);
    free(raw);
}

/* Every dead-letter id of the tenant, newest first, through the "*"
 * operator; malloc'd array of n strdup'd ids. */
static char **ids_of(const char *tenant, size_t *n)
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/dlq?limit=500&tenant=%s", tenant);
    json_t *l = call_ok("GET", path, OP_ALL, NULL, 200);
    json_t *items = json_object_get(l, "items"), *it;
    *n = json_array_size(items);
    char **ids = calloc(*n + 1, sizeof *ids);
    size_t i;
    json_array_foreach(items, i, it)
    {
        cr_assert_str_eq(jstr(it, "tenant"), tenant);
        ids[i] = strdup(jstr(it, "dlq_id"));
    }
    json_decref(l);
    return ids;
}

static void ids_free(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

/* The DLQ entry of event id (NULL when none), through the "*" operator. */
static json_t *entry_of_event(const char *event_id)
{
    json_t *l = call_ok("GET", "/api/v1/dlq?limit=500", OP_ALL, NULL, 200);
    json_t *items = json_object_get(l, "items"), *it, *found = NULL;
    size_t i;
    json_array_foreach(items, i, it)
    {
        if (!found && !strcmp(jstr(it, "event_id"), event_id))
            found = json_incref(it);
    }
    json_decref(l);
    return found;
}

/* A re-drive job polled until it is no longer running. */
static json_t *wait_job(const char *id, const char *token, int timeout_ms)
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/dlq/redrive/%s", id);
    long long end = harness_now_ms() + timeout_ms;
    for (;;) {
        json_t *j = call_ok("GET", path, token, NULL, 200);
        if (strcmp(jstr(j, "state"), "running") != 0 || harness_now_ms() > end)
            return j;
        json_decref(j);
        e2e_sleep_ms(50);
    }
}

/* ---- list ------------------------------------------------------------------- */

Test(admin_dlq, list_is_filtered_by_tenant_before_counting_and_paging)
{
    seed(5, 3);
    json_t *all = call_ok("GET", "/api/v1/dlq", OP_ALL, NULL, 200);
    cr_expect_eq(jint(all, "total"), 8);
    cr_expect_eq(json_array_size(json_object_get(all, "items")), 8);
    json_decref(all);

    /* view-a pages by two: 2, 2, 1, only a's, each once, newest first */
    char path[1024] = "/api/v1/dlq?limit=2";
    char seen[5][40];
    size_t nseen = 0;
    for (int page = 0; page < 4; page++) {
        json_t *l = call_ok("GET", path, VIEW_A, NULL, 200);
        if (page == 0)
            cr_expect_eq(jint(l, "total"), 5, "total counts only tenant a");
        else
            cr_expect_null(json_object_get(l, "total"), "total only on a walk's first page");
        json_t *items = json_object_get(l, "items"), *it;
        size_t i;
        json_array_foreach(items, i, it)
        {
            cr_assert_str_eq(jstr(it, "tenant"), "a");
            cr_assert_lt(nseen, 5);
            if (nseen)
                cr_expect(strcmp(jstr(it, "dlq_id"), seen[nseen - 1]) != 0);
            snprintf(seen[nseen++], sizeof seen[0], "%s", jstr(it, "dlq_id"));
        }
        json_t *next = json_object_get(l, "next_cursor");
        if (json_is_null(next)) {
            cr_expect_eq(page, 2, "three pages");
            cr_expect_eq(json_array_size(items), 1);
            json_decref(l);
            break;
        }
        cr_expect_eq(json_array_size(items), 2);
        snprintf(path, sizeof path, "/api/v1/dlq?limit=2&cursor=%s", json_string_value(next));
        json_decref(l);
    }
    cr_expect_eq(nseen, 5);

    /* the "*" operator narrows with ?tenant; a tenant token cannot widen */
    json_t *b = call_ok("GET", "/api/v1/dlq?tenant=b", OP_ALL, NULL, 200);
    cr_expect_eq(jint(b, "total"), 3);
    json_decref(b);
    json_t *own = call_ok("GET", "/api/v1/dlq?tenant=a", VIEW_A, NULL, 200);
    cr_expect_eq(jint(own, "total"), 5);
    json_decref(own);
    json_t *other = call_ok("GET", "/api/v1/dlq?tenant=b", VIEW_A, NULL, 403);
    cr_expect_str_eq(jstr(other, "field"), "tenant");
    json_decref(other);
    json_t *vb = call_ok("GET", "/api/v1/dlq", VIEW_B, NULL, 200);
    cr_expect_eq(jint(vb, "total"), 3);
    json_decref(vb);
}

Test(admin_dlq, list_items_carry_provenance_and_filters_apply)
{
    seed(2, 1);
    json_t *l = call_ok("GET", "/api/v1/dlq?reason=reject&handler=chaos&type=test.**", VIEW_A,
                        NULL, 200);
    json_t *items = json_object_get(l, "items");
    cr_assert_eq(json_array_size(items), 2);
    json_t *it = json_array_get(items, 0);
    cr_expect_str_eq(jstr(it, "event_id"), "a-1", "newest first");
    cr_expect_str_eq(jstr(it, "type"), "test.e2e.happened");
    cr_expect_str_eq(jstr(it, "reason"), "reject");
    cr_expect_str_eq(jstr(it, "stream"), "t:events");
    cr_expect(jstr(it, "orig_id") && jstr(it, "orig_id")[0]);
    cr_expect(jstr(it, "first_failure") && jstr(it, "last_failure"));
    cr_expect(jstr(it, "error") && strstr(jstr(it, "error"), "rejection"), "%s",
              jstr(it, "error"));
    cr_expect_eq(jint(it, "attempts"), 1);
    cr_expect_str_eq(json_string_value(json_array_get(json_object_get(it, "handlers"), 0)),
                     "chaos/main");
    cr_expect(json_is_null(json_object_get(it, "replay_job")));
    cr_expect_null(json_object_get(it, "event"), "the list leaves the event out");
    json_decref(l);

    l = call_ok("GET", "/api/v1/dlq?reason=poison", VIEW_A, NULL, 200);
    cr_expect_eq(json_array_size(json_object_get(l, "items")), 0);
    cr_expect_eq(jint(l, "total"), 0);
    json_decref(l);
    l = call_ok("GET", "/api/v1/dlq?since=2099-01-01T00:00:00Z", VIEW_A, NULL, 200);
    cr_expect_eq(jint(l, "total"), 0);
    json_decref(l);
    l = call_ok("GET", "/api/v1/dlq?until=2099-01-01T00:00:00Z", VIEW_A, NULL, 200);
    cr_expect_eq(jint(l, "total"), 2);
    json_decref(l);

    expect_400("GET", "/api/v1/dlq?reason=nope", VIEW_A, NULL, "reason");
    expect_400("GET", "/api/v1/dlq?type=a.*.b", VIEW_A, NULL, "type");
    expect_400("GET", "/api/v1/dlq?since=yesterday", VIEW_A, NULL, "since");
}

Test(admin_dlq, event_id_finds_an_entry_on_the_server_within_the_callers_tenant)
{
    seed(3, 2);
    json_t *l = call_ok("GET", "/api/v1/dlq?event_id=a-1", VIEW_A, NULL, 200);
    json_t *items = json_object_get(l, "items");
    cr_assert_eq(json_array_size(items), 1, "one entry of a-0, a-1, a-2");
    cr_expect_str_eq(jstr(json_array_get(items, 0), "event_id"), "a-1");
    cr_expect_eq(jint(l, "total"), 1, "the count applies it too");
    cr_expect(json_is_null(json_object_get(l, "next_cursor")));
    json_decref(l);
    /* exact, not a prefix */
    l = call_ok("GET", "/api/v1/dlq?event_id=a-", VIEW_A, NULL, 200);
    cr_expect_eq(json_array_size(json_object_get(l, "items")), 0);
    json_decref(l);
    /* another tenant's event id is simply not there for a tenant token */
    l = call_ok("GET", "/api/v1/dlq?event_id=b-0", VIEW_A, NULL, 200);
    cr_expect_eq(json_array_size(json_object_get(l, "items")), 0);
    cr_expect_eq(jint(l, "total"), 0);
    json_decref(l);
    l = call_ok("GET", "/api/v1/dlq?event_id=b-0", OP_ALL, NULL, 200);
    cr_expect_eq(json_array_size(json_object_get(l, "items")), 1);
    json_decref(l);
    /* combined with the other filters */
    l = call_ok("GET", "/api/v1/dlq?event_id=a-2&reason=poison", VIEW_A, NULL, 200);
    cr_expect_eq(json_array_size(json_object_get(l, "items")), 0);
    json_decref(l);

    char big[400], path[512];
    memset(big, 'x', 257);
    big[257] = '\0';
    snprintf(path, sizeof path, "/api/v1/dlq?event_id=%s", big);
    expect_400("GET", path, VIEW_A, NULL, "event_id");
    expect_400("GET", "/api/v1/dlq?event_id=", VIEW_A, NULL, "event_id");
    expect_400("GET", "/api/v1/dlq?event_id=a%01b", VIEW_A, NULL, "event_id");
}

Test(admin_dlq, a_cursor_continues_past_entries_added_meanwhile)
{
    seed(4, 0);
    json_t *p1 = call_ok("GET", "/api/v1/dlq?limit=2", VIEW_A, NULL, 200);
    const char *cur = jstr(p1, "next_cursor");
    cr_assert(cur);
    const char *last = jstr(json_array_get(json_object_get(p1, "items"), 1), "dlq_id");

    /* two new dead letters arrive between the pages */
    publish_reject("a-new-0", "a");
    publish_reject("a-new-1", "a");
    long long end = harness_now_ms() + 15000;
    while (fx_xlen(&E.fx, "t:events:dlq") < 6 && harness_now_ms() < end)
        e2e_sleep_ms(50);
    cr_assert_eq(fx_xlen(&E.fx, "t:events:dlq"), 6);

    char path[512];
    snprintf(path, sizeof path, "/api/v1/dlq?limit=2&cursor=%s", cur);
    json_t *p2 = call_ok("GET", path, VIEW_A, NULL, 200);
    json_t *items = json_object_get(p2, "items"), *it;
    size_t i;
    cr_expect_eq(json_array_size(items), 2);
    json_array_foreach(items, i, it)
    {
        cr_expect(strncmp(jstr(it, "event_id"), "a-new", 5) != 0, "a new entry on page 2");
        cr_expect_str_eq(jstr(it, "event_id"), i == 0 ? "a-1" : "a-0");
        /* strictly older than the last entry of page 1 */
        cr_expect(strtoll(jstr(it, "dlq_id"), NULL, 10) <= strtoll(last, NULL, 10));
        cr_expect(strcmp(jstr(it, "dlq_id"), last) != 0);
    }
    cr_expect(json_is_null(json_object_get(p2, "next_cursor")));
    json_decref(p2);
    json_decref(p1);
}

Test(admin_dlq, forged_and_foreign_cursors_are_400)
{
    seed(3, 3);
    json_t *pa = call_ok("GET", "/api/v1/dlq?limit=1", VIEW_A, NULL, 200);
    char cur[512], path[700];
    snprintf(cur, sizeof cur, "%s", jstr(pa, "next_cursor"));
    json_decref(pa);

    /* tenant b's token with tenant a's cursor */
    snprintf(path, sizeof path, "/api/v1/dlq?limit=1&cursor=%s", cur);
    expect_400("GET", path, VIEW_B, NULL, "cursor");
    expect_400("GET", path, OP_ALL, NULL, "cursor");
    /* a forged signature, a forged payload, garbage */
    char forged[512];
    snprintf(forged, sizeof forged, "%s", cur);
    size_t n = strlen(forged);
    forged[n - 2] = forged[n - 2] == 'A' ? 'B' : 'A';
    snprintf(path, sizeof path, "/api/v1/dlq?cursor=%s", forged);
    expect_400("GET", path, VIEW_A, NULL, "cursor");
    /* "9999999999999-0" as the payload, the signature of another */
    snprintf(path, sizeof path, "/api/v1/dlq?cursor=OTk5OTk5OTk5OTk5OS0w%s", strchr(cur, '.'));
    expect_400("GET", path, VIEW_A, NULL, "cursor");
    expect_400("GET", "/api/v1/dlq?cursor=abc", VIEW_A, NULL, "cursor");
    expect_400("GET", "/api/v1/dlq?cursor=", VIEW_A, NULL, "cursor");
    /* the same tenant's cursor still works */
    snprintf(path, sizeof path, "/api/v1/dlq?limit=1&cursor=%s", cur);
    json_decref(call_ok("GET", path, OP_A, NULL, 200));
}

Test(admin_dlq, bad_limits_and_unknown_parameters_are_400)
{
    seed(1, 0);
    const char *bad[] = {"0", "501", "-1", "abc", "1.5", "", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char path[128];
        snprintf(path, sizeof path, "/api/v1/dlq?limit=%s", bad[i]);
        expect_400("GET", path, VIEW_A, NULL, "limit");
    }
    json_decref(call_ok("GET", "/api/v1/dlq?limit=1", VIEW_A, NULL, 200));
    json_decref(call_ok("GET", "/api/v1/dlq?limit=500", VIEW_A, NULL, 200));
    expect_400("GET", "/api/v1/dlq?offset=3", VIEW_A, NULL, "offset");
    expect_400("GET", "/api/v1/dlq?limit=5&limit=6", VIEW_A, NULL, "limit");
    expect_400("GET", "/api/v1/dlq/not-an-id", VIEW_A, NULL, "id");
    expect_400("POST", "/api/v1/dlq/12x/retry", OP_A, NULL, "id");
}

/* ---- the overview's history (GET /api/v1/stats/history) -------------------- */

/* Sums of a history's points: events, failures, dead_lettered. */
static void history_sums(const char *token, long long *events, long long *failures,
                         long long *dead, size_t *n_points, json_t **last)
{
    json_t *j = call_ok("GET", "/api/v1/stats/history", token, NULL, 200);
    json_t *pts = json_object_get(j, "points"), *p;
    size_t i;
    *events = *failures = *dead = 0;
    json_array_foreach(pts, i, p)
    {
        *events += jint(p, "events");
        *failures += jint(p, "failures");
        *dead += jint(p, "dead_lettered");
    }
    *n_points = json_array_size(pts);
    if (last)
        *last = json_incref(json_array_get(pts, json_array_size(pts) - 1));
    json_decref(j);
}

Test(admin_dlq, stats_history_has_per_period_points_of_the_callers_tenant_only)
{
    write_conf();
    fx_conf(&E.fx, "20-stats.yaml", "stats: { history_period: 1s }\n");
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "a-%d", i);
        publish_reject(id, "a");
    }
    publish_reject("b-0", "b");
    publish_reject("b-1", "b");
    char *ev = e2e_event("a-ok", "test.e2e.happened", "a", "{}", NULL);
    cr_assert_eq(e2e_xadd(&E, "*", ev, NULL), 0);
    free(ev);
    e2e_evbusd(&E, 0);
    cr_assert(e2e_wait_healthy(&E, 40000), "evbusd did not come up (log %s)", E.fx.log);

    /* the events land in some period; a later sample has read the DLQ and
     * the group (every 2 s) */
    long long ev_a = 0, fail_a = 0, dead_a = 0, end = harness_now_ms() + 20000;
    size_t n = 0;
    json_t *last = NULL;
    for (;;) {
        json_decref(last);
        history_sums(VIEW_A, &ev_a, &fail_a, &dead_a, &n, &last);
        if ((ev_a == 4 && last && jint(last, "dlq_entries") == 5 &&
             json_is_integer(json_object_get(last, "pending"))) ||
            harness_now_ms() > end)
            break;
        e2e_sleep_ms(200);
    }
    cr_expect_eq(ev_a, 4, "tenant a's events: 3 rejected, 1 ok");
    cr_expect_eq(fail_a, 3);
    cr_expect_eq(dead_a, 3);
    cr_assert(last);
    cr_expect_eq(jint(last, "dlq_entries"), 5, "the stream's DLQ, sampled each period");
    cr_expect(json_is_integer(json_object_get(last, "pending")));
    cr_expect(json_is_number(json_object_get(last, "span_s")));
    cr_expect(n >= 1 && n <= 15, "%zu points", n);
    json_decref(last);

    long long ev_all, fail_all, dead_all;
    history_sums(OP_ALL, &ev_all, &fail_all, &dead_all, &n, NULL);
    cr_expect_eq(ev_all, 6, "every tenant's for a * token");
    cr_expect_eq(dead_all, 5);
    long long ev_b, fail_b, dead_b;
    history_sums(VIEW_B, &ev_b, &fail_b, &dead_b, &n, NULL);
    cr_expect_eq(ev_b, 2);

    json_t *j = call_ok("GET", "/api/v1/stats/history?tenant=b", OP_ALL, NULL, 200);
    cr_expect_str_eq(jstr(j, "tenant"), "b");
    cr_expect_float_eq(json_real_value(json_object_get(j, "period_s")), 1.0, 1e-9);
    json_decref(j);
    int st;
    char *raw;
    j = call("GET", "/api/v1/stats/history?tenant=b", VIEW_A, NULL, &st, &raw);
    cr_expect_eq(st, 403, "%s", raw);
    cr_expect_str_eq(jstr(j, "field"), "tenant");
    cr_expect(!strstr(raw, "\"events\""), "no numbers in the refusal");
    json_decref(j);
    free(raw);
    expect_400("GET", "/api/v1/stats/history?limit=3", VIEW_A, NULL, "limit");
}

/* ---- one entry -------------------------------------------------------------- */

Test(admin_dlq, get_shows_the_event_with_its_provenance)
{
    seed(1, 0);
    size_t n;
    char **ids = ids_of("a", &n);
    char path[128];
    snprintf(path, sizeof path, "/api/v1/dlq/%s", ids[0]);
    json_t *e = call_ok("GET", path, VIEW_A, NULL, 200);
    cr_expect_str_eq(jstr(e, "dlq_id"), ids[0]);
    cr_expect_str_eq(jstr(e, "event_encoding"), "json");
    json_t *ev = json_object_get(e, "event");
    cr_assert(json_is_object(ev));
    cr_expect_str_eq(jstr(ev, "id"), "a-0");
    cr_expect_str_eq(jstr(json_object_get(ev, "data"), "fault"), "reject");
    cr_expect_str_eq(jstr(e, "stream"), "t:events");
    cr_expect_str_eq(jstr(e, "reason"), "reject");
    cr_expect_eq(jint(e, "attempts"), 1);
    cr_expect_null(json_object_get(e, "raw"));
    json_decref(e);
    ids_free(ids, n);
}

Test(admin_dlq, the_detail_lists_every_attempts_error_and_evbusctl_shows_them)
{
    /* three attempts, each asking for a retry: retries_exhausted on the third */
    write_conf();
    e2e_plugins(&E, "{ pattern: \"test.**\", retry: { base_ms: 20, max_ms: 40, max_attempts: 3 } }",
                NULL);
    char *ev = e2e_event("a-r", "test.e2e.happened", "a", "{\"fault\":\"retry:10\"}", NULL);
    cr_assert_eq(e2e_xadd(&E, "*", ev, NULL), 0);
    free(ev);
    e2e_evbusd(&E, 0);
    cr_assert(e2e_wait_healthy(&E, 40000), "evbusd did not come up (log %s)", E.fx.log);
    long long end = harness_now_ms() + 20000;
    while (fx_xlen(&E.fx, "t:events:dlq") < 1 && harness_now_ms() < end)
        e2e_sleep_ms(50);
    cr_assert_eq(fx_xlen(&E.fx, "t:events:dlq"), 1, "no dead letter (log %s)", E.fx.log);

    json_t *item = entry_of_event("a-r");
    cr_assert(item);
    cr_expect_null(json_object_get(item, "attempt_errors"), "the list leaves them out");
    char path[128];
    snprintf(path, sizeof path, "/api/v1/dlq/%s", jstr(item, "dlq_id"));
    json_t *e = call_ok("GET", path, VIEW_A, NULL, 200);
    cr_expect_str_eq(jstr(e, "reason"), "retries_exhausted");
    json_t *errs = json_object_get(e, "attempt_errors");
    cr_assert_eq(json_array_size(errs), 3, "one per attempt: %s", json_dumps(errs, 0));
    for (size_t i = 0; i < 3; i++) {
        json_t *x = json_array_get(errs, i);
        cr_expect_eq(jint(x, "attempt"), (long long)i + 1);
        cr_expect_str_eq(jstr(x, "handler"), "chaos/main");
        cr_expect(jstr(x, "at") && strlen(jstr(x, "at")) >= 20, "an RFC 3339 time");
        char want[64];
        snprintf(want, sizeof want, "this was attempt %zu", i + 1);
        cr_expect(jstr(x, "error") && strstr(jstr(x, "error"), want), "attempt %zu: %s", i + 1,
                  jstr(x, "error"));
        if (i)
            cr_expect(strcmp(jstr(x, "at"), jstr(json_array_get(errs, i - 1), "at")) >= 0,
                      "oldest first");
    }
    /* the last one is the failure the `error` field keeps, as before */
    cr_expect_str_eq(jstr(json_array_get(errs, 2), "error"), jstr(e, "error"));

    char *out = NULL;
    cr_expect_eq(e2e_ctl(&E, &out, NULL, "dlq", "show", jstr(item, "dlq_id"), NULL), 0);
    cr_expect(out && strstr(out, "attempt errors:\n  #1  ") && strstr(out, "  #3  ") &&
                  strstr(out, "chaos/main  chaos/main: data.fault asks for 10 retries; this was "
                              "attempt 2"),
              "%s", out);
    free(out);
    json_t *j = NULL;
    cr_expect_eq(e2e_ctl_json(&E, &j, "dlq", "show", jstr(item, "dlq_id"), "--json", NULL), 0);
    cr_expect_eq(json_array_size(json_object_get(j, "attempt_errors")), 3);
    json_decref(j);
    json_decref(e);
    json_decref(item);
}

Test(admin_dlq, a_failure_before_any_handler_is_one_attempt_error_without_a_handler)
{
    seed(0, 0);
    char *ev = e2e_event("a-bad", "NOT A TYPE", "a", "{}", NULL);
    cr_assert_eq(e2e_xadd(&E, "*", ev, NULL), 0);
    free(ev);
    long long end = harness_now_ms() + 20000;
    while (fx_xlen(&E.fx, "t:events:dlq") < 1 && harness_now_ms() < end)
        e2e_sleep_ms(50);
    json_t *item = entry_of_event("a-bad");
    cr_assert(item, "no dead letter (log %s)", E.fx.log);
    char path[128];
    snprintf(path, sizeof path, "/api/v1/dlq/%s", jstr(item, "dlq_id"));
    /* the envelope failed before its tenant was read: only "*" sees it */
    json_t *e = call_ok("GET", path, OP_ALL, NULL, 200);
    json_t *errs = json_object_get(e, "attempt_errors");
    cr_assert_eq(json_array_size(errs), 1);
    cr_expect(json_is_null(json_object_get(json_array_get(errs, 0), "handler")));
    cr_expect_eq(jint(json_array_get(errs, 0), "attempt"), 1);
    cr_expect_str_eq(jstr(json_array_get(errs, 0), "error"), jstr(e, "error"));
    json_decref(e);
    json_decref(item);
}

Test(admin_dlq, another_tenants_entry_answers_exactly_like_a_missing_one)
{
    seed(1, 1);
    size_t n;
    char **b = ids_of("b", &n);
    cr_assert_eq(n, 1);
    struct {
        const char *method, *fmt, *token;
    } ops[] = {{"GET", "/api/v1/dlq/%s", VIEW_A},
               {"GET", "/api/v1/dlq/%s", OP_A},
               {"POST", "/api/v1/dlq/%s/retry", OP_A},
               {"DELETE", "/api/v1/dlq/%s", OP_A}};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        char theirs[128], missing[128];
        snprintf(theirs, sizeof theirs, ops[i].fmt, b[0]);
        snprintf(missing, sizeof missing, ops[i].fmt, "1-0");
        int st1, st2;
        char *raw1, *raw2;
        json_decref(call(ops[i].method, theirs, ops[i].token, NULL, &st1, &raw1));
        json_decref(call(ops[i].method, missing, ops[i].token, NULL, &st2, &raw2));
        cr_expect_eq(st1, 404, "%s %s: %d %s", ops[i].method, theirs, st1, raw1);
        cr_expect_eq(st2, 404);
        cr_expect_str_eq(raw1, raw2, "%s: other tenant's and missing differ", ops[i].method);
        free(raw1);
        free(raw2);
    }
    /* and b's entry is untouched */
    char path[128];
    snprintf(path, sizeof path, "/api/v1/dlq/%s", b[0]);
    json_decref(call_ok("GET", path, VIEW_B, NULL, 200));
    cr_expect_eq(e2e_chaos_calls(&E, "b-0", NULL), 1);
    ids_free(b, n);
}

Test(admin_dlq, viewers_and_publishers_cannot_change_dead_letters)
{
    seed(1, 0);
    size_t n;
    char **a = ids_of("a", &n);
    char retry[128], one[128];
    snprintf(retry, sizeof retry, "/api/v1/dlq/%s/retry", a[0]);
    snprintf(one, sizeof one, "/api/v1/dlq/%s", a[0]);
    json_decref(call_ok("POST", retry, VIEW_A, NULL, 403));
    json_decref(call_ok("DELETE", one, VIEW_A, NULL, 403));
    json_decref(call_ok("POST", "/api/v1/dlq/redrive", VIEW_A, "{\"filter\":{},\"dry_run\":true}",
                        403));
    json_decref(call_ok("GET", "/api/v1/dlq", PUB, NULL, 403));
    json_decref(call_ok("GET", "/api/v1/dlq", NULL, NULL, 401));
    json_decref(call_ok("GET", one, VIEW_A, NULL, 200));
    ids_free(a, n);
}

Test(admin_dlq, retry_sends_the_event_back_to_its_handler)
{
    seed(1, 1);
    size_t n;
    char **a = ids_of("a", &n);
    json_t *before = entry_of_event("a-0");
    char orig[64];
    snprintf(orig, sizeof orig, "%s", jstr(before, "orig_id"));
    json_decref(before);
    cr_assert_eq(e2e_chaos_calls(&E, "a-0", NULL), 1);

    char path[128];
    snprintf(path, sizeof path, "/api/v1/dlq/%s/retry", a[0]);
    json_t *r = call_ok("POST", path, OP_A, NULL, 200);
    cr_expect_str_eq(jstr(r, "dlq_id"), a[0]);
    cr_expect(jstr(r, "stream_id") && jstr(r, "stream_id")[0]);
    json_decref(r);

    /* the handler sees it again, rejects it again: a new dead letter of
     * the same original entry */
    long long end = harness_now_ms() + 15000;
    json_t *again = NULL;
    while (harness_now_ms() < end) {
        json_decref(again);
        again = entry_of_event("a-0");
        if (again && strcmp(jstr(again, "dlq_id"), a[0]) != 0)
            break;
        e2e_sleep_ms(50);
    }
    cr_assert(again && strcmp(jstr(again, "dlq_id"), a[0]) != 0, "no new dead letter");
    cr_expect_eq(e2e_chaos_calls(&E, "a-0", NULL), 2);
    cr_expect_str_eq(jstr(again, "orig_id"), orig);
    json_decref(again);
    snprintf(path, sizeof path, "/api/v1/dlq/%s", a[0]);
    json_decref(call_ok("GET", path, OP_A, NULL, 404));
    cr_expect_eq(e2e_chaos_calls(&E, "b-0", NULL), 1);
    ids_free(a, n);
}

Test(admin_dlq, delete_removes_the_entry)
{
    seed(2, 0);
    size_t n;
    char **a = ids_of("a", &n);
    char path[128];
    snprintf(path, sizeof path, "/api/v1/dlq/%s", a[0]);
    json_t *d = call_ok("DELETE", path, OP_A, NULL, 200);
    cr_expect(json_is_true(json_object_get(d, "deleted")));
    json_decref(d);
    json_decref(call_ok("GET", path, OP_A, NULL, 404));
    json_decref(call_ok("DELETE", path, OP_A, NULL, 404));
    cr_expect_eq(fx_xlen(&E.fx, "t:events:dlq"), 1);
    ids_free(a, n);
}

/* ---- re-drive --------------------------------------------------------------- */

/* A dry run's confirm token (asserting the count). */
static char *dry_run(const char *token, const char *filter, long long want_count)
{
    char body[512];
    snprintf(body, sizeof body, "{\"filter\":%s,\"dry_run\":true}", filter);
    json_t *d = call_ok("POST", "/api/v1/dlq/redrive", token, body, 200);
    cr_expect_eq(jint(d, "count"), want_count, "dry run of %s", filter);
    char *c = strdup(jstr(d, "confirm"));
    json_decref(d);
    return c;
}

Test(admin_dlq, redrive_needs_a_matching_confirm_and_touches_only_the_callers_tenant)
{
    seed(5, 3);
    size_t nb;
    char **b_before = ids_of("b", &nb);
    char *confirm = dry_run(OP_A, "{}", 5);
    char body[1024];

    expect_400("POST", "/api/v1/dlq/redrive", OP_A, "{\"filter\":{}}", "confirm");
    snprintf(body, sizeof body, "{\"filter\":{\"reason\":\"reject\"},\"confirm\":\"%s\"}",
             confirm);
    expect_400("POST", "/api/v1/dlq/redrive", OP_A, body, "confirm");
    snprintf(body, sizeof body, "{\"filter\":{},\"confirm\":\"%s\"}", confirm);
    expect_400("POST", "/api/v1/dlq/redrive", OP_ALL, body, "confirm"); /* another tenant's */
    char forged[256];
    snprintf(forged, sizeof forged, "%s", confirm);
    forged[0] = forged[0] == '9' ? '8' : '9'; /* another count */
    snprintf(body, sizeof body, "{\"filter\":{},\"confirm\":\"%s\"}", forged);
    expect_400("POST", "/api/v1/dlq/redrive", OP_A, body, "confirm");
    snprintf(body, sizeof body, "{\"filter\":{\"tenant\":\"b\"},\"dry_run\":true}");
    json_decref(call_ok("POST", "/api/v1/dlq/redrive", OP_A, body, 403));
    expect_400("POST", "/api/v1/dlq/redrive", OP_A, "{\"filter\":{\"bogus\":1}}", "filter.bogus");
    expect_400("POST", "/api/v1/dlq/redrive", OP_A,
               "{\"filter\":{},\"dry_run\":true,\"rate\":0}", "rate");

    /* one of a's goes away: the count no longer matches */
    size_t na;
    char **a = ids_of("a", &na);
    char path[128];
    snprintf(path, sizeof path, "/api/v1/dlq/%s", a[0]);
    json_decref(call_ok("DELETE", path, OP_A, NULL, 200));
    snprintf(body, sizeof body, "{\"filter\":{},\"confirm\":\"%s\"}", confirm);
    json_t *c = call_ok("POST", "/api/v1/dlq/redrive", OP_A, body, 409);
    cr_expect_eq(jint(c, "count"), 4);
    cr_expect_str_eq(jstr(c, "field"), "confirm");
    json_decref(c);
    free(confirm);

    confirm = dry_run(OP_A, "{}", 4);
    snprintf(body, sizeof body, "{\"filter\":{},\"confirm\":\"%s\",\"rate\":1000}", confirm);
    json_t *job = call_ok("POST", "/api/v1/dlq/redrive", OP_A, body, 202);
    cr_expect_str_eq(jstr(job, "state"), "running");
    cr_expect_eq(jint(job, "total"), 4);
    cr_expect_eq(jint(job, "rate"), 1000);
    cr_expect_str_eq(jstr(json_object_get(job, "filter"), "tenant"), "a");
    char job_id[64];
    snprintf(job_id, sizeof job_id, "%s", jstr(job, "id"));
    json_decref(job);

    json_t *end = wait_job(job_id, VIEW_A, 20000);
    cr_expect_str_eq(jstr(end, "state"), "done");
    cr_expect_eq(jint(end, "done"), 4);
    cr_expect_eq(jint(end, "failed"), 0);
    cr_expect(jstr(end, "finished_at"));
    json_decref(end);

    /* another tenant's job is a missing job */
    char jp[128], missing_raw_path[128];
    snprintf(jp, sizeof jp, "/api/v1/dlq/redrive/%s", job_id);
    snprintf(missing_raw_path, sizeof missing_raw_path, "/api/v1/dlq/redrive/rd-0000000000000000");
    int st1, st2;
    char *raw1, *raw2;
    json_decref(call("GET", jp, VIEW_B, NULL, &st1, &raw1));
    json_decref(call("GET", missing_raw_path, VIEW_B, NULL, &st2, &raw2));
    cr_expect_eq(st1, 404);
    cr_expect_eq(st2, 404);
    cr_expect_str_eq(raw1, raw2);
    free(raw1);
    free(raw2);
    json_decref(call_ok("DELETE", jp, VIEW_A, NULL, 403));
    json_decref(call_ok("GET", jp, OP_ALL, NULL, 200));

    /* every a entry left went back to the handler (and came back rejected;
     * a-4, the newest, was deleted); b's entries are the same entries as
     * before, never delivered again */
    cr_expect_eq(e2e_chaos_calls(&E, "a-4", NULL), 1);
    for (int i = 0; i < 4; i++) {
        char ev[16];
        snprintf(ev, sizeof ev, "a-%d", i);
        long long until = harness_now_ms() + 15000;
        while (e2e_chaos_calls(&E, ev, NULL) < 2 && harness_now_ms() < until)
            e2e_sleep_ms(50);
        cr_expect_eq(e2e_chaos_calls(&E, ev, NULL), 2, "%s", ev);
    }
    size_t nb2;
    char **b_after = ids_of("b", &nb2);
    cr_expect_eq(nb2, nb);
    for (size_t i = 0; i < nb && i < nb2; i++)
        cr_expect_str_eq(b_after[i], b_before[i]);
    for (int i = 0; i < 3; i++) {
        char ev[16];
        snprintf(ev, sizeof ev, "b-%d", i);
        cr_expect_eq(e2e_chaos_calls(&E, ev, NULL), 1, "%s", ev);
    }
    ids_free(b_after, nb2);
    ids_free(b_before, nb);
    ids_free(a, na);
    free(confirm);
}

Test(admin_dlq, redrive_is_paced_by_its_rate_and_can_be_cancelled)
{
    seed(20, 0);
    char *confirm = dry_run(OP_ALL, "{\"tenant\":\"a\",\"type\":\"test.**\"}", 20);
    char body[512];
    snprintf(body, sizeof body,
             "{\"filter\":{\"type\":\"test.**\",\"tenant\":\"a\"},\"confirm\":\"%s\",\"rate\":4}",
             confirm);
    json_t *job = call_ok("POST", "/api/v1/dlq/redrive", OP_ALL, body, 202);
    char path[128];
    snprintf(path, sizeof path, "/api/v1/dlq/redrive/%s", jstr(job, "id"));
    json_decref(job);

    e2e_sleep_ms(1100);
    json_t *p = call_ok("GET", path, OP_ALL, NULL, 200);
    cr_expect_str_eq(jstr(p, "state"), "running");
    long long done = jint(p, "done");
    cr_expect(done >= 2 && done <= 7, "4/s for ~1.1 s, done %lld", done);
    cr_expect(json_is_null(json_object_get(p, "finished_at")));
    json_decref(p);

    json_t *c = call_ok("DELETE", path, OP_ALL, NULL, 200);
    cr_expect_str_eq(jstr(c, "state"), "cancelled");
    long long at_cancel = jint(c, "done");
    json_decref(c);
    e2e_sleep_ms(1000);
    json_t *after = call_ok("GET", path, OP_ALL, NULL, 200);
    cr_expect_str_eq(jstr(after, "state"), "cancelled");
    cr_expect(jint(after, "done") <= at_cancel + 1, "went on after the cancel");
    cr_expect(jstr(after, "finished_at"));
    json_decref(after);

    /* the ones not re-driven are still there, never delivered again */
    size_t untouched = 0;
    for (int i = 0; i < 20; i++) {
        char ev[16];
        snprintf(ev, sizeof ev, "a-%d", i);
        untouched += e2e_chaos_calls(&E, ev, NULL) == 1;
    }
    cr_expect(untouched >= 10, "only %zu of 20 untouched", untouched);
    free(confirm);
}

Test(admin_dlq, a_tenant_operators_redrive_is_bound_to_its_tenant)
{
    seed(2, 2);
    /* a's operator re-drives "everything": that is a's two */
    char *confirm = dry_run(OP_A, "{}", 2);
    char body[512];
    snprintf(body, sizeof body, "{\"filter\":{\"tenant\":\"a\"},\"confirm\":\"%s\"}", confirm);
    /* naming its tenant explicitly is the same filter */
    json_t *job = call_ok("POST", "/api/v1/dlq/redrive", OP_A, body, 202);
    char id[64];
    snprintf(id, sizeof id, "%s", jstr(job, "id"));
    json_decref(job);
    json_t *end = wait_job(id, OP_A, 20000);
    cr_expect_str_eq(jstr(end, "state"), "done");
    cr_expect_eq(jint(end, "done"), 2);
    json_decref(end);
    cr_expect_eq(e2e_chaos_calls(&E, "b-0", NULL), 1);
    cr_expect_eq(e2e_chaos_calls(&E, "b-1", NULL), 1);
    free(confirm);
}
