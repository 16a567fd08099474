/*
 * Replay through the running daemon: events are XADDed with explicit stream
 * ids one second apart in the past (so a time window selects exact
 * entries), handled live once, then replayed with `evbusctl replay`.
 * testkit's is_replay column (5th) tells the two deliveries apart.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e.h"

static e2e_t E;

static void setup(void) { e2e_start(&E, false, true); }
static void teardown(void) { e2e_stop(&E); }

TestSuite(e2e_replay, .init = setup, .fini = teardown, .timeout = 120);

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static long long jint(const json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

/* A whole second, a minute ago: entries at base + i*1000 ms. */
static int64_t base_ms(void) { return (e2e_epoch_ms() / 1000 - 60) * 1000; }

static void xadd_at(int64_t ms, int seq, const char *json)
{
    char sid[64];
    snprintf(sid, sizeof sid, "%lld-%d", (long long)ms, seq);
    cr_assert_eq(e2e_xadd(&E, sid, json, NULL), 0, "XADD %s", sid);
}

static void approved_at(int64_t ms, const char *id)
{
    char *data = e2e_approved_v2(1);
    char *ev = e2e_event(id, "approval.item.approved", "acme", data, NULL);
    xadd_at(ms, 0, ev);
    free(ev);
    free(data);
}

static void start_live(void)
{
    e2e_evbusd(&E, 0);
    cr_assert(e2e_wait_healthy(&E, 10000), "evbusd did not become healthy (log %s)", E.fx.log);
}

typedef struct {
    const e2e_t *e;
    const char *id;
    int replay;
    size_t n;
} rec_wait_t;

static bool rec_reached(void *ud)
{
    rec_wait_t *w = ud;
    return e2e_rec_calls(w->e, w->id, w->replay) >= w->n;
}

static bool wait_rec(const char *id, int replay, size_t n, int timeout_ms)
{
    rec_wait_t w = {&E, id, replay, n};
    return harness_wait_until(rec_reached, &w, timeout_ms);
}

typedef struct {
    const e2e_t *e;
    const char *id;
    size_t n;
} calls_wait_t;

static bool calls_reached(void *ud)
{
    calls_wait_t *w = ud;
    return e2e_chaos_calls(w->e, w->id, NULL) >= w->n;
}

static bool wait_calls(const char *id, size_t n, int timeout_ms)
{
    calls_wait_t w = {&E, id, n};
    return harness_wait_until(calls_reached, &w, timeout_ms);
}

/* `replay start --from --to --type --wait --json`; the final job (caller
 * decrefs) and the exit status in *rc. */
static json_t *replay_wait(int64_t from, int64_t to, const char *type, int *rc)
{
    char f[40], t[40];
    e2e_rfc3339(from, f);
    e2e_rfc3339(to, t);
    json_t *job = NULL;
    *rc = e2e_ctl_json(&E, &job, "replay", "start", "--from", f, "--to", t, "--type", type,
                       "--wait", "--json", NULL);
    return job;
}

Test(e2e_replay, window_is_redelivered_exactly_once_marked_as_replay)
{
    e2e_host_conf(&E, NULL);
    e2e_plugins(&E, NULL, "{ pattern: \"**\", handler: record }");
    int64_t base = base_ms();
    const char *ids[] = {"a0", "a1", "a2", "a3", "a4", "a5"};
    for (int i = 0; i < 6; i++) {
        approved_at(base + i * 1000, ids[i]);
        if (i == 2) {
            /* same millisecond, another type: inside the window, filtered out */
            char *ev = e2e_event("other-2", "test.e2e.other", "acme", "{}", NULL);
            xadd_at(base + 2000, 1, ev);
            free(ev);
        }
    }
    start_live();
    for (int i = 0; i < 6; i++)
        cr_assert(wait_rec(ids[i], 0, 1, 10000), "%s was not handled live", ids[i]);
    cr_assert(wait_rec("other-2", 0, 1, 10000));

    int rc;
    json_t *job = replay_wait(base + 1000, base + 3000, "approval.**", &rc);
    cr_assert_eq(rc, 0, "replay --wait exited %d: %s", rc, json_dumps(job, JSON_COMPACT));
    cr_expect_str_eq(jstr(job, "status"), "completed");
    const char *job_id = jstr(job, "id");
    cr_assert(job_id);

    /* the job is done once replay --wait returns: nothing more may arrive */
    e2e_sleep_ms(300);
    for (int i = 0; i < 6; i++) {
        size_t want = i >= 1 && i <= 3 ? 1 : 0;
        cr_expect_eq(e2e_rec_calls(&E, ids[i], 1), want, "%s replayed %zu times", ids[i],
                     e2e_rec_calls(&E, ids[i], 1));
        cr_expect_eq(e2e_rec_calls(&E, ids[i], 0), 1, "%s live deliveries", ids[i]);
    }
    cr_expect_eq(e2e_rec_calls(&E, "other-2", 1), 0, "the type filter let other-2 through");

    json_t *st = NULL;
    cr_assert_eq(e2e_ctl_json(&E, &st, "replay", "status", job_id, "--json", NULL), 0);
    cr_expect_str_eq(jstr(st, "status"), "completed");
    cr_expect_eq(jint(st, "processed"), 3, "%s", json_dumps(st, JSON_COMPACT));
    cr_expect_eq(jint(st, "skipped"), 1, "%s", json_dumps(st, JSON_COMPACT));
    cr_expect_eq(jint(st, "failed"), 0);
    cr_expect_eq(jint(st, "total"), 4, "%s", json_dumps(st, JSON_COMPACT));
    json_decref(st);
    json_decref(job);
}

Test(e2e_replay, cancel_stops_a_rate_limited_job)
{
    e2e_host_conf(&E, NULL);
    e2e_plugins(&E, NULL, "{ pattern: \"**\", handler: record }");
    int64_t base = base_ms();
    char ids[10][16];
    for (int i = 0; i < 10; i++) {
        snprintf(ids[i], sizeof ids[i], "slow-%d", i);
        approved_at(base + i * 1000, ids[i]);
    }
    start_live();
    for (int i = 0; i < 10; i++)
        cr_assert(wait_rec(ids[i], 0, 1, 10000));

    char f[40], t[40];
    e2e_rfc3339(base, f);
    e2e_rfc3339(base + 9000, t);
    json_t *job = NULL;
    cr_assert_eq(e2e_ctl_json(&E, &job, "replay", "start", "--from", f, "--to", t, "--rate", "1",
                              "--json", NULL),
                 0);
    char id[64];
    snprintf(id, sizeof id, "%s", jstr(job, "id"));
    json_decref(job);

    /* running and at least one event through: the job is mid-way */
    cr_assert(wait_rec(ids[0], 1, 1, 10000), "the job never started replaying");
    json_t *st = NULL;
    cr_assert_eq(e2e_ctl_json(&E, &st, "replay", "cancel", id, "--json", NULL), 0);
    cr_expect_str_eq(jstr(st, "status"), "cancelled");
    json_decref(st);

    /* it notices within a second; afterwards nothing more is replayed */
    e2e_sleep_ms(1500);
    size_t replayed = 0;
    for (int i = 0; i < 10; i++)
        replayed += e2e_rec_calls(&E, ids[i], 1);
    e2e_sleep_ms(2000);
    size_t later = 0;
    for (int i = 0; i < 10; i++)
        later += e2e_rec_calls(&E, ids[i], 1);
    cr_expect_eq(later, replayed, "replay went on after the cancel (%zu then %zu)", replayed,
                 later);
    cr_expect_lt(later, 10, "a rate-1 job replayed all 10 events within seconds");

    cr_assert_eq(e2e_ctl_json(&E, &st, "replay", "status", id, "--json", NULL), 0);
    cr_expect_str_eq(jstr(st, "status"), "cancelled", "%s", json_dumps(st, JSON_COMPACT));
    cr_expect_lt(jint(st, "processed"), 10);
    json_decref(st);
    /* --wait on a cancelled job exits 1 */
    cr_expect_eq(e2e_ctl(&E, NULL, NULL, "replay", "status", id, "--wait", "--json", NULL), 1);
}

Test(e2e_replay, replayed_failures_are_retried_and_dead_lettered_with_the_job)
{
    e2e_host_conf(&E, NULL);
    e2e_plugins(&E, "{ pattern: \"test.**\", retry: { max_attempts: 2 } }",
                "{ pattern: \"**\", handler: record, priority: 10 }");
    int64_t base = base_ms();
    char *flaky =
        e2e_event("flaky-r", "test.e2e.happened", "acme", "{\"fault\":\"retry:1\"}", NULL);
    char *hopeless =
        e2e_event("hopeless-r", "test.e2e.happened", "acme", "{\"fault\":\"retry:100\"}", NULL);
    xadd_at(base + 1000, 0, flaky);
    xadd_at(base + 2000, 0, hopeless);
    free(flaky);
    free(hopeless);
    start_live();
    /* live: flaky-r fails once then succeeds; hopeless-r exhausts 2 attempts */
    cr_assert(wait_calls("flaky-r", 2, 10000));
    cr_assert(wait_calls("hopeless-r", 2, 10000));
    cr_assert(fx_wait_drained(&E.fx, 10000));
    cr_assert_eq(fx_xlen(&E.fx, "t:events:dlq"), 1);

    int rc;
    json_t *job = replay_wait(base, base + 3000, "test.**", &rc);
    cr_assert_eq(rc, 0, "replay exited %d: %s", rc, json_dumps(job, JSON_COMPACT));
    const char *job_id = jstr(job, "id");
    cr_expect_eq(jint(job, "failed"), 2, "%s", json_dumps(job, JSON_COMPACT));

    /* the replay's retries go through the schedule like live ones */
    cr_assert(wait_calls("flaky-r", 4, 10000), "flaky-r's replay was not retried");
    cr_assert(wait_calls("hopeless-r", 4, 10000), "hopeless-r's replay was not retried");
    cr_assert(fx_wait_drained(&E.fx, 10000));
    cr_expect_eq(e2e_chaos_calls(&E, "flaky-r", "OK"), 2);
    cr_expect_eq(e2e_chaos_calls(&E, "flaky-r", NULL), 4);
    cr_expect_eq(e2e_chaos_calls(&E, "hopeless-r", "RETRY"), 4);
    /* the handler that succeeded is not called again by the retry */
    cr_expect_eq(e2e_rec_calls(&E, "flaky-r", 1), 1);
    cr_expect_eq(e2e_rec_calls(&E, "hopeless-r", 1), 1);

    json_t *list = NULL;
    cr_assert_eq(e2e_ctl_json(&E, &list, "dlq", "list", "--json", NULL), 0);
    json_t *items = json_object_get(list, "items");
    cr_assert_eq(json_array_size(items), 2, "%s", json_dumps(list, JSON_COMPACT));
    size_t with_job = 0, without = 0, i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        cr_expect_str_eq(jstr(it, "event_id"), "hopeless-r");
        cr_expect_str_eq(jstr(it, "reason"), "retries_exhausted");
        if (jstr(it, "replay_job")) {
            cr_expect_str_eq(jstr(it, "replay_job"), job_id);
            cr_expect_eq(jint(it, "attempts"), 2);
            with_job++;
        } else {
            without++;
        }
    }
    cr_expect_eq(with_job, 1, "the replay's dead letter must name its job");
    cr_expect_eq(without, 1, "the live dead letter has no job");
    json_decref(list);
    json_decref(job);
}

Test(e2e_replay, v1_event_is_upcast_for_a_v2_only_subscription_on_replay)
{
    e2e_host_conf(&E, NULL);
    e2e_plugins(&E, NULL, "{ pattern: \"approval.**\", handler: record, versions: [2] }");
    int64_t base = base_ms();
    char *ev = e2e_event("old-1", "approval.item.approved", "acme", E2E_APPROVED_V1,
                         "\"schemaversion\":1");
    xadd_at(base, 0, ev);
    free(ev);
    start_live();
    cr_assert(wait_rec("old-1", 0, 1, 10000));

    int rc;
    json_t *job = replay_wait(base - 1000, base + 1000, "approval.**", &rc);
    cr_assert_eq(rc, 0, "replay exited %d: %s", rc, json_dumps(job, JSON_COMPACT));
    cr_expect_eq(jint(job, "processed"), 1, "%s", json_dumps(job, JSON_COMPACT));
    json_decref(job);
    cr_assert(wait_rec("old-1", 1, 1, 5000), "old-1 was not replayed");

    char *line = e2e_rec_line(&E, "old-1", 1);
    cr_assert(line);
    cr_expect(strstr(line, "\told-1\tapproval.item.approved\t1\t2\t"),
              "replayed v1 not delivered as v2: %s", line);
    cr_expect(strstr(line, "\"decidedBy\"") && !strstr(line, "\"approverId\""),
              "data was not upcast: %s", line);
    free(line);
    line = e2e_rec_line(&E, "old-1", 0);
    cr_expect(line && strstr(line, "\t0\t2\t"), "live delivery: %s", line);
    free(line);
}

/* retention.archive: postgres through the daemon: entries trimmed from Redis
 * are replayed from PostgreSQL, and health and metrics show the archive. */
Test(e2e_replay, a_window_trimmed_from_redis_is_replayed_from_the_archive)
{
    e2e_host_conf(&E, "retention: { max_age: 2s, interval: 200ms, archive: postgres }\n");
    e2e_plugins(&E, NULL, "{ pattern: \"**\", handler: record }");
    int64_t base = base_ms();
    char ids[8][16];
    for (int i = 0; i < 8; i++) {
        snprintf(ids[i], sizeof ids[i], "arc-%d", i);
        approved_at(base + i * 1000, ids[i]);
    }
    start_live();
    for (int i = 0; i < 8; i++)
        cr_assert(wait_rec(ids[i], 0, 1, 10000), "%s was not handled live", ids[i]);
    /* acknowledged and a minute old: archived, then trimmed */
    for (int i = 0; i < 200 && e2e_redis_int(&E, "XLEN t:events") != 0; i++)
        e2e_sleep_ms(50);
    cr_assert_eq(e2e_redis_int(&E, "XLEN t:events"), 0, "the archived entries were not trimmed");

    int rc;
    json_t *job = replay_wait(base + 2000, base + 5000, "approval.**", &rc);
    cr_assert_eq(rc, 0, "replay exited %d: %s", rc, json_dumps(job, JSON_COMPACT));
    cr_expect_str_eq(jstr(job, "status"), "completed");
    cr_expect(json_is_null(json_object_get(job, "warning")), "%s", json_dumps(job, JSON_COMPACT));
    cr_expect_eq(jint(job, "processed"), 4, "%s", json_dumps(job, JSON_COMPACT));
    json_decref(job);
    e2e_sleep_ms(300);
    for (int i = 0; i < 8; i++)
        cr_expect_eq(e2e_rec_calls(&E, ids[i], 1), i >= 2 && i <= 5 ? 1u : 0u,
                     "%s replayed %zu times", ids[i], e2e_rec_calls(&E, ids[i], 1));

    int code;
    char *body = e2e_http_get(E.admin_port, "/health", &code);
    json_t *h = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    json_t *arc = json_object_get(json_object_get(h, "retention"), "archive");
    cr_expect_str_eq(jstr(arc, "mode"), "postgres", "%s", json_dumps(arc, JSON_COMPACT));
    cr_expect_str_eq(jstr(arc, "state"), "ok", "%s", json_dumps(arc, JSON_COMPACT));
    cr_expect_eq(jint(arc, "archived_total"), 8, "%s", json_dumps(arc, JSON_COMPACT));
    json_decref(h);
    cr_expect_eq(e2e_metric(E.admin_port, "evbus_archive_entries_total"), 8);
    char *out = NULL;
    cr_expect_eq(e2e_ctl(&E, &out, NULL, "status", NULL), 0);
    cr_expect(out && strstr(out, "  archive:    postgres, ok, watermark "), "%s", out);
    free(out);
}
