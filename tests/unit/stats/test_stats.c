/*
 * stats: throughput over a window from the ring of cumulative samples, and
 * per-event counts that a tenant-scoped reader sees only for its tenant,
 * within the documented bounds (host/core/stats.h).
 */
#include <criterion/criterion.h>
#include <stdio.h>

#include "core/stats.h"

static double rate(const stats_ring_t *r, int64_t now, uint64_t v, int64_t window,
                   int64_t *covered)
{
    return stats_ring_rate(r, 0, now, v, window, covered);
}

Test(stats_ring, no_rate_without_an_older_sample)
{
    stats_ring_t r;
    cr_assert_eq(stats_ring_init(&r, 4, 1), 0);
    cr_expect_eq(rate(&r, 1000, 5, 1000, NULL), -1);
    uint64_t v = 5;
    stats_ring_push(&r, 1000, &v);
    cr_expect_eq(rate(&r, 1000, 5, 1000, NULL), -1, "a sample is not older than itself");
    stats_ring_free(&r);
}

Test(stats_ring, rate_uses_the_newest_sample_a_whole_window_back)
{
    stats_ring_t r;
    cr_assert_eq(stats_ring_init(&r, 8, 1), 0);
    for (int i = 0; i <= 5; i++) {
        uint64_t v = (uint64_t)(i * i * 100); /* accelerating */
        stats_ring_push(&r, 1000 * i, &v);
    }
    int64_t covered;
    /* now = t 5000, value 2500; one second back: t 4000, value 1600 */
    cr_expect_float_eq(rate(&r, 5000, 2500, 1000, &covered), 900.0, 1e-9);
    cr_expect_eq(covered, 1000);
    /* three seconds back: t 2000, value 400 */
    cr_expect_float_eq(rate(&r, 5000, 2500, 3000, &covered), 700.0, 1e-9);
    cr_expect_eq(covered, 3000);
    stats_ring_free(&r);
}

Test(stats_ring, short_history_uses_the_oldest_sample_and_says_how_much_it_covers)
{
    stats_ring_t r;
    cr_assert_eq(stats_ring_init(&r, 8, 1), 0);
    uint64_t v = 100;
    stats_ring_push(&r, 10000, &v);
    v = 400;
    stats_ring_push(&r, 13000, &v);
    int64_t covered;
    cr_expect_float_eq(rate(&r, 13000, 400, 60000, &covered), 100.0, 1e-9);
    cr_expect_eq(covered, 3000);
    stats_ring_free(&r);
}

Test(stats_ring, the_oldest_samples_are_overwritten)
{
    stats_ring_t r;
    cr_assert_eq(stats_ring_init(&r, 3, 2), 0);
    for (int i = 0; i < 10; i++) {
        uint64_t v[2] = {(uint64_t)i * 10, (uint64_t)i};
        stats_ring_push(&r, 1000 * i, v);
    }
    int64_t t, covered;
    const uint64_t *last;
    cr_assert(stats_ring_last(&r, &t, &last));
    cr_expect_eq(t, 9000);
    cr_expect_eq(last[1], 9);
    /* samples 7, 8, 9 remain: a 60 s window covers 2 s only */
    cr_expect_float_eq(stats_ring_rate(&r, 1, 9000, 9, 60000, &covered), 1.0, 1e-9);
    cr_expect_eq(covered, 2000);
    stats_ring_free(&r);
}

static long long count(json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(o, a);
    return b ? json_integer_value(json_object_get(v, b)) : json_integer_value(v);
}

Test(stats, a_tenant_sees_only_its_own_events)
{
    stats_t *s = stats_new();
    cr_assert_not_null(s);
    for (int i = 0; i < 3; i++)
        stats_cell_status(stats_cell(s, "acme", "order.created"), EV_STATUS_COMPLETED);
    stats_cell_t *c = stats_cell(s, "globex", "order.created");
    stats_cell_outcome(c, METRICS_OUTCOME_REJECT);
    stats_cell_status(c, EV_STATUS_DEAD_LETTERED);
    stats_cell_status(stats_cell(s, "globex", "secret.type"), EV_STATUS_COMPLETED);

    json_t *a = stats_json(s, "acme");
    cr_expect(json_is_true(json_object_get(a, "tracked")));
    cr_expect_eq(count(a, "events", "completed"), 3);
    cr_expect_eq(count(a, "events", "dead_lettered"), 0);
    cr_expect_eq(json_object_size(json_object_get(a, "by_type")), 1);
    cr_expect_null(json_object_get(json_object_get(a, "by_type"), "secret.type"),
                   "another tenant's type is not even named");
    cr_expect_null(json_object_get(a, "by_tenant"));
    json_decref(a);

    json_t *all = stats_json(s, NULL);
    cr_expect_eq(count(all, "events", "completed"), 4);
    cr_expect_eq(count(all, "events", "dead_lettered"), 1);
    json_t *ot = json_object_get(json_object_get(all, "by_type"), "order.created");
    cr_expect_eq(count(ot, "completed", NULL), 3, "one type of two tenants adds up");
    cr_expect_eq(count(json_object_get(ot, "handler_outcomes"), "reject", NULL), 1);
    cr_expect_eq(count(json_object_get(json_object_get(all, "by_tenant"), "globex"), "completed",
                       NULL), 1);
    json_decref(all);

    json_t *n = stats_json(s, "initech");
    cr_expect(json_is_true(json_object_get(n, "tracked")), "room left: a quiet tenant has 0s");
    cr_expect_eq(count(n, "events", "completed"), 0);
    json_decref(n);
    stats_free(s);
}

Test(stats, tenants_beyond_the_bound_are_untracked_and_never_see_shared_counts)
{
    stats_t *s = stats_new();
    char name[32];
    for (int i = 0; i < STATS_MAX_TENANTS + 5; i++) {
        snprintf(name, sizeof name, "t%d", i);
        stats_cell_status(stats_cell(s, name, "x"), EV_STATUS_COMPLETED);
    }
    snprintf(name, sizeof name, "t%d", STATS_MAX_TENANTS + 2);
    json_t *late = stats_json(s, name);
    cr_expect(json_is_false(json_object_get(late, "tracked")));
    cr_expect(json_is_null(json_object_get(late, "events")));
    cr_expect_eq(json_object_size(json_object_get(late, "by_type")), 0);
    json_decref(late);
    json_t *all = stats_json(s, NULL);
    cr_expect_eq(count(all, "events", "completed"), STATS_MAX_TENANTS + 5, "totals stay exact");
    cr_expect_eq(count(all, "untracked", "completed"), 5);
    cr_expect_eq(json_object_size(json_object_get(all, "by_tenant")), STATS_MAX_TENANTS);
    json_decref(all);
    stats_free(s);
}

Test(stats, types_beyond_the_bound_go_to_the_tenants_own_other_types)
{
    stats_t *s = stats_new();
    char type[32];
    for (int i = 0; i < STATS_MAX_PAIRS + 7; i++) {
        snprintf(type, sizeof type, "type.n%d", i);
        stats_cell_status(stats_cell(s, "acme", type), EV_STATUS_COMPLETED);
    }
    stats_cell_status(stats_cell(s, "globex", "type.n0"), EV_STATUS_COMPLETED);
    json_t *a = stats_json(s, "acme");
    cr_expect_eq(count(a, "events", "completed"), STATS_MAX_PAIRS + 7, "the tenant's total is exact");
    cr_expect(json_is_true(json_object_get(a, "types_truncated")));
    cr_expect_eq(count(a, "other_types", "completed"), 7);
    cr_expect_eq(json_object_size(json_object_get(a, "by_type")), STATS_MAX_PAIRS);
    json_decref(a);
    json_t *g = stats_json(s, "globex");
    cr_expect_eq(count(g, "events", "completed"), 1, "the other tenant's overflow is not ours");
    /* the pair bound is shared: a tenant arriving after it has its types
     * in its own other_types, still apart from acme's */
    cr_expect(json_is_true(json_object_get(g, "types_truncated")));
    cr_expect_eq(count(g, "other_types", "completed"), 1);
    json_decref(g);
    stats_free(s);
}

Test(stats, throughput_per_tenant_comes_from_the_samples)
{
    stats_t *s = stats_new();
    stats_sample(s, 1000);
    for (int i = 0; i < 50; i++)
        stats_cell_status(stats_cell(s, "acme", "x"), EV_STATUS_COMPLETED);
    for (int i = 0; i < 20; i++)
        stats_cell_status(stats_cell(s, "globex", "x"), EV_STATUS_COMPLETED);
    stats_sample(s, 1500); /* too early: no sample */
    stats_sample(s, 2000);
    json_t *a = stats_json(s, "acme");
    json_t *t = json_object_get(a, "throughput");
    cr_expect_float_eq(json_real_value(json_object_get(t, "per_s_1s")), 50.0, 1e-9);
    json_decref(a);
    json_t *all = stats_json(s, NULL);
    t = json_object_get(all, "throughput");
    cr_expect_float_eq(json_real_value(json_object_get(t, "per_s_1s")), 70.0, 1e-9);
    cr_expect_float_eq(json_real_value(json_object_get(t, "covered_s_1m")), 1.0, 1e-9);
    json_decref(all);
    stats_free(s);
}

/* ---- history -------------------------------------------------------------- */

static const stats_gauges_t NO_GAUGES = {METRICS_UNSET, METRICS_UNSET, METRICS_UNSET,
                                         METRICS_UNSET, METRICS_UNSET};

static json_t *point(json_t *h, size_t i) { return json_array_get(json_object_get(h, "points"), i); }

static long long num(json_t *o, const char *k) { return json_integer_value(json_object_get(o, k)); }

Test(stats_history, points_are_per_period_counts_of_the_callers_tenant_and_the_streams_gauges)
{
    stats_t *s = stats_new();
    stats_history_t *h = stats_history_new(1000000, 0);
    cr_assert(s && h);
    json_t *j = stats_history_json(h, s, NULL, 60000);
    cr_expect_eq(json_array_size(json_object_get(j, "points")), 0, "no point before a sample");
    json_decref(j);

    /* period 1, from the history's origin (what happens before the first
     * sample counts): acme 3 ok, globex 1 rejected and dead-lettered */
    for (int i = 0; i < 3; i++) {
        stats_cell_t *c = stats_cell(s, "acme", "order.created");
        stats_cell_outcome(c, METRICS_OUTCOME_OK);
        stats_cell_status(c, EV_STATUS_COMPLETED);
    }
    stats_cell_t *g = stats_cell(s, "globex", "secret.type");
    stats_cell_outcome(g, METRICS_OUTCOME_REJECT);
    stats_cell_status(g, EV_STATUS_DEAD_LETTERED);
    stats_gauges_t gs = {.lag = 7, .pending = 2, .oldest_pending_age_ms = 1500,
                         .dlq_entries = 1, .dlq_ratio_ppm = 100};
    cr_assert_eq(stats_history_sample(h, s, 1060000, 60000, &gs), 0);
    /* period 2: acme one retry, then ok */
    stats_cell_t *c = stats_cell(s, "acme", "order.created");
    stats_cell_outcome(c, METRICS_OUTCOME_RETRY);
    stats_cell_status(c, EV_STATUS_RETRYING);
    stats_cell_outcome(c, METRICS_OUTCOME_OK);
    stats_cell_status(c, EV_STATUS_COMPLETED);
    cr_assert_eq(stats_history_sample(h, s, 1120000, 120000, &NO_GAUGES), 0);

    j = stats_history_json(h, s, "acme", 60000);
    cr_expect_str_eq(json_string_value(json_object_get(j, "tenant")), "acme");
    cr_expect_float_eq(json_real_value(json_object_get(j, "period_s")), 60.0, 1e-9);
    cr_assert_eq(json_array_size(json_object_get(j, "points")), 2);
    json_t *p0 = point(j, 0), *p1 = point(j, 1);
    cr_expect_str_eq(json_string_value(json_object_get(p0, "at")), "1970-01-01T00:17:40.000Z");
    cr_expect_float_eq(json_real_value(json_object_get(p0, "span_s")), 60.0, 1e-9);
    cr_expect_eq(num(p0, "events"), 3, "globex's event is not acme's");
    cr_expect_eq(num(p0, "failures"), 0);
    cr_expect_eq(num(p0, "dead_lettered"), 0);
    cr_expect_float_eq(json_real_value(json_object_get(p0, "per_s")), 3.0 / 60, 1e-9);
    cr_expect_eq(num(p0, "lag"), 7, "the stream's gauges go to every caller");
    cr_expect_float_eq(json_real_value(json_object_get(p0, "oldest_pending_age_s")), 1.5, 1e-9);
    cr_expect_float_eq(json_real_value(json_object_get(p0, "dlq_ratio")), 0.0001, 1e-12);
    cr_expect_eq(num(p1, "events"), 2);
    cr_expect_eq(num(p1, "handler_outcomes"), 2);
    cr_expect_eq(num(p1, "failures"), 1);
    cr_expect_float_eq(json_real_value(json_object_get(p1, "failure_ratio")), 0.5, 1e-9);
    cr_expect(json_is_null(json_object_get(p1, "lag")), "not read: null, not 0");
    json_decref(j);

    j = stats_history_json(h, s, NULL, 60000);
    cr_expect_eq(num(point(j, 0), "events"), 4);
    cr_expect_eq(num(point(j, 0), "dead_lettered"), 1);
    cr_expect_float_eq(json_real_value(json_object_get(point(j, 0), "failure_ratio")), 0.25, 1e-9,
                       "every tenant: 1 failure of 4 outcomes");
    json_decref(j);

    j = stats_history_json(h, s, "initech", 60000);
    cr_expect(json_is_true(json_object_get(j, "tracked")));
    cr_expect_eq(num(point(j, 1), "events"), 0, "a quiet tenant has zeros");
    cr_expect(json_is_null(json_object_get(point(j, 1), "failure_ratio")));
    json_decref(j);
    stats_history_free(h);
    stats_free(s);
}

Test(stats_history, keeps_the_newest_fifteen_points)
{
    stats_t *s = stats_new();
    stats_history_t *h = stats_history_new(0, 0);
    for (int i = 1; i <= 40; i++) {
        for (int k = 0; k < i; k++)
            stats_cell_status(stats_cell(s, "acme", "t"), EV_STATUS_COMPLETED);
        cr_assert_eq(stats_history_sample(h, s, 1000 * (int64_t)i, 1000 * (int64_t)i, &NO_GAUGES),
                     0);
    }
    json_t *j = stats_history_json(h, s, "acme", 1000);
    json_t *pts = json_object_get(j, "points");
    cr_assert_eq(json_array_size(pts), STATS_HISTORY_POINTS);
    /* the point ending at sample i counts i events: the last 15 are 26..40 */
    for (size_t i = 0; i < STATS_HISTORY_POINTS; i++)
        cr_expect_eq(num(json_array_get(pts, i), "events"), 26 + (long long)i);
    json_decref(j);
    stats_history_free(h);
    stats_free(s);
}

Test(stats_history, an_untracked_tenant_gets_no_counts)
{
    stats_t *s = stats_new();
    stats_history_t *h = stats_history_new(0, 0);
    char name[32];
    for (int i = 0; i < STATS_MAX_TENANTS; i++) {
        snprintf(name, sizeof name, "t%d", i);
        stats_cell_status(stats_cell(s, name, "x"), EV_STATUS_COMPLETED);
    }
    stats_history_sample(h, s, 0, 0, &NO_GAUGES);
    stats_cell_status(stats_cell(s, "late", "x"), EV_STATUS_COMPLETED);
    stats_history_sample(h, s, 1000, 1000, &NO_GAUGES);
    json_t *j = stats_history_json(h, s, "late", 1000);
    cr_expect(json_is_false(json_object_get(j, "tracked")));
    cr_expect(json_is_null(json_object_get(point(j, 0), "events")), "never the shared cell's");
    json_decref(j);
    stats_history_free(h);
    stats_free(s);
}
