/*
 * Crash forensics under a supervisor: a handler that aborts is named in
 * one log line before the process dies, crash and start counts survive
 * restarts, and the poison dead letter names the handler that was
 * running.  Real redis-server and evbusd restarted as a supervisor would.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"

static fx_t F;

static void setup(void) { fx_start(&F, false); }
static void teardown(void) { fx_stop(&F); }

TestSuite(crash, .init = setup, .fini = teardown, .timeout = 240);

Test(crash, the_log_names_the_entry_and_counts_survive_restarts)
{
    char calls[600], buf[1024];
    fx_path(&F, "calls.txt", calls, sizeof calls);
    F.admin_port = harness_free_port();
    snprintf(buf, sizeof buf, "admin: { listen: \"127.0.0.1:%d\" }\n", F.admin_port);
    fx_host_conf(&F, "c1", buf);
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: boom\n"
             "    plugin: %s\n"
             "    config: { count_file: %s }\n"
             "    subscriptions: [ \"bulk.**\" ]\n",
             fx_plugin("plugins/chaos/chaos.so"), calls);
    fx_conf(&F, "10-boom.yaml", buf);
    fx_publish(&F, "crash", 1, "bulk.x", "t", "{\"fault\":\"crash\",\"i\":%d}");
    /* a supervisor: start again after each crash, until the entry is
     * quarantined as poison (max_deliveries 3 in the fixture) */
    int starts = 0;
    while (fx_xlen(&F, "t:events:dlq") == 0 && starts < 8) {
        fx_evbusd(&F, NULL, NULL);
        starts++;
        int st = fx_evbusd_wait(&F, 15000);
        if (st == -1)
            break; /* still running: it handled the poison pill */
    }
    cr_assert(fx_xlen(&F, "t:events:dlq") == 1 || fx_wait_drained(&F, 15000));
    for (int i = 0; i < 200 && fx_xlen(&F, "t:events:dlq") == 0; i++)
        usleep(50000);
    cr_assert_eq(fx_xlen(&F, "t:events:dlq"), 1);
    /* the log named the entry before the first abort */
    cr_expect(fx_log_has(&F, "FATAL [crash] signal 6 (SIGABRT) in worker-"));
    cr_expect(fx_log_has(&F, "running handler boom/main on event crash-0 (stream entry "));
    /* the poison dead letter names the handler */
    redisContext *r = harness_redis_connect(&F.redis);
    redisReply *d = redisCommand(r, "XRANGE t:events:dlq - +");
    cr_assert(d && d->elements == 1);
    redisReply *fv = d->element[0]->element[1];
    const char *reason = NULL, *handlers = NULL, *error = NULL;
    for (size_t k = 0; k + 1 < fv->elements; k += 2) {
        if (!strcmp(fv->element[k]->str, "reason"))
            reason = fv->element[k + 1]->str;
        if (!strcmp(fv->element[k]->str, "handlers"))
            handlers = fv->element[k + 1]->str;
        if (!strcmp(fv->element[k]->str, "error"))
            error = fv->element[k + 1]->str;
    }
    cr_expect_str_eq(reason, "poison");
    cr_expect(handlers && strstr(handlers, "boom/main"), "%s", handlers ? handlers : "");
    cr_expect(error && strstr(error, "while handler boom/main was running"), "%s",
              error ? error : "");
    freeReplyObject(d);
    redisFree(r);
    /* counts survive restarts: in health and metrics */
    if (F.d.pid == 0 || kill(F.d.pid, 0) != 0) {
        fx_evbusd(&F, NULL, NULL);
        starts++;
    }
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    int st;
    char *body = NULL;
    for (int i = 0; i < 100 && !body; i++) {
        body = harness_http_get(F.admin_port, "/health", &st);
        if (!body)
            usleep(50000);
    }
    json_t *h = json_loads(body, 0, NULL);
    free(body);
    json_t *p = json_object_get(h, "process");
    long long crashes = json_integer_value(json_object_get(p, "crashes_total"));
    cr_expect_geq(crashes, 3, "crashes %lld", crashes);
    cr_expect_eq(json_integer_value(json_object_get(p, "starts_total")), starts);
    cr_expect_str_eq(json_string_value(json_object_get(json_object_get(p, "last_crash"),
                                                       "handler")),
                     "boom/main");
    json_decref(h);
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
}

Test(crash, an_operator_quarantines_a_pending_entry_by_hand)
{
    char calls[600], buf[1024];
    fx_path(&F, "calls.txt", calls, sizeof calls);
    fx_host_conf(&F, "c1", NULL);
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: boom\n"
             "    plugin: %s\n"
             "    config: { count_file: %s }\n"
             "    subscriptions: [ \"bulk.**\" ]\n",
             fx_plugin("plugins/chaos/chaos.so"), calls);
    fx_conf(&F, "10-boom.yaml", buf);
    fx_publish(&F, "crash", 1, "bulk.x", "t", "{\"fault\":\"crash\",\"i\":%d}");
    fx_evbusd(&F, NULL, NULL);
    cr_assert_neq(fx_evbusd_wait(&F, 15000), -1, "the crash fault must kill evbusd");
    cr_assert_eq(fx_pending(&F), 1);
    char *ctl = harness_build_path("host/ctl/evbusctl");
    char *o = NULL, *e = NULL;
    char *ls[] = {ctl, "-c", F.conf, "pending", "list", "--json", NULL};
    cr_assert_eq(harness_run(ls, NULL, NULL, &o, &e, 10000), 0, "%s", e);
    json_t *arr = json_loads(o, 0, NULL);
    cr_assert(json_array_size(arr) == 1, "%s", o);
    char id[64];
    snprintf(id, sizeof id, "%s",
             json_string_value(json_object_get(json_array_get(arr, 0), "id")));
    cr_expect_eq(json_integer_value(json_object_get(json_array_get(arr, 0), "deliveries")), 1);
    json_decref(arr);
    free(o);
    free(e);
    char *bad[] = {ctl, "-c", F.conf, "pending", "quarantine", "nope", NULL};
    cr_expect_eq(harness_run(bad, NULL, NULL, &o, &e, 10000), 2);
    free(o);
    free(e);
    char *q[] = {ctl, "-c", F.conf, "pending", "quarantine", id, "--reason", "kills hosts",
                 NULL};
    cr_assert_eq(harness_run(q, NULL, NULL, &o, &e, 10000), 0, "%s", e);
    cr_expect(strstr(o, "quarantined as dead letter"), "%s", o);
    free(o);
    free(e);
    cr_expect_eq(fx_pending(&F), 0);
    cr_expect_eq(fx_xlen(&F, "t:events:dlq"), 1);
    /* the same again: no longer pending */
    cr_expect_eq(harness_run(q, NULL, NULL, &o, &e, 10000), 1);
    cr_expect(strstr(e, "is not pending"), "%s", e);
    free(o);
    free(e);
    redisContext *r = harness_redis_connect(&F.redis);
    redisReply *d = redisCommand(r, "XRANGE t:events:dlq - +");
    redisReply *fv = d->element[0]->element[1];
    bool reason_ok = false, error_ok = false;
    for (size_t k = 0; k + 1 < fv->elements; k += 2) {
        if (!strcmp(fv->element[k]->str, "reason"))
            reason_ok = !strcmp(fv->element[k + 1]->str, "quarantined");
        if (!strcmp(fv->element[k]->str, "error"))
            error_ok = strstr(fv->element[k + 1]->str, "kills hosts") != NULL;
    }
    cr_expect(reason_ok && error_ok);
    freeReplyObject(d);
    redisFree(r);
    /* evbusd starts and stays up: the entry that killed it is gone */
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    cr_assert_eq(fx_evbusd_wait(&F, 1500), -1, "evbusd died again");
    free(ctl);
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
}
