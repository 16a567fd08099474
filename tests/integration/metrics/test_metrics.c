/*
 * Prometheus metrics after real traffic: a real evbusd with the chaos
 * plugin handles events that succeed, are rejected, are retried and run
 * out of attempts; GET /metrics must pass `promtool check metrics`, carry
 * each new metric with exactly its documented labels, count what the
 * traffic did, and never show a lag Redis did not report.  The example
 * alerting rules must pass `promtool check rules`.
 * Real redis-server, evbusd and promtool (Debian package prometheus).
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"

static fx_t F;

static void setup(void) { fx_start(&F, false); }
static void teardown(void) { fx_stop(&F); }

TestSuite(metrics, .init = setup, .fini = teardown, .timeout = 180);

/* Start evbusd with one chaos instance "work" on bulk.** and the admin
 * endpoint; `admin_extra` goes inside admin: { ... }. */
static void start(const char *admin_extra, char *calls, size_t calls_len)
{
    fx_path(&F, "calls.txt", calls, calls_len);
    F.admin_port = harness_free_port();
    char buf[2048];
    snprintf(buf, sizeof buf, "admin: { listen: \"127.0.0.1:%d\"%s%s }\n", F.admin_port,
             admin_extra ? ", " : "", admin_extra ? admin_extra : "");
    fx_host_conf(&F, "c1", buf);
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: work\n"
             "    plugin: %s\n"
             "    config: { count_file: %s }\n"
             "    subscriptions: [ { pattern: \"bulk.**\" } ]\n",
             fx_plugin("plugins/chaos/chaos.so"), calls);
    fx_conf(&F, "10-work.yaml", buf);
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
}

static char *scrape(void)
{
    int st = 0;
    char *m = harness_http_get(F.admin_port, "/metrics", &st);
    cr_assert_eq(st, 200, "GET /metrics answered %d", st);
    cr_assert_not_null(m);
    return m;
}

/* The value of the sample line that starts with `series ` (exact series
 * text, labels in the order evbusd prints them); -1 when absent. */
static double sample(const char *m, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = m; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

/* Every sample line of `name` (exactly, or name_bucket/_sum/_count when
 * suffix is given) must have exactly the label names in `want` (comma
 * separated, sorted); returns how many lines were checked. */
static int check_labels(const char *m, const char *name, const char *want)
{
    int lines = 0;
    size_t n = strlen(name);
    for (const char *p = m; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (*p == '#' || strncmp(p, name, n) != 0 || (p[n] != '{' && p[n] != ' '))
            continue;
        char got[256] = "";
        const char *end = strchr(p, '\n');
        if (p[n] == '{') {
            /* collect label names: text before each '=' outside quotes */
            const char *q = p + n + 1;
            char names[8][64];
            int k = 0;
            while (q < end && *q != '}' && k < 8) {
                const char *eq = strchr(q, '=');
                snprintf(names[k++], sizeof names[0], "%.*s", (int)(eq - q), q);
                q = eq + 2; /* past =" */
                while (*q && !(*q == '"' && q[-1] != '\\'))
                    q++;
                q++;
                if (*q == ',')
                    q++;
            }
            /* sort (tiny) */
            for (int a = 0; a < k; a++)
                for (int b = a + 1; b < k; b++)
                    if (strcmp(names[a], names[b]) > 0) {
                        char t[64];
                        strcpy(t, names[a]);
                        strcpy(names[a], names[b]);
                        strcpy(names[b], t);
                    }
            for (int a = 0; a < k; a++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", a ? "," : "",
                         names[a]);
        }
        cr_expect_str_eq(got, want, "%.*s", (int)(end ? end - p : (long)strlen(p)), p);
        lines++;
    }
    return lines;
}

static int promtool(const char *what, const char *arg, const char *input, char **out,
                    char **err)
{
    char *argv[] = {"/usr/bin/promtool", "check", (char *)what, (char *)arg, NULL};
    return harness_run(argv, NULL, input, out, err, 30000);
}

/*
 * Metric names evbusd had before this check existed, kept because
 * dashboards use them (issue 14: keep the existing counters); promtool's
 * lint prefers seconds.  Every other lint problem, and any parse error
 * (exit 1), fails the test.
 */
static const char *const legacy_unit_names[] = {
    "evbus_archive_lag_milliseconds use base unit \"seconds\" instead of \"milliseconds\"",
    "evbus_inhost_oldest_pending_age_milliseconds use base unit \"seconds\" instead of "
    "\"milliseconds\"",
};

/* `promtool check metrics` on m: true when it passes, lint problems of the
 * legacy names aside. */
static bool promtool_metrics_ok(const char *m)
{
    char *out = NULL, *err = NULL;
    int rc = promtool("metrics", NULL, m, &out, &err);
    bool ok = rc == 0;
    if (rc == 3) { /* lint problems only: each line must be a known one */
        ok = true;
        for (char *line = strtok(err ? err : "", "\n"); line; line = strtok(NULL, "\n")) {
            bool known = false;
            for (size_t i = 0; i < sizeof legacy_unit_names / sizeof *legacy_unit_names; i++)
                known |= strcmp(line, legacy_unit_names[i]) == 0;
            if (!known) {
                cr_log_error("promtool check metrics: %s", line);
                ok = false;
            }
        }
    } else if (rc != 0) {
        cr_log_error("promtool check metrics exited %d: %s%s", rc, out ? out : "",
                     err ? err : "");
    }
    free(out);
    free(err);
    return ok;
}

static long long zcard(const char *key)
{
    redisContext *c = harness_redis_connect(&F.redis);
    long long n = harness_redis_int(c, "ZCARD %s", key);
    redisFree(c);
    return n;
}

/* Wait until a scrape shows `series` with value v. */
static bool wait_sample(const char *series, double v, int timeout_ms)
{
    long long end = harness_now_ms() + timeout_ms;
    do {
        char *m = scrape();
        double got = sample(m, series);
        free(m);
        if (got == v)
            return true;
        usleep(100000);
    } while (harness_now_ms() < end);
    return false;
}

/* 10 OK, 3 rejected, 2 retried once then OK, 1 retried until no attempt
 * is left (retry.max_attempts 4 in the fixture): 21 calls. */
static void traffic(const char *calls)
{
    fx_publish(&F, "ok", 10, "bulk.ok", "acme", "{\"i\":%d}");
    fx_publish(&F, "rej", 3, "bulk.rej", "acme", "{\"fault\":\"reject\",\"i\":%d}");
    fx_publish(&F, "r1", 2, "bulk.retry", "globex", "{\"fault\":\"retry:1\",\"i\":%d}");
    fx_publish(&F, "r9", 1, "bulk.retry", "globex", "{\"fault\":\"retry:9\",\"i\":%d}");
    cr_assert(fx_wait_lines(calls, 21, 30000), "21 handler calls");
    cr_assert(fx_wait_drained(&F, 20000));
    for (int i = 0; i < 100 && zcard("t:events:retry") != 0; i++)
        usleep(50000);
    cr_assert(fx_wait_drained(&F, 20000));
}

Test(metrics, live_output_passes_promtool_and_counts_the_traffic)
{
    char calls[600];
    start(NULL, calls, sizeof calls);
    traffic(calls);
    /* the group gauges are sampled every 2 s: wait for the DLQ's 4 */
    cr_assert(wait_sample("evbus_dlq_entries", 4, 10000));
    cr_assert(wait_sample("evbus_pending_messages", 0, 10000));
    char *m = scrape();
    cr_expect(promtool_metrics_ok(m), "the exposition was:\n%s", m);

    /* counters match the traffic */
    cr_expect_eq(sample(m, "evbus_events_processed_total{handler=\"work\",outcome=\"ok\"}"), 12);
    cr_expect_eq(sample(m, "evbus_events_processed_total{handler=\"work\",outcome=\"retry\"}"), 5);
    cr_expect_eq(sample(m, "evbus_events_processed_total{handler=\"work\",outcome=\"reject\"}"),
                 3);
    cr_expect_eq(sample(m, "evbus_events_processed_total{handler=\"work\",outcome=\"timeout\"}"),
                 0);
    cr_expect_eq(sample(m, "evbus_events_processed_total{handler=\"work\",outcome=\"dead\"}"), 1);
    cr_expect_eq(sample(m, "evbus_handler_duration_seconds_count{handler=\"work\"}"), 21);
    cr_expect_eq(sample(m, "evbus_handler_duration_seconds_bucket{handler=\"work\",le=\"+Inf\"}"),
                 21);
    /* every delivery is acknowledged once: 16 published + 5 retries */
    cr_expect_eq(sample(m, "evbus_end_to_end_latency_seconds_count"), 21);
    cr_expect_eq(sample(m, "evbus_end_to_end_latency_seconds_bucket{le=\"+Inf\"}"), 21);
    cr_expect_eq(sample(m, "evbus_events_acked_total"), 21);
    cr_expect_eq(sample(m, "evbus_dlq_entries"), 4);
    cr_expect_eq(sample(m, "evbus_dlq_length"), 4, "the old name stays");
    cr_expect_eq(sample(m, "evbus_retry_scheduled"), 0);
    cr_expect_eq(sample(m, "evbus_oldest_pending_age_seconds"), 0);
    cr_expect_eq(sample(m, "evbus_consumer_lag_messages"), 0);
    cr_expect_eq(sample(m, "evbus_consumer_lag_unknown"), 0);
    cr_expect_eq(sample(m, "evbus_build_info{version=\"0.1.0\"}"), 1);
    double last = sample(m, "evbus_last_processed_timestamp_seconds");
    double now = (double)time(NULL);
    cr_expect(last > now - 60 && last <= now + 1, "last processed %f, now %f", last, now);
    /* default capacity 10000 */
    cr_expect_eq(sample(m, "evbus_dlq_capacity_ratio"), 4.0 / 10000.0);

    /* exact label sets: handler and outcome, no tenant without a list */
    cr_expect_eq(check_labels(m, "evbus_events_processed_total", "handler,outcome"), 5);
    cr_expect_gt(check_labels(m, "evbus_handler_duration_seconds_bucket", "handler,le"), 5);
    cr_expect_eq(check_labels(m, "evbus_handler_duration_seconds_sum", "handler"), 1);
    cr_expect_eq(check_labels(m, "evbus_handler_duration_seconds_count", "handler"), 1);
    cr_expect_gt(check_labels(m, "evbus_end_to_end_latency_seconds_bucket", "le"), 5);
    cr_expect_eq(check_labels(m, "evbus_end_to_end_latency_seconds_sum", ""), 1);
    cr_expect_eq(check_labels(m, "evbus_end_to_end_latency_seconds_count", ""), 1);
    static const char *const plain[] = {
        "evbus_consumer_lag_messages", "evbus_consumer_lag_unknown",
        "evbus_pending_messages", "evbus_oldest_pending_age_seconds", "evbus_retry_scheduled",
        "evbus_dlq_entries", "evbus_dlq_capacity_ratio", "evbus_last_processed_timestamp_seconds"};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        cr_expect_eq(check_labels(m, plain[i], ""), 1, "%s", plain[i]);
    cr_expect_eq(check_labels(m, "evbus_build_info", "version"), 1);
    free(m);
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
}

Test(metrics, a_null_lag_from_redis_is_unknown_never_zero)
{
    char calls[600];
    start(NULL, calls, sizeof calls);
    fx_publish(&F, "ok", 3, "bulk.ok", "acme", "{\"i\":%d}");
    cr_assert(fx_wait_lines(calls, 3, 20000));
    cr_assert(wait_sample("evbus_consumer_lag_unknown", 0, 10000), "lag known while caught up");
    /* a group moved past the stream's end without ENTRIESREAD: Redis 7.0
     * cannot compute its lag and reports null */
    redisContext *c = harness_redis_connect(&F.redis);
    redisReply *r = redisCommand(c, "XGROUP SETID t:events g 9999999999999-0");
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "%s", r && r->str ? r->str : "no reply");
    freeReplyObject(r);
    r = redisCommand(c, "XINFO GROUPS t:events");
    bool null_lag = false;
    for (size_t k = 0; r && r->elements && k + 1 < r->element[0]->elements; k += 2)
        if (!strcmp(r->element[0]->element[k]->str, "lag"))
            null_lag = r->element[0]->element[k + 1]->type == REDIS_REPLY_NIL;
    freeReplyObject(r);
    redisFree(c);
    cr_assert(null_lag, "this Redis reports a lag for the moved group: the test proves nothing");
    cr_assert(wait_sample("evbus_consumer_lag_unknown", 1, 10000));
    char *m = scrape();
    cr_expect_eq(sample(m, "evbus_consumer_lag_messages"), -1, "no lag sample at all:\n%s", m);
    cr_expect(strstr(m, "# TYPE evbus_consumer_lag_messages gauge\n"), "the family stays declared");
    cr_expect(promtool_metrics_ok(m), "the exposition was:\n%s", m);
    free(m);
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
}

Test(metrics, tenant_label_lists_named_tenants_and_aggregates_the_rest_as_other)
{
    char calls[600];
    start("metrics: { tenant_label: [acme, initech] }", calls, sizeof calls);
    traffic(calls);
    char *m = scrape();
    cr_expect(promtool_metrics_ok(m), "the exposition was:\n%s", m);
    /* acme: 10 OK and 3 rejects; globex (not listed): the retries */
#define P(o, t) "evbus_events_processed_total{handler=\"work\",outcome=\"" o "\",tenant=\"" t "\"}"
    cr_expect_eq(sample(m, P("ok", "acme")), 10);
    cr_expect_eq(sample(m, P("reject", "acme")), 3);
    cr_expect_eq(sample(m, P("retry", "acme")), 0);
    cr_expect_eq(sample(m, P("ok", "other")), 2);
    cr_expect_eq(sample(m, P("retry", "other")), 5);
    cr_expect_eq(sample(m, P("dead", "other")), 1);
    cr_expect_eq(sample(m, P("ok", "initech")), 0, "a listed tenant without traffic shows 0");
    cr_expect_eq(sample(m, P("ok", "globex")), -1, "an unlisted tenant has no label of its own");
#undef P
    /* 5 outcomes x (acme, initech, other) */
    cr_expect_eq(check_labels(m, "evbus_events_processed_total", "handler,outcome,tenant"), 15);
    free(m);
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
}

Test(metrics, the_example_alerting_rules_pass_promtool)
{
    char *rules = harness_source_path("docs/evbus-alerts.yml");
    char *out = NULL, *err = NULL;
    cr_expect_eq(promtool("rules", rules, NULL, &out, &err), 0, "%s%s", out ? out : "",
                 err ? err : "");
    cr_expect(out && strstr(out, "SUCCESS"), "%s", out ? out : "");
    free(out);
    free(err);
    free(rules);
}
