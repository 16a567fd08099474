/*
 * Pausing a handler instance, as an operator does it: `evbusctl handlers
 * pause` against a running evbusd with two instances on the same type.
 * The paused one is not called and its deliveries wait in the retry
 * schedule with their attempt unspent, across a reload and a restart;
 * the other keeps running; `resume` delivers every deferred event to it
 * exactly once and nothing reaches the DLQ.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e.h"

static e2e_t E;

static void setup(void) { e2e_start(&E, false, false); }
static void teardown(void) { e2e_stop(&E); }

TestSuite(e2e_pause, .init = setup, .fini = teardown, .timeout = 180);

#define TYPE "test.e2e.happened"
#define PARKED "1000000000000000" /* EVBUS_RETRY_PARKED_MS */

static void start_host(const char *chaos_extra)
{
    char chaos[200];
    snprintf(chaos, sizeof chaos, "{ pattern: \"test.**\"%s }", chaos_extra ? chaos_extra : "");
    e2e_host_conf(&E, NULL);
    e2e_plugins(&E, chaos, "{ pattern: \"test.**\" }");
    e2e_evbusd(&E, 0);
    cr_assert(e2e_wait_healthy(&E, 15000), "evbusd did not come up (log %s)", E.fx.log);
}

/* Whether GET /health lists `instance` under "paused" (want) or not. */
typedef struct {
    const char *instance;
    bool want;
} paused_q_t;

static bool health_paused(void *ud)
{
    const paused_q_t *q = ud;
    int code = 0;
    char *body = e2e_http_get(E.admin_port, "/health", &code);
    json_t *h = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    bool has = json_object_get(json_object_get(h, "paused"), q->instance) != NULL;
    json_decref(h);
    return has == q->want;
}

static void wait_host_sees(const char *instance, bool paused)
{
    paused_q_t q = {instance, paused};
    cr_assert(harness_wait_until(health_paused, &q, 5000), "evbusd never showed %s as %s",
              instance, paused ? "paused" : "running");
}

static long long parked(void)
{
    return e2e_redis_int(&E, "ZCOUNT t:events:retry " PARKED " +inf");
}

typedef struct {
    long long want;
} count_q_t;

static bool parked_is(void *ud) { return parked() == ((count_q_t *)ud)->want; }

static void wait_parked(long long n)
{
    count_q_t q = {n};
    cr_assert(harness_wait_until(parked_is, &q, 10000), "parked entries: %lld, expected %lld",
              parked(), n);
}

/* Every id prefix-0..n-1 was handled by chaos exactly once and by rec
 * `rec_times` times. */
static void expect_calls(const char *prefix, int n, size_t rec_times)
{
    for (int i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        cr_expect_eq(e2e_chaos_calls(&E, id, NULL), 1, "chaos saw %s %zu times", id,
                     e2e_chaos_calls(&E, id, NULL));
        cr_expect_eq(e2e_rec_calls(&E, id, -1), rec_times, "rec saw %s %zu times, expected %zu",
                     id, e2e_rec_calls(&E, id, -1), rec_times);
    }
}

/* The parked schedule entries all target rec/record at attempt 1. */
static void expect_parked_unspent(long long n)
{
    redisContext *c = harness_redis_connect(&E.fx.redis);
    cr_assert_not_null(c);
    redisReply *r = redisCommand(c, "ZRANGEBYSCORE t:events:retry " PARKED " +inf");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    cr_assert_eq((long long)r->elements, n);
    for (size_t i = 0; i < r->elements; i++) {
        const char *m = r->element[i]->str;
        const char *nl = strchr(m, '\n');
        cr_assert_not_null(nl, "member without meta: %s", m);
        json_t *meta = json_loadb(m, (size_t)(nl - m), 0, NULL);
        cr_expect_str_eq(json_string_value(json_object_get(meta, "h")), "rec/record");
        cr_expect_eq(json_integer_value(json_object_get(meta, "a")), 1,
                     "a deferral spent an attempt: %.*s", (int)(nl - m), m);
        json_decref(meta);
    }
    freeReplyObject(r);
    redisFree(c);
}

/* Nothing pending in the group and nothing due in the schedule: all that
 * is left is parked.  (fx_wait_drained wants the schedule empty.) */
static bool settled(void *ud)
{
    (void)ud;
    return fx_pending(&E.fx) == 0 &&
           e2e_redis_int(&E, "ZCOUNT t:events:retry -inf (" PARKED) == 0;
}

static void wait_settled(void)
{
    cr_assert(harness_wait_until(settled, NULL, 10000), "pending %lld, due retries %lld",
              fx_pending(&E.fx), e2e_redis_int(&E, "ZCOUNT t:events:retry -inf (" PARKED));
}

static bool drained_and_empty(void *ud)
{
    (void)ud;
    return fx_pending(&E.fx) == 0 && e2e_redis_int(&E, "ZCARD t:events:retry") == 0;
}

Test(e2e_pause, a_paused_instance_waits_across_reload_and_restart_and_catches_up_on_resume)
{
    start_host(NULL);
    json_t *j = NULL;
    cr_assert_eq(e2e_ctl_json(&E, &j, "handlers", "pause", "rec", "--reason", "db migration",
                              "--by", "alice", "--json", NULL),
                 0);
    cr_expect(json_is_true(json_object_get(j, "changed")));
    cr_expect_str_eq(json_string_value(json_object_get(json_object_get(j, "record"), "by")),
                     "alice");
    json_decref(j);
    wait_host_sees("rec", true);

    /* paused: chaos handles everything, rec nothing, every delivery parked */
    fx_publish(&E.fx, "a", 20, TYPE, "t1", "{}");
    cr_assert(fx_wait_lines(E.calls, 20, 15000), "chaos did not handle the events");
    wait_parked(20);
    wait_settled();
    expect_calls("a", 20, 0);
    expect_parked_unspent(20);

    /* listed as paused, with what waits for it; status shows it too */
    cr_assert_eq(e2e_ctl_json(&E, &j, "handlers", "list", "--json", NULL), 0);
    json_t *it;
    size_t i;
    int seen = 0;
    json_array_foreach(json_object_get(j, "instances"), i, it)
    {
        const char *name = json_string_value(json_object_get(it, "instance"));
        if (!strcmp(name, "rec")) {
            seen++;
            cr_expect_str_eq(json_string_value(json_object_get(
                                 json_object_get(it, "paused"), "reason")),
                             "db migration");
            cr_expect_eq(json_integer_value(json_object_get(it, "deferred")), 20);
        } else if (!strcmp(name, "chaos")) {
            seen++;
            cr_expect(json_is_null(json_object_get(it, "paused")));
        }
    }
    cr_expect_eq(seen, 2);
    json_decref(j);
    char *out = NULL;
    cr_assert_eq(e2e_ctl(&E, &out, NULL, "status", NULL), 0);
    cr_expect(strstr(out, "paused:") && strstr(out, "rec ") && strstr(out, "by alice"),
              "status: %s", out);
    free(out);

    /* a reload keeps the pause */
    kill(E.fx.d.pid, SIGHUP);
    cr_assert(fx_wait_log(&E.fx, "generation 2 live", 10000), "the reload did not happen");
    fx_publish(&E.fx, "b", 10, TYPE, "t1", "{}");
    cr_assert(fx_wait_lines(E.calls, 30, 15000));
    wait_parked(30);

    /* so does a restart */
    cr_assert_eq(harness_kill(&E.fx.d, SIGTERM, 15000), 0);
    E.fx.d.pid = 0;
    e2e_evbusd(&E, 0);
    cr_assert(e2e_wait_healthy(&E, 15000));
    wait_host_sees("rec", true);
    fx_publish(&E.fx, "c", 10, TYPE, "t1", "{}");
    cr_assert(fx_wait_lines(E.calls, 40, 15000));
    wait_parked(40);
    wait_settled();
    expect_calls("b", 10, 0);
    expect_calls("c", 10, 0);
    expect_parked_unspent(40);

    /* resume: every deferred event reaches rec exactly once */
    cr_assert_eq(e2e_ctl_json(&E, &j, "handlers", "resume", "rec", "--json", NULL), 0);
    cr_expect(json_is_true(json_object_get(j, "changed")));
    cr_expect_leq(json_integer_value(json_object_get(j, "released")), 40);
    json_decref(j);
    cr_assert(fx_wait_lines(E.rec, 40, 15000), "rec got %zu of 40 events",
              harness_count_lines(E.rec));
    cr_assert(harness_wait_until(drained_and_empty, NULL, 10000));
    wait_host_sees("rec", false);
    e2e_sleep_ms(500); /* a duplicate would show up by now */
    expect_calls("a", 20, 1);
    expect_calls("b", 10, 1);
    expect_calls("c", 10, 1);
    cr_expect_eq(harness_count_lines(E.rec), 40);
    cr_expect_eq(fx_xlen(&E.fx, "t:events:dlq"), 0);
}

Test(e2e_pause, a_retry_falling_due_while_paused_is_parked_and_keeps_its_attempt)
{
    /* chaos retries its first attempt 2 s later; pause it meanwhile */
    start_host(", retry: { base_ms: 2000, factor: 1, jitter: 0 }");
    fx_publish(&E.fx, "r", 1, TYPE, "t1", "{\"fault\":\"retry:1\"}");
    cr_assert(fx_wait_lines(E.calls, 1, 10000));
    cr_assert_eq(e2e_chaos_calls(&E, "r-0", "RETRY"), 1);
    cr_assert_eq(e2e_ctl(&E, NULL, NULL, "handlers", "pause", "chaos", NULL), 0);
    wait_host_sees("chaos", true);
    wait_parked(1); /* once due, the mover parks it instead of delivering it */
    e2e_sleep_ms(1000);
    cr_expect_eq(e2e_chaos_calls(&E, "r-0", NULL), 1, "a paused handler was called");
    cr_assert_eq(e2e_ctl(&E, NULL, NULL, "handlers", "resume", "chaos", NULL), 0);
    cr_assert(harness_wait_until(drained_and_empty, NULL, 10000));
    cr_assert(fx_wait_lines(E.calls, 2, 10000));
    /* "chaos r-0 2 OK": the second attempt, not a third */
    cr_expect_eq(e2e_chaos_calls(&E, "r-0", "OK"), 1);
    char *calls = harness_read_file(E.calls);
    cr_expect(strstr(calls, "chaos r-0 2 OK"), "calls: %s", calls);
    free(calls);
    cr_expect_eq(e2e_rec_calls(&E, "r-0", -1), 1, "rec is not paused");
    cr_expect_eq(fx_xlen(&E.fx, "t:events:dlq"), 0);
}

Test(e2e_pause, pausing_an_instance_the_configuration_lacks_is_a_usage_error)
{
    e2e_host_conf(&E, NULL);
    e2e_plugins(&E, "{ pattern: \"test.**\" }", NULL);
    char *err = NULL;
    cr_expect_eq(e2e_ctl(&E, NULL, &err, "handlers", "pause", "nope", NULL), 2);
    cr_expect(strstr(err, "no handler instance 'nope'") && strstr(err, "chaos"), "stderr: %s",
              err);
    free(err);
    cr_expect_eq(e2e_ctl(&E, NULL, NULL, "handlers", "pause", "a/b", NULL), 2);
    cr_expect_eq(e2e_ctl(&E, NULL, NULL, "handlers", "resume", "nope", NULL), 2);
    cr_expect_eq(e2e_ctl(&E, NULL, NULL, "handlers", "frobnicate", NULL), 2);
    cr_expect_eq(e2e_redis_int(&E, "EXISTS t:events:paused"), 0, "a refused pause wrote state");
}
