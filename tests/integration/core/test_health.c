/*
 * Health that tells the truth within seconds: Redis down → 503 within
 * 5 s and back to 200 within 2 s of its return with a "reconnected" line;
 * PostgreSQL down → the postgres section says so within 5 s; a handler
 * stuck past its timeout → in-host lag and the stuck worker visible.
 * Real redis-server, PostgreSQL and evbusd.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "harness_pg.h"
#include "util/clock.h"

static fx_t F;

static void setup(void) { fx_start(&F, false); }
static void teardown(void) { fx_stop(&F); }

TestSuite(health, .init = setup, .fini = teardown, .timeout = 180);

static json_t *health(int *status)
{
    char *body = harness_http_get(F.admin_port, "/health", status);
    json_t *h = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    return h;
}

static const char *field(json_t *h, const char *a, const char *b)
{
    json_t *v = json_object_get(h, a);
    return json_string_value(b ? json_object_get(v, b) : v);
}

/* Poll /health until pred holds; the ms it took, or -1 after limit_ms. */
static long long wait_health(bool (*pred)(json_t *, int), int limit_ms)
{
    int64_t start = clock_mono_ms();
    while (clock_mono_ms() - start < limit_ms) {
        int st;
        json_t *h = health(&st);
        bool ok = h && pred(h, st);
        json_decref(h);
        if (ok)
            return clock_mono_ms() - start;
        usleep(50000);
    }
    return -1;
}

static bool is_unhealthy(json_t *h, int st)
{
    return st == 503 && !strcmp(field(h, "status", NULL), "unhealthy");
}

static bool is_ok(json_t *h, int st)
{
    return st == 200 && !strcmp(field(h, "status", NULL), "ok") &&
           json_is_null(json_object_get(json_object_get(h, "redis"), "last_error"));
}

static void start(const char *extra_conf)
{
    F.admin_port = harness_free_port();
    char buf[2048];
    snprintf(buf, sizeof buf, "admin: { listen: \"127.0.0.1:%d\" }\n%s", F.admin_port,
             extra_conf ? extra_conf : "");
    fx_host_conf(&F, "c1", buf);
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    cr_assert_geq(wait_health(is_ok, 10000), 0, "never healthy");
}

Test(health, redis_down_is_unhealthy_within_5s_and_ok_within_2s_of_its_return)
{
    start(NULL);
    harness_redis_stop(&F.redis);
    long long took = wait_health(is_unhealthy, 5000);
    cr_assert_geq(took, 0, "/health did not turn unhealthy within 5 s of Redis going away");
    sleep(3); /* a longer outage: backoff must not delay recovery */
    cr_assert_eq(harness_redis_start_again(&F.redis), 0);
    took = wait_health(is_ok, 2000);
    cr_assert_geq(took, 0, "/health not ok within 2 s of Redis' return");
    cr_expect(fx_log_has(&F, "reconnected to Redis after"));
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
}

static bool pg_down(json_t *h, int st)
{
    json_t *pg = json_object_get(h, "postgres");
    return st == 200 && json_is_false(json_object_get(pg, "connected")) &&
           json_string_value(json_object_get(pg, "last_error")) &&
           !strcmp(field(h, "status", NULL), "degraded");
}

static bool pg_up(json_t *h, int st)
{
    json_t *pg = json_object_get(h, "postgres");
    return st == 200 && json_is_true(json_object_get(pg, "connected")) &&
           json_is_null(json_object_get(pg, "last_error"));
}

Test(health, postgres_down_shows_in_its_own_section_within_5s)
{
    harness_pg_t pg;
    cr_assert_eq(harness_pg_start(&pg), 0);
    char extra[512];
    snprintf(extra, sizeof extra, "postgres: { url: \"%s\", migrate_on_start: true }\n", pg.url);
    start(extra);
    cr_assert_geq(wait_health(pg_up, 5000), 0);
    cr_assert_eq(harness_pg_stop_keep(&pg), 0);
    cr_expect_geq(wait_health(pg_down, 5000), 0, "postgres section did not say it is down");
    cr_assert_eq(harness_pg_start_again(&pg), 0);
    cr_expect_geq(wait_health(pg_up, 8000), 0, "postgres section did not recover");
    cr_expect(fx_log_has(&F, "reconnected to PostgreSQL"));
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
    harness_pg_stop(&pg);
}

static bool stuck(json_t *h, int st)
{
    json_t *in = json_object_get(h, "inhost");
    json_t *s0 = json_array_get(json_object_get(in, "stuck"), 0);
    return st == 200 && json_integer_value(json_object_get(in, "pending")) >= 1 &&
           json_integer_value(json_object_get(in, "workers_over_timeout")) >= 1 && s0 &&
           !strcmp(json_string_value(json_object_get(s0, "handler")), "slow/main") &&
           !strcmp(field(h, "status", NULL), "degraded");
}

Test(health, a_handler_past_its_timeout_shows_as_in_host_lag)
{
    char calls[600], buf[1024];
    fx_path(&F, "calls.txt", calls, sizeof calls);
    start(NULL);
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: slow\n"
             "    plugin: %s\n"
             "    config: { count_file: %s }\n"
             "    subscriptions: [ { pattern: \"bulk.**\", timeout_ms: 300 } ]\n",
             fx_plugin("plugins/chaos/chaos.so"), calls);
    fx_conf(&F, "10-slow.yaml", buf);
    kill(F.d.pid, SIGHUP);
    cr_assert(fx_wait_log(&F, "generation 2 live", 10000));
    fx_publish(&F, "slow", 1, "bulk.x", "t", "{\"fault\":\"sleep:4000\",\"i\":%d}");
    cr_expect_geq(wait_health(stuck, 3000), 0, "the stuck worker is not in /health");
    /* the gauges follow within a maintenance round (50 ms) */
    bool seen = false;
    for (int i = 0; i < 40 && !seen; i++) {
        int st;
        char *m = harness_http_get(F.admin_port, "/metrics", &st);
        seen = m && strstr(m, "evbus_workers_over_timeout 1\n");
        free(m);
        if (!seen)
            usleep(50000);
    }
    cr_expect(seen, "evbus_workers_over_timeout never showed the stuck worker");
    cr_assert(fx_wait_lines(calls, 1, 10000));
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
}

static json_t *config_of(void)
{
    int st;
    json_t *h = health(&st);
    cr_assert(h);
    json_t *c = json_incref(json_object_get(h, "config"));
    json_decref(h);
    return c;
}

Test(health, health_says_which_configuration_is_live)
{
    char out[600], buf[1024];
    fx_path(&F, "out.tsv", out, sizeof out);
    snprintf(buf, sizeof buf,
             "plugins:\n  - name: rec\n    plugin: %s\n    config: { out: %s, tag: A }\n",
             fx_plugin("plugins/testkit/testkit.so"), out);
    fx_conf(&F, "10-rec.yaml", buf);
    start(NULL);
    json_t *c1 = config_of();
    const char *d1 = json_string_value(json_object_get(c1, "digest"));
    cr_assert(d1 && strlen(d1) == 71 && !strncmp(d1, "sha256:", 7), "%s", d1 ? d1 : "");
    cr_expect(json_is_null(json_object_get(c1, "previous_digest")));
    json_t *in = json_array_get(json_object_get(c1, "instances"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(in, "name")), "rec");
    cr_expect_str_eq(json_string_value(json_object_get(in, "plugin")), "testkit");
    cr_expect(!strncmp(json_string_value(json_object_get(in, "so_digest")), "sha256:", 7));
    cr_expect_str_eq(json_string_value(json_object_get(in, "isolation")), "in-process");
    cr_expect_gt(json_integer_value(json_object_get(c1, "built_ms")), 0);
    /* a changed manifest: another digest, the old one kept as previous */
    snprintf(buf, sizeof buf,
             "plugins:\n  - name: rec\n    plugin: %s\n    config: { out: %s, tag: B }\n",
             fx_plugin("plugins/testkit/testkit.so"), out);
    fx_conf(&F, "10-rec.yaml", buf);
    kill(F.d.pid, SIGHUP);
    cr_assert(fx_wait_log(&F, "generation 2 live", 10000));
    json_t *c2 = config_of();
    cr_expect_str_neq(json_string_value(json_object_get(c2, "digest")), d1);
    cr_expect_str_eq(json_string_value(json_object_get(c2, "previous_digest")), d1);
    /* the digest is the content's, not the generation number's: the same
     * files after a restart give the same digest */
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    cr_assert_geq(wait_health(is_ok, 10000), 0);
    json_t *c3 = config_of();
    cr_expect_str_eq(json_string_value(json_object_get(c3, "digest")),
                     json_string_value(json_object_get(c2, "digest")));
    json_decref(c1);
    json_decref(c2);
    json_decref(c3);
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
}
