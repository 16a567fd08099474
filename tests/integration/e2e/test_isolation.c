/*
 * `isolation: process`, end to end: the real evbusd runs the crashy test
 * plugin (plugins/testkit/crashy.c) in an evbus-plugin-runner child, next
 * to the in-process testkit recorder on the same events.  What a crash, a
 * hang or an exit() in the child does is read where an operator would:
 * the plugins' own files, the dead-letter stream, GET /metrics and the log.
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "e2e.h"

static e2e_t E;
static char crashy_out[600];

static void setup(void)
{
    e2e_start(&E, false, false);
    fx_path(&E.fx, "crashy.txt", crashy_out, sizeof crashy_out);
}
static void teardown(void) { e2e_stop(&E); }

TestSuite(e2e_isolation, .init = setup, .fini = teardown, .timeout = 180);

#define TYPE "test.e2e.happened"

/* conf/10-plugins.yaml: crashy (isolation as given, NULL: key left out;
 * its config `{ out: <out>, <more> }`) on test.** and the recorder on
 * test.e2e.**: a test.solo.* event has crashy's handler alone. */
static void plugins_with(const char *isolation, const char *out, const char *more)
{
    char buf[4096], iso[64] = "";
    if (isolation)
        snprintf(iso, sizeof iso, "    isolation: %s\n", isolation);
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: crashy\n"
             "    plugin: %s\n"
             "%s"
             "    config: { out: %s%s%s }\n"
             "    subscriptions:\n"
             "      - { pattern: \"test.**\" }\n"
             "  - name: rec\n"
             "    plugin: %s\n"
             "    config: { out: %s }\n"
             "    subscriptions:\n"
             "      - { pattern: \"test.e2e.**\" }\n",
             fx_plugin("plugins/testkit/crashy.so"), iso, out, more ? ", " : "",
             more ? more : "", fx_plugin("plugins/testkit/testkit.so"), E.rec);
    e2e_conf_file(&E, "10-plugins.yaml", buf);
}

static void plugins(const char *isolation) { plugins_with(isolation, crashy_out, NULL); }

static void start_host(const char *extra)
{
    e2e_host_conf(&E, extra);
    plugins("process");
    e2e_evbusd(&E, 0);
    if (!e2e_wait_healthy(&E, 15000)) {
        char *log = harness_read_file(E.fx.log);
        cr_assert_fail("evbusd did not come up; its log:\n%s", log ? log : "(none)");
    }
}

static void publish_type(const char *id, const char *type, const char *crash)
{
    char data[128] = "{}";
    if (crash)
        snprintf(data, sizeof data, "{\"crash\":\"%s\"}", crash);
    char *ev = e2e_event(id, type, "acme", data, NULL);
    cr_assert_eq(e2e_xadd(&E, "*", ev, NULL), 0, "XADD %s", id);
    free(ev);
}

static void publish(const char *id, const char *crash) { publish_type(id, TYPE, crash); }

/* crashy's "call <id> <attempt> <pid> <n> <crash>" lines for id (NULL:
 * all); the pid of the last one goes to *pid when not NULL. */
static size_t crashy_calls_in(const char *path, const char *id, int *pid)
{
    char *text = harness_read_file(path);
    size_t n = 0;
    for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        char cid[128];
        int attempt, p;
        if (sscanf(line, "call %127s %d %d", cid, &attempt, &p) != 3)
            continue;
        if (id && strcmp(cid, id) != 0)
            continue;
        n++;
        if (pid)
            *pid = p;
    }
    free(text);
    return n;
}

/* The `error` field of the dead letter of event id ("" when none; malloc'd). */
static char *dlq_error(const char *id)
{
    redisContext *c = harness_redis_connect(&E.fx.redis);
    cr_assert(c);
    redisReply *r = redisCommand(c, "XRANGE t:events:dlq - +");
    char *out = strdup("");
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        redisReply *fv = r->element[i]->element[1];
        const char *event = NULL, *error = NULL;
        for (size_t k = 0; k + 1 < fv->elements; k += 2) {
            if (!strcmp(fv->element[k]->str, "event"))
                event = fv->element[k + 1]->str;
            if (!strcmp(fv->element[k]->str, "error"))
                error = fv->element[k + 1]->str;
        }
        char needle[160];
        snprintf(needle, sizeof needle, "\"id\":\"%s\"", id);
        if (event && error && strstr(event, needle)) {
            free(out);
            out = strdup(error);
        }
    }
    freeReplyObject(r);
    redisFree(c);
    return out;
}

static size_t crashy_calls(const char *id, int *pid) { return crashy_calls_in(crashy_out, id, pid); }

typedef struct {
    const char *id;
} dlq_q_t;

static bool has_dead_letter(void *ud)
{
    char *err = dlq_error(((dlq_q_t *)ud)->id);
    bool has = err[0] != '\0';
    free(err);
    return has;
}

static bool rec_has(void *ud) { return e2e_rec_calls(&E, ud, -1) >= 1; }

typedef struct {
    const char *id;
    size_t n;
} calls_q_t;

static bool crashy_has(void *ud)
{
    calls_q_t *q = ud;
    return crashy_calls(q->id, NULL) >= q->n;
}

Test(e2e_isolation, handlers_run_in_a_runner_child_with_the_host_api)
{
    start_host(NULL);
    char id[32];
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "ok-%d", i);
        publish(id, NULL);
    }
    calls_q_t q = {NULL, 20};
    cr_assert(harness_wait_until(crashy_has, &q, 15000), "crashy saw %zu of 20 events",
              crashy_calls(NULL, NULL));
    cr_assert(fx_wait_drained(&E.fx, 10000), "entries left pending");
    int pid = 0;
    crashy_calls("ok-19", &pid);
    cr_expect_neq(pid, 0);
    cr_expect_neq(pid, (int)E.fx.d.pid, "the handler ran in evbusd itself");
    cr_expect_eq(e2e_rec_calls(&E, "ok-7", -1), 1);
    /* api->log in the child reaches evbusd's log under the instance name */
    cr_expect(fx_wait_log(&E.fx, "[plugin:crashy] crashy: event ok-3 attempt 1: -", 5000),
              "the child's api->log line is not in %s", E.fx.log);
    cr_expect_geq(e2e_metric(E.admin_port, "evbus_plugin_runner_starts_total"), 1);
    cr_expect_eq(e2e_metric(E.admin_port, "evbus_plugin_runner_crashes_total"), 0);
    /* /health says which instances are isolated */
    int code = 0;
    char *body = e2e_http_get(E.admin_port, "/health", &code);
    json_t *h = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    json_t *insts = json_object_get(json_object_get(h, "config"), "instances");
    size_t i;
    json_t *in;
    const char *crashy = NULL, *rec = NULL;
    json_array_foreach(insts, i, in)
    {
        const char *name = json_string_value(json_object_get(in, "name"));
        const char *iso = json_string_value(json_object_get(in, "isolation"));
        if (name && !strcmp(name, "crashy"))
            crashy = iso;
        if (name && !strcmp(name, "rec"))
            rec = iso;
    }
    cr_expect_str_eq(crashy ? crashy : "", "process");
    cr_expect_str_eq(rec ? rec : "", "in-process");
    json_decref(h);
    /* api->set_reason in the child reaches the dead letter */
    publish("no-1", "reject");
    dlq_q_t dq = {"no-1"};
    cr_assert(harness_wait_until(has_dead_letter, &dq, 10000), "no-1 was not dead-lettered");
    char *err = dlq_error("no-1");
    cr_expect(strstr(err, "crashy/main: crashy was asked to reject"), "dead letter: %s", err);
    free(err);
}

/* One crash kind: the crashing event is retried until its attempts run
 * out and dead-lettered with a reason naming the crash; the recorder and
 * the good events are untouched; evbusd lives on; the child is a new one. */
static void crash_is_contained(const char *kind, const char *why, const char *extra)
{
    start_host(extra);
    publish("before", NULL);
    calls_q_t q0 = {"before", 1};
    cr_assert(harness_wait_until(crashy_has, &q0, 10000));
    int pid_before = 0;
    crashy_calls("before", &pid_before);

    publish("boom", kind);
    char id[32];
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "good-%d", i);
        publish(id, NULL);
    }
    dlq_q_t dq = {"boom"};
    cr_assert(harness_wait_until(has_dead_letter, &dq, 60000),
              "the crashing event was never dead-lettered (log %s)", E.fx.log);
    char *err = dlq_error("boom");
    cr_expect(strstr(err, why),
              "dead letter error does not name the crash (%s): %s", why, err);
    cr_expect(strstr(err, "crashy/main"), "dead letter error does not name the handler: %s",
              err);
    free(err);
    /* every attempt reached the child (max_attempts 4) */
    cr_expect_eq(crashy_calls("boom", NULL), 4);
    /* the other handler completed the same event, and the good ones */
    cr_expect(harness_wait_until(rec_has, "boom", 5000));
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "good-%d", i);
        cr_expect(harness_wait_until(rec_has, id, 10000), "rec missed %s", id);
        calls_q_t q = {id, 1};
        cr_expect(harness_wait_until(crashy_has, &q, 10000), "crashy missed %s", id);
    }
    /* the host lives on, with a new child */
    cr_expect_eq(kill(E.fx.d.pid, 0), 0, "evbusd is gone");
    publish("after", NULL);
    calls_q_t q1 = {"after", 1};
    cr_assert(harness_wait_until(crashy_has, &q1, 15000), "no runner after the crashes");
    int pid_after = 0;
    crashy_calls("after", &pid_after);
    cr_expect_neq(pid_after, pid_before, "the child was not restarted");
    cr_expect_geq(e2e_metric(E.admin_port, "evbus_plugin_runner_crashes_total"), 4);
    cr_expect_geq(e2e_metric(E.admin_port, "evbus_plugin_runner_starts_total"), 5);
    cr_expect(fx_log_has(&E.fx, "instance 'crashy': plugin runner"),
              "the crash is not in the log %s", E.fx.log);
    cr_assert(fx_wait_drained(&E.fx, 10000), "entries left pending");
}

Test(e2e_isolation, an_abort_fails_only_the_running_delivery)
{
    crash_is_contained("abort", "SIGABRT", NULL);
}

Test(e2e_isolation, a_segfault_fails_only_the_running_delivery)
{
    crash_is_contained("segv", "SIGSEGV", NULL);
}

Test(e2e_isolation, an_exit_fails_only_the_running_delivery)
{
    crash_is_contained("exit", "exited with status 3", NULL);
}

Test(e2e_isolation, a_hang_is_killed_at_the_handler_timeout)
{
    crash_is_contained("hang", "past its timeout of", "handler_timeout_ms: 700\n");
}

Test(e2e_isolation, the_isolation_key_is_checked_with_its_position)
{
    e2e_host_conf(&E, NULL);
    plugins("separate");
    char *bin = harness_build_path("host/daemon/evbusd");
    char *argv[] = {bin, "-c", E.fx.conf, "--check-config", NULL};
    char *out = NULL, *err = NULL;
    int rc = harness_run(argv, NULL, NULL, &out, &err, 30000);
    cr_expect_neq(rc, 0);
    cr_expect(err && strstr(err, "10-plugins.yaml:4:16: isolation: expected one of "
                                 "in-process|process, got 'separate'"),
              "stderr: %s", err ? err : "");
    free(out);
    free(err);
    free(bin);
}

/* Whether path has a line starting with prefix. */
static bool file_has_line(const char *path, const char *prefix)
{
    char *text = harness_read_file(path);
    bool has = false;
    for (char *line = text ? strtok(text, "\n") : NULL; line && !has; line = strtok(NULL, "\n"))
        has = strncmp(line, prefix, strlen(prefix)) == 0;
    free(text);
    return has;
}

typedef struct {
    const char *path, *prefix;
} line_q_t;

static bool line_there(void *ud)
{
    line_q_t *q = ud;
    return file_has_line(q->path, q->prefix);
}

static void publish_and_wait(const char *path, const char *id)
{
    publish(id, NULL);
    char prefix[160];
    snprintf(prefix, sizeof prefix, "call %s ", id);
    line_q_t q = {path, prefix};
    cr_assert(harness_wait_until(line_there, &q, 15000), "%s never reached crashy (%s)", id,
              path);
}

static bool gone(void *ud) { return kill(*(int *)ud, 0) != 0; }

static void reload(int generation)
{
    char want[64];
    snprintf(want, sizeof want, "generation %d live", generation);
    kill(E.fx.d.pid, SIGHUP);
    cr_assert(fx_wait_log(&E.fx, want, 15000), "the reload did not happen (log %s)", E.fx.log);
}

Test(e2e_isolation, keep_state_keeps_the_child_and_its_state_over_a_reload)
{
    start_host(NULL);
    publish_and_wait(crashy_out, "a1");
    publish_and_wait(crashy_out, "a2");
    int pid1 = 0, pid2 = 0;
    crashy_calls("a2", &pid1);
    reload(2);
    publish_and_wait(crashy_out, "b1");
    crashy_calls("b1", &pid2);
    cr_expect_eq(pid2, pid1, "a KEEP_STATE reload with the same file and config replaced the "
                 "child");
    char want[64];
    snprintf(want, sizeof want, "call b1 1 %d 3 ", pid1);
    cr_expect(file_has_line(crashy_out, want), "the state's call count did not carry over");
    cr_expect(!file_has_line(crashy_out, "fini "), "fini ran although the state was kept");
}

Test(e2e_isolation, a_new_generation_gets_its_own_child_and_the_old_one_is_finalised)
{
    start_host(NULL);
    publish_and_wait(crashy_out, "a1");
    int pid1 = 0;
    crashy_calls("a1", &pid1);
    char out2[600];
    fx_path(&E.fx, "crashy-2.txt", out2, sizeof out2);
    plugins_with("process", out2, NULL); /* another config: init runs again */
    reload(2);
    publish_and_wait(out2, "b1");
    int pid2 = 0;
    crashy_calls_in(out2, "b1", &pid2);
    cr_expect_neq(pid2, pid1, "the new generation reused the old child");
    cr_expect_neq(pid2, (int)E.fx.d.pid);
    /* the old child ran fini() (with its own count) once its generation drained */
    char want[64];
    snprintf(want, sizeof want, "fini %d 1", pid1);
    line_q_t q = {crashy_out, want};
    cr_expect(harness_wait_until(line_there, &q, 15000), "the old child's fini never ran");
    cr_expect(harness_wait_until(gone, &pid1, 10000), "the old child is still running");
}

Test(e2e_isolation, an_init_that_crashes_in_the_child_is_a_config_error)
{
    e2e_host_conf(&E, NULL);
    plugins_with("process", crashy_out, "init_crash: true");
    char *bin = harness_build_path("host/daemon/evbusd");
    char *argv[] = {bin, "-c", E.fx.conf, "--check-config", NULL};
    char *out = NULL, *err = NULL;
    int rc = harness_run(argv, NULL, NULL, &out, &err, 30000);
    cr_expect_eq(rc, 2, "stderr: %s", err ? err : "");
    cr_expect(err && strstr(err, "10-plugins.yaml:5:13: instance 'crashy'") &&
                  strstr(err, "SIGABRT") && strstr(err, "during init"),
              "stderr: %s", err ? err : "");
    free(out);
    free(err);
    free(bin);
}

Test(e2e_isolation, a_reload_whose_init_crashes_keeps_the_serving_generation)
{
    start_host(NULL);
    publish_and_wait(crashy_out, "a1");
    int pid1 = 0;
    crashy_calls("a1", &pid1);
    plugins_with("process", crashy_out, "init_crash: true");
    kill(E.fx.d.pid, SIGHUP);
    cr_assert(fx_wait_log(&E.fx, "during init", 15000), "no init failure in %s", E.fx.log);
    publish_and_wait(crashy_out, "b1");
    int pid2 = 0;
    crashy_calls("b1", &pid2);
    cr_expect_eq(pid2, pid1, "the serving generation's child changed");
    cr_expect_eq(kill(E.fx.d.pid, 0), 0, "evbusd is gone");
}

/* Events whose only handler is the isolated one travel to the child
 * together (dctx_dispatch_chunk): a crash inside such a batch still fails
 * only its own delivery, and the calls after it run in the next child. */
Test(e2e_isolation, a_crash_inside_a_batch_fails_only_its_delivery)
{
    start_host(NULL);
    /* one MULTI so that evbusd reads them in one chunk */
    redisContext *c = harness_redis_connect(&E.fx.redis);
    cr_assert(c);
    redisAppendCommand(c, "MULTI");
    for (int i = 0; i < 40; i++) {
        char id[32];
        snprintf(id, sizeof id, "solo-%d", i);
        char *ev = e2e_event(id, "test.solo.happened", "acme",
                             i == 17 ? "{\"crash\":\"abort\"}" : "{}", NULL);
        redisAppendCommand(c, "XADD t:events * event %s", ev);
        free(ev);
    }
    redisAppendCommand(c, "EXEC");
    for (int i = 0; i < 42; i++) {
        redisReply *r = NULL;
        cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK);
        freeReplyObject(r);
    }
    redisFree(c);
    dlq_q_t dq = {"solo-17"};
    cr_assert(harness_wait_until(has_dead_letter, &dq, 60000),
              "the crashing event was never dead-lettered (log %s)", E.fx.log);
    char *err = dlq_error("solo-17");
    cr_expect(strstr(err, "SIGABRT") && strstr(err, "crashy/main"), "dead letter: %s", err);
    free(err);
    cr_expect_eq(crashy_calls("solo-17", NULL), 4);
    for (int i = 0; i < 40; i++) {
        char id[32];
        snprintf(id, sizeof id, "solo-%d", i);
        if (i == 17)
            continue;
        calls_q_t q = {id, 1};
        cr_expect(harness_wait_until(crashy_has, &q, 10000), "crashy missed %s", id);
        /* answered before the crash (the progress page kept the outcome) or
         * run by the next child: never twice */
        cr_expect_eq(crashy_calls(id, NULL), 1, "%s was called %zu times", id,
                     crashy_calls(id, NULL));
        char *e = dlq_error(id);
        cr_expect_str_empty(e, "%s was dead-lettered: %s", id, e);
        free(e);
    }
    cr_assert(fx_wait_drained(&E.fx, 10000), "entries left pending");
    cr_expect_eq(kill(E.fx.d.pid, 0), 0, "evbusd is gone");
}

/* The host upcasts for an isolated subscription as for any other: the
 * child sees the data at the version the subscription takes (a v1 event
 * upcast to v2 by testkit's upcaster in evbusd; a v2 event as it is). */
Test(e2e_isolation, an_isolated_handler_gets_the_data_at_its_version)
{
    e2e_host_conf(&E, NULL);
    char buf[2048];
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: rec\n"
             "    plugin: %s\n"
             "    isolation: process\n"
             "    config: { out: %s }\n"
             "    subscriptions:\n"
             "      - { pattern: \"approval.**\", handler: record, versions: [2] }\n",
             fx_plugin("plugins/testkit/testkit.so"), E.rec);
    e2e_conf_file(&E, "10-plugins.yaml", buf);
    e2e_evbusd(&E, 0);
    cr_assert(e2e_wait_healthy(&E, 15000), "evbusd did not come up (log %s)", E.fx.log);
    char *v1 = e2e_event("old-1", "approval.item.approved", "acme", E2E_APPROVED_V1,
                         "\"schemaversion\":1");
    cr_assert_eq(e2e_xadd(&E, "*", v1, NULL), 0);
    free(v1);
    char *data = e2e_approved_v2(7);
    char *v2 = e2e_event("new-1", "approval.item.approved", "acme", data, "\"schemaversion\":2");
    cr_assert_eq(e2e_xadd(&E, "*", v2, NULL), 0);
    free(v2);
    free(data);
    cr_assert(harness_wait_until(rec_has, "old-1", 10000), "old-1 never reached the child");
    cr_assert(harness_wait_until(rec_has, "new-1", 10000), "new-1 never reached the child");
    char *line = e2e_rec_line(&E, "old-1", 0);
    cr_expect(line && strstr(line, "\told-1\tapproval.item.approved\t0\t2\t") &&
                  strstr(line, "\"decidedBy\"") && !strstr(line, "\"approverId\""),
              "v1 not delivered upcast to v2: %s", line ? line : "(none)");
    free(line);
    line = e2e_rec_line(&E, "new-1", 0);
    cr_expect(line && strstr(line, "\tnew-1\tapproval.item.approved\t0\t2\t"),
              "v2 delivery: %s", line ? line : "(none)");
    free(line);
    cr_assert(fx_wait_drained(&E.fx, 10000), "entries left pending");
}

/* With an isolated instance in the generation, dispatch parses each entry
 * of a chunk once, learns its facts, makes the isolated calls ahead and
 * then goes on from those facts (core/dispatch.h).  Every verdict must be
 * the one an entry gets alone: in one chunk, an envelope without tenantid
 * and a payload that fails its schema are dead-lettered without reaching
 * the child, valid events reach it once each, and an event only an
 * in-process handler takes runs there. */
Test(e2e_isolation, a_chunk_planned_ahead_keeps_every_verdict)
{
    e2e_host_conf(&E, NULL);
    char buf[2048];
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: rec\n"
             "    plugin: %s\n"
             "    isolation: process\n"
             "    config: { out: %s }\n"
             "    subscriptions:\n"
             "      - { pattern: \"approval.**\", handler: record }\n"
             "  - name: crashy\n"
             "    plugin: %s\n"
             "    config: { out: %s }\n"
             "    subscriptions:\n"
             "      - { pattern: \"test.**\" }\n",
             fx_plugin("plugins/testkit/testkit.so"), E.rec,
             fx_plugin("plugins/testkit/crashy.so"), crashy_out);
    e2e_conf_file(&E, "10-plugins.yaml", buf);
    e2e_evbusd(&E, 0);
    cr_assert(e2e_wait_healthy(&E, 15000), "evbusd did not come up (log %s)", E.fx.log);
    char *data = e2e_approved_v2(3);
    char *ok1 = e2e_event("ok-1", "approval.item.approved", "acme", data, "\"schemaversion\":2");
    char *ok2 = e2e_event("ok-2", "approval.item.approved", "acme", data, "\"schemaversion\":2");
    char *bad_data =
        e2e_event("bad-data", "approval.item.approved", "acme", "{}", "\"schemaversion\":2");
    char *t1 = e2e_event("t-1", TYPE, "acme", "{}", NULL);
    const char *bad_env = "{\"specversion\":\"1.0\",\"id\":\"bad-env\",\"source\":\"/t\","
                          "\"type\":\"approval.item.approved\",\"time\":\"2026-01-01T00:00:00Z\","
                          "\"data\":{}}";
    const char *all[] = {ok1, bad_env, bad_data, t1, ok2};
    /* one MULTI so that evbusd reads them in one chunk */
    redisContext *c = harness_redis_connect(&E.fx.redis);
    cr_assert(c);
    redisAppendCommand(c, "MULTI");
    for (size_t i = 0; i < 5; i++)
        redisAppendCommand(c, "XADD t:events * event %s", all[i]);
    redisAppendCommand(c, "EXEC");
    for (int i = 0; i < 7; i++) {
        redisReply *r = NULL;
        cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK);
        freeReplyObject(r);
    }
    redisFree(c);
    free(ok1);
    free(ok2);
    free(bad_data);
    free(t1);
    free(data);
    cr_assert(harness_wait_until(rec_has, "ok-2", 20000), "ok-2 never reached the child");
    cr_assert(fx_wait_drained(&E.fx, 15000), "entries left pending (log %s)", E.fx.log);
    cr_expect_eq(e2e_rec_calls(&E, "ok-1", -1), 1);
    cr_expect_eq(e2e_rec_calls(&E, "ok-2", -1), 1);
    cr_expect_eq(e2e_rec_calls(&E, "bad-env", -1), 0, "an invalid envelope reached the child");
    cr_expect_eq(e2e_rec_calls(&E, "bad-data", -1), 0, "an invalid payload reached the child");
    dlq_q_t dq = {"bad-env"};
    cr_assert(harness_wait_until(has_dead_letter, &dq, 10000), "bad-env not dead-lettered");
    char *err = dlq_error("bad-env");
    cr_expect(strstr(err, "tenantid"), "bad-env's dead letter: %s", err);
    free(err);
    err = dlq_error("bad-data");
    cr_expect(err[0] && strstr(err, "/data"), "bad-data's dead letter: %s", err);
    free(err);
    calls_q_t q = {"t-1", 1};
    cr_expect(harness_wait_until(crashy_has, &q, 10000), "the in-process handler missed t-1");
    cr_expect_eq(crashy_calls("t-1", NULL), 1);
    err = dlq_error("ok-1");
    cr_expect_str_empty(err, "ok-1 was dead-lettered: %s", err);
    free(err);
}
