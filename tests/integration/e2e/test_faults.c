/*
 * Faults around the daemon, end to end: Redis going away (circuit
 * breaker), consumers that died long ago (stale consumer removal), handlers
 * that overrun (timeouts, watchdog) and slow handlers on two hosts in one
 * group (leases).  No PostgreSQL here.
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e.h"

static e2e_t E;
static harness_proc_t H2;

static void setup_aof(void) { e2e_start(&E, true, false); }
static void setup(void) { e2e_start(&E, false, false); }
static void teardown(void)
{
    if (H2.pid > 0)
        harness_kill(&H2, SIGKILL, 5000);
    e2e_stop(&E);
}

TestSuite(e2e_circuit, .init = setup_aof, .fini = teardown, .timeout = 120);
TestSuite(e2e_faults, .init = setup, .fini = teardown, .timeout = 120);

static void publish(const char *id, const char *fault)
{
    char data[128] = "{}";
    if (fault)
        snprintf(data, sizeof data, "{\"fault\":\"%s\"}", fault);
    char *ev = e2e_event(id, "test.e2e.happened", "acme", data, NULL);
    /* a second try: the first may meet a connection Redis is still accepting */
    int rc = e2e_xadd(&E, "*", ev, NULL);
    if (rc != 0)
        rc = e2e_xadd(&E, "*", ev, NULL);
    cr_assert_eq(rc, 0, "XADD %s", id);
    free(ev);
}

typedef struct {
    const char *id;
    size_t n;
    bool chaos;
} seen_t;

static bool seen(void *ud)
{
    seen_t *s = ud;
    return (s->chaos ? e2e_chaos_calls(&E, s->id, NULL) : e2e_rec_calls(&E, s->id, -1)) >= s->n;
}

static bool wait_rec(const char *id, int timeout_ms)
{
    seen_t s = {id, 1, false};
    return harness_wait_until(seen, &s, timeout_ms);
}

static bool wait_chaos(const char *id, size_t n, int timeout_ms)
{
    seen_t s = {id, n, true};
    return harness_wait_until(seen, &s, timeout_ms);
}

/* `evbusctl status --json --admin` once: exit status, health.status copied out. */
static int status_once(int port, char st[32])
{
    char admin[64];
    snprintf(admin, sizeof admin, "127.0.0.1:%d", port);
    json_t *h = NULL;
    int rc = e2e_ctl_json(&E, &h, "status", "--json", "--admin", admin, NULL);
    const char *s = json_string_value(json_object_get(h, "status"));
    snprintf(st, 32, "%s", s ? s : "");
    json_decref(h);
    return rc;
}

typedef struct {
    int port;
    bool want_unhealthy;
    int rc;
    char st[32];
} health_wait_t;

static bool health_reached(void *ud)
{
    health_wait_t *w = ud;
    w->rc = status_once(w->port, w->st);
    if (w->want_unhealthy)
        return w->rc == 1 && strcmp(w->st, "unhealthy") == 0;
    return w->rc == 0 && (strcmp(w->st, "ok") == 0 || strcmp(w->st, "degraded") == 0);
}

/* ---- circuit breaker ------------------------------------------------------ */

Test(e2e_circuit, redis_outage_opens_the_circuit_and_the_host_recovers_by_itself)
{
    e2e_host_conf(&E, "circuit: { failures: 3, max_backoff_ms: 500 }\n");
    e2e_plugins(&E, NULL, "{ pattern: \"test.**\", handler: record }");
    e2e_evbusd(&E, 0);
    cr_assert(e2e_wait_healthy(&E, 10000), "evbusd did not start (log %s)", E.fx.log);
    publish("before-1", NULL);
    cr_assert(wait_rec("before-1", 10000));
    cr_expect_eq(e2e_metric(E.admin_port, "evbus_redis_circuit_open"), 0);

    harness_redis_stop(&E.fx.redis);
    long long t0 = harness_now_ms();
    health_wait_t w = {.port = E.admin_port, .want_unhealthy = true};
    cr_assert(harness_wait_until(health_reached, &w, 8000),
              "no 'unhealthy' within 8 s of the outage (last: exit %d, status '%s')", w.rc, w.st);
    cr_expect_lt(harness_now_ms() - t0, 5000, "unhealthy only after %lld ms",
                 harness_now_ms() - t0);
    cr_expect_eq(e2e_metric(E.admin_port, "evbus_redis_circuit_open"), 1);
    cr_expect(fx_log_has(&E.fx, "circuit open"));

    cr_assert_eq(harness_redis_restart(&E.fx.redis), 0, "redis did not restart");
    health_wait_t back = {.port = E.admin_port, .want_unhealthy = false};
    cr_assert(harness_wait_until(health_reached, &back, 10000),
              "health did not recover after Redis came back (last: exit %d, status '%s')", back.rc,
              back.st);
    publish("after-1", NULL);
    cr_assert(wait_rec("after-1", 10000), "an event published after the outage was not handled");
    cr_expect_eq(e2e_metric(E.admin_port, "evbus_redis_circuit_open"), 0);
    cr_expect_eq(e2e_rec_calls(&E, "before-1", -1), 1);
    cr_assert_eq(harness_wait(&E.fx.d, 0), -1, "evbusd exited during the outage (log %s)",
                 E.fx.log);
    cr_assert_eq(harness_kill(&E.fx.d, SIGTERM, 15000), 0);
}

Test(e2e_circuit, circuit_stop_makes_the_daemon_exit_non_zero)
{
    e2e_host_conf(&E, "circuit: { failures: 3, max_backoff_ms: 200, stop: true }\n");
    e2e_plugins(&E, NULL, "{ pattern: \"test.**\", handler: record }");
    e2e_evbusd(&E, 0);
    cr_assert(e2e_wait_healthy(&E, 10000), "evbusd did not start (log %s)", E.fx.log);
    harness_redis_stop(&E.fx.redis);
    int st = fx_evbusd_wait(&E.fx, 15000);
    cr_assert_neq(st, -1, "evbusd kept running with circuit.stop (log %s)", E.fx.log);
    cr_expect(fx_log_has(&E.fx, "stopping as configured"));
    cr_expect_neq(st, 0, "evbusd stopped by its circuit breaker exited 0 (log %s)", E.fx.log);
}

/* ---- stale consumers ------------------------------------------------------- */

static bool consumer_gone(void *ud)
{
    (void)ud;
    return fx_log_has(&E.fx, "removed stale consumer ghost");
}

/* Names of the group's consumers, space-separated with a trailing space. */
static void consumer_names(char *out, size_t len)
{
    redisContext *c = harness_redis_connect(&E.fx.redis);
    cr_assert_not_null(c);
    redisReply *r = redisCommand(c, "XINFO CONSUMERS t:events g");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    out[0] = '\0';
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *info = r->element[i];
        for (size_t k = 0; k + 1 < info->elements; k += 2)
            if (strcmp(info->element[k]->str, "name") == 0) {
                strncat(out, info->element[k + 1]->str, len - strlen(out) - 2);
                strcat(out, " ");
            }
    }
    freeReplyObject(r);
    redisFree(c);
}

Test(e2e_faults, idle_consumers_owning_nothing_are_removed_the_others_kept)
{
    e2e_host_conf(&E, NULL);
    e2e_conf_file(&E, "20-stale.yaml",
                  "reclaim: { stale_consumer_ms: 1000, min_idle_ms: 60000 }\n");
    e2e_plugins(&E, NULL, "{ pattern: \"test.**\", handler: record }");
    redisContext *c = harness_redis_connect(&E.fx.redis);
    cr_assert_not_null(c);
    redisReply *r = redisCommand(c, "XGROUP CREATE t:events g 0 MKSTREAM");
    cr_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    publish("held-1", NULL);
    /* "busy" takes the entry and never acks it: it owns a pending entry */
    r = redisCommand(c, "XREADGROUP GROUP g busy COUNT 1 STREAMS t:events >");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1);
    freeReplyObject(r);
    cr_assert_eq(harness_redis_int(c, "XGROUP CREATECONSUMER t:events g ghost"), 1);
    redisFree(c);

    e2e_evbusd(&E, 0);
    cr_assert(e2e_wait_healthy(&E, 10000));
    publish("live-1", NULL);
    cr_assert(wait_rec("live-1", 10000));
    cr_assert(harness_wait_until(consumer_gone, NULL, 5000),
              "ghost (idle, nothing pending) was not removed within 5 s (log %s)", E.fx.log);
    char names[512];
    consumer_names(names, sizeof names);
    cr_expect(!strstr(names, "ghost "), "consumers: %s", names);
    cr_expect(strstr(names, "busy "), "a consumer owning a pending entry was removed: %s", names);
    cr_expect(strstr(names, "c1 "), "the host removed itself: %s", names);
    cr_expect_geq(e2e_metric(E.admin_port, "evbus_stale_consumers_removed_total"), 1);
    cr_expect(!fx_log_has(&E.fx, "removed stale consumer busy"));
    cr_expect_eq(e2e_rec_calls(&E, "held-1", -1), 0,
                 "busy's entry must stay busy's (min_idle 60 s)");
}

/* ---- handler timeouts -------------------------------------------------------- */

Test(e2e_faults, handler_overrunning_its_timeout_but_succeeding_runs_once)
{
    /* docs/plugins.md, Timeouts: a late OK is OK, never a second call */
    e2e_host_conf(&E, NULL);
    e2e_plugins(&E, "{ pattern: \"test.**\", timeout_ms: 200, retry: { max_attempts: 2 } }", NULL);
    publish("slow-1", "sleep:600");
    e2e_evbusd(&E, 0);
    cr_assert(e2e_wait_healthy(&E, 10000));
    cr_assert(wait_chaos("slow-1", 1, 10000), "the slow call did not run");
    cr_assert(fx_wait_drained(&E.fx, 10000));
    usleep(500 * 1000); /* a retry (base 50 ms in the fixture) would have run by now */
    cr_expect_eq(e2e_chaos_calls(&E, "slow-1", NULL), 1);
    cr_expect_eq(e2e_chaos_calls(&E, "slow-1", "OK"), 1);
    cr_expect_geq(e2e_metric(E.admin_port, "evbus_handler_timeouts_total"), 1);
    cr_expect_geq(e2e_metric(E.admin_port, "evbus_handler_late_ok_total"), 1);
    cr_expect(fx_log_has(&E.fx, "has been running for"), "no watchdog line (log %s)", E.fx.log);
    cr_expect(fx_log_has(&E.fx, "late, but it succeeded"));
    json_t *list = NULL;
    cr_assert_eq(e2e_ctl_json(&E, &list, "dlq", "list", "--json", NULL), 0);
    cr_expect_eq(json_array_size(json_object_get(list, "items")), 0, "nothing dead-lettered");
    json_decref(list);
}

/* ---- leases ---------------------------------------------------------------- */

Test(e2e_faults, slow_work_in_flight_is_never_claimed_by_the_other_host)
{
    e2e_host_conf(&E, NULL);
    e2e_conf_file(&E, "20-lease.yaml",
                  "batch_size: 1\n"
                  "reclaim: { min_idle_ms: 1000, interval_ms: 200 }\n");
    e2e_plugins(&E, "{ pattern: \"test.**\" }", NULL);
    e2e_evbusd(&E, 0);
    int port2 = harness_free_port();
    e2e_start_clone(&E, "h2", "c2", port2, &H2);
    cr_assert(e2e_wait_healthy(&E, 10000));
    cr_assert(e2e_wait_healthy_at(&E, port2, 10000));

    const char *ids[] = {"lease-0", "lease-1", "lease-2", "lease-3"};
    for (int i = 0; i < 4; i++)
        publish(ids[i], "sleep:3000");
    for (int i = 0; i < 4; i++)
        cr_assert(wait_chaos(ids[i], 1, 20000), "%s was never handled", ids[i]);
    cr_assert(fx_wait_drained(&E.fx, 15000));
    /* twice the idle bound more, in case a claim were still on its way */
    e2e_sleep_ms(2000);
    for (int i = 0; i < 4; i++)
        cr_expect_eq(e2e_chaos_calls(&E, ids[i], NULL), 1, "%s was called %zu times", ids[i],
                     e2e_chaos_calls(&E, ids[i], NULL));
    cr_expect_eq(e2e_metric(E.admin_port, "evbus_pending_reclaimed_total"), 0);
    cr_expect_eq(e2e_metric(port2, "evbus_pending_reclaimed_total"), 0);
    long long leases = e2e_metric(E.admin_port, "evbus_leases_renewed_total") +
                       e2e_metric(port2, "evbus_leases_renewed_total");
    cr_expect_geq(leases, 4, "3 s handlers with a 1 s idle bound renewed only %lld leases", leases);
}
