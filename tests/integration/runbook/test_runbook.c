/*
 * The runbook runs: every command in the `sh` blocks of docs/operations.md's
 * runbook, read from the markdown at test time, is run against a live
 * evbusd brought into the incident its procedure is for — Redis stopped for
 * "Redis is down", dead letters in the DLQ for "The DLQ is filling" — with
 * its placeholders filled in, and its exit status and a key part of its
 * output checked.
 *
 * Each procedure below lists, in order, the commands it expects with what
 * each must do; the runbook must say exactly these (compared after
 * runbook_normalise).  A command in the runbook that no procedure here
 * knows fails the test, and so does a procedure here whose command left
 * the runbook: the two are edited together.
 *
 * Commands run through /bin/sh with EVBUS_CONF_DIR naming the incident's
 * conf.d and the build's evbusctl and evbusd first on PATH.  The one
 * command that needs a machine's supervisor, `systemctl restart evbusd`,
 * is mirrored: the test does what the installed unit does (SIGTERM, wait
 * for the exit, start again).  Real redis-server and PostgreSQL on free
 * ports (tests/support), the chaos and testkit plugins as handlers.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e.h"
#include "runbook.h"

/* ---- the fixture --------------------------------------------------------- */

typedef struct rb {
    e2e_t e;
    bool started;
    runbook_t doc;
    runbook_vars_t vars;
    char conf_env[700], path_env[4096], token_env[128];
    char entry[64]; /* the stream id of the last event published */
} rb_t;

static rb_t RB;

typedef struct step {
    const char *cmd;         /* the runbook's line, normalised */
    int status;              /* its exit status */
    const char *says[2];     /* each in its stdout or stderr (placeholders filled in) */
    const char *absent;      /* in neither, or NULL */
    void (*before)(void);    /* brings the incident to this point, or NULL */
    int (*run)(void);        /* the mirror of a command sh cannot run here, or NULL */
    void (*after)(void);     /* checks what the command did, or NULL */
} step_t;

typedef struct procedure {
    const char *title; /* the ### heading */
    const step_t *steps;
    size_t n;
} procedure_t;

static void load_runbook(void)
{
    memset(&RB, 0, sizeof RB);
    char *path = harness_source_path("docs/operations.md"), err[512];
    cr_assert_eq(runbook_load(path, &RB.doc, err, sizeof err), 0, "%s", err);
    free(path);
}

static void cleanup(void)
{
    if (RB.started)
        e2e_stop(&RB.e);
    runbook_free(&RB.doc);
    runbook_vars_free(&RB.vars);
}

TestSuite(runbook, .init = load_runbook, .fini = cleanup, .timeout = 180);

static void set_var(const char *name, const char *value) { runbook_var_set(&RB.vars, name, value); }

/* Redis (and PostgreSQL) up, conf.d written with `extra` host settings;
 * the placeholders every incident has. */
static void start_servers(bool pg, const char *extra)
{
    e2e_start(&RB.e, false, pg);
    RB.started = true;
    e2e_host_conf(&RB.e, extra);
    snprintf(RB.conf_env, sizeof RB.conf_env, "EVBUS_CONF_DIR=%s", RB.e.fx.conf);
    char *ctl = harness_build_path("host/ctl"), *d = harness_build_path("host/daemon");
    const char *path = getenv("PATH");
    snprintf(RB.path_env, sizeof RB.path_env, "PATH=%s:%s:%s", ctl, d,
             path ? path : "/usr/bin:/bin");
    free(ctl);
    free(d);
    set_var("CONF_DIR", RB.e.fx.conf);
    set_var("STATE_DIR", RB.e.fx.state);
    set_var("REDIS_URL", RB.e.fx.redis.url);
    set_var("STREAM", "t:events");
    if (pg)
        set_var("POSTGRES_URL", RB.e.pg.url);
}

static json_t *health(void)
{
    int code;
    char *body = e2e_http_get(RB.e.admin_port, "/health", &code);
    json_t *h = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    return h;
}

/* The health document's value at "a.b" as text ("" when absent). */
static bool health_is(const char *path, const char *want)
{
    json_t *h = health(), *v = h;
    char key[128];
    for (const char *p = path; v && *p;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        snprintf(key, sizeof key, "%.*s", (int)n, p);
        v = json_object_get(v, key);
        p += n + (dot ? 1 : 0);
    }
    char got[128] = "";
    if (json_is_string(v))
        snprintf(got, sizeof got, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(got, sizeof got, "%lld", (long long)json_integer_value(v));
    else if (json_is_boolean(v))
        snprintf(got, sizeof got, "%s", json_is_true(v) ? "true" : "false");
    json_decref(h);
    return strcmp(got, want) == 0;
}

static void wait_health(const char *path, const char *want, int timeout_ms)
{
    long long end = harness_now_ms() + timeout_ms;
    while (!health_is(path, want) && harness_now_ms() < end)
        e2e_sleep_ms(50);
    cr_assert(health_is(path, want), "/health %s never became %s (log %s)", path, want,
              RB.e.fx.log);
}

/* Start evbusd and wait until it answers; EVBUSD_PID follows it. */
static void start_evbusd(void)
{
    e2e_evbusd(&RB.e, 0);
    cr_assert(e2e_wait_healthy(&RB.e, 20000), "evbusd did not come up (log %s)", RB.e.fx.log);
    char pid[32];
    snprintf(pid, sizeof pid, "%ld", (long)RB.e.fx.d.pid);
    set_var("EVBUSD_PID", pid);
}

/* A reload by SIGHUP, as a deploy tool would send it; waits for its outcome. */
static void sighup_and_wait(const char *status)
{
    json_t *h = health();
    json_t *r = json_object_get(h, "reload");
    long long before = json_integer_value(json_object_get(r, "ok_total")) +
                       json_integer_value(json_object_get(r, "failed_total")) +
                       json_integer_value(json_object_get(r, "partial_total"));
    json_decref(h);
    kill(RB.e.fx.d.pid, SIGHUP);
    long long end = harness_now_ms() + 20000, now = before;
    while (now == before && harness_now_ms() < end) {
        e2e_sleep_ms(50);
        h = health();
        r = json_object_get(h, "reload");
        now = json_integer_value(json_object_get(r, "ok_total")) +
              json_integer_value(json_object_get(r, "failed_total")) +
              json_integer_value(json_object_get(r, "partial_total"));
        json_decref(h);
    }
    cr_assert_neq(now, before, "the reload never finished (log %s)", RB.e.fx.log);
    wait_health("reload.status", status, 1000);
}

/* XADD one event; its stream id goes to RB.entry. */
static void publish(const char *id, const char *type, const char *tenant, const char *data)
{
    char *ev = e2e_event(id, type, tenant, data, NULL);
    cr_assert_eq(e2e_xadd(&RB.e, "*", ev, RB.entry), 0);
    free(ev);
}

/* The newest entry's id of the DLQ with this reason, or "" */
static void newest_dead_letter(const char *reason, char out[64])
{
    out[0] = '\0';
    redisContext *c = harness_redis_connect(&RB.e.fx.redis);
    cr_assert_not_null(c);
    redisReply *r = redisCommand(c, "XREVRANGE t:events:dlq + -");
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements && !out[0]; i++) {
        redisReply *fv = r->element[i]->element[1];
        for (size_t k = 0; k + 1 < fv->elements; k += 2)
            if (!strcmp(fv->element[k]->str, "reason") && !strcmp(fv->element[k + 1]->str, reason))
                snprintf(out, 64, "%s", r->element[i]->element[0]->str);
    }
    if (r)
        freeReplyObject(r);
    redisFree(c);
}

static void wait_xlen(const char *key, long long n, int timeout_ms)
{
    long long end = harness_now_ms() + timeout_ms;
    while (fx_xlen(&RB.e.fx, key) != n && harness_now_ms() < end)
        e2e_sleep_ms(20);
    cr_assert_eq(fx_xlen(&RB.e.fx, key), n, "%s: XLEN %lld, want %lld (log %s)", key,
                 fx_xlen(&RB.e.fx, key), n, RB.e.fx.log);
}

/* The log line the runbook quotes is there. */
static void log_says(const char *s)
{
    cr_expect(fx_wait_log(&RB.e.fx, s, 5000), "the log never says \"%s\" (%s)", s, RB.e.fx.log);
}

static void wait_rec_lines(size_t n)
{
    cr_assert(fx_wait_lines(RB.e.rec, n, 20000), "the handler saw %zu events, want %zu (log %s)",
              harness_count_lines(RB.e.rec), n, RB.e.fx.log);
}

/* `systemctl restart evbusd` without systemd: what evbusd.service does —
 * SIGTERM, wait for the exit (TimeoutStopSec 30 s), start again.  Returns
 * the stop's exit status. */
static int systemctl_restart(void)
{
    int st = harness_kill(&RB.e.fx.d, SIGTERM, 30000);
    start_evbusd();
    return st;
}

/* ---- running a procedure ------------------------------------------------- */

/* The runbook's commands of `p` are exactly the test's, in order. */
static void check_mirror(const procedure_t *p)
{
    const runbook_proc_t *doc = runbook_find(&RB.doc, p->title);
    cr_assert_not_null(doc, "the runbook has no procedure \"### %s\"", p->title);
    for (size_t i = 0; i < doc->n_cmds || i < p->n; i++) {
        cr_assert(i < p->n, "\"%s\": no test runs the runbook's command `%s`: add it to the "
                            "procedure in %s", p->title, doc->cmds[i], __FILE__);
        cr_assert(i < doc->n_cmds, "\"%s\": the test runs `%s`, which the runbook no longer "
                                   "says", p->title, p->steps[i].cmd);
        cr_assert_str_eq(doc->cmds[i], p->steps[i].cmd,
                         "\"%s\", command %zu: the runbook says `%s`, the test knows `%s`",
                         p->title, i + 1, doc->cmds[i], p->steps[i].cmd);
    }
}

static void run_step(const procedure_t *p, const step_t *s)
{
    char err[256];
    char *cmd = runbook_fill(s->cmd, &RB.vars, err, sizeof err);
    cr_assert_not_null(cmd, "\"%s\": `%s`: %s", p->title, s->cmd, err);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    char *envp[] = {RB.conf_env, RB.path_env, RB.token_env[0] ? RB.token_env : NULL, NULL};
    char *out = NULL, *errs = NULL;
    int st = harness_run(argv, envp, NULL, &out, &errs, 60000);
    cr_log_info("runbook: %s: `%s` exited %d", p->title, cmd, st);
    cr_assert_eq(st, s->status,
                 "\"%s\": `%s` exited %d, the runbook says %d\nstdout:\n%s\nstderr:\n%s\n"
                 "(evbusd log %s)", p->title, cmd, st, s->status, out, errs, RB.e.fx.log);
    const char *checks[3] = {s->says[0], s->says[1], s->absent};
    for (int k = 0; k < 3; k++) {
        if (!checks[k])
            continue;
        char *want = runbook_fill(checks[k], &RB.vars, err, sizeof err);
        cr_assert_not_null(want, "%s", err);
        bool found = strstr(out, want) || strstr(errs, want);
        cr_assert(found == (k < 2), "\"%s\": `%s` %s \"%s\"\nstdout:\n%s\nstderr:\n%s",
                  p->title, cmd, k < 2 ? "does not say" : "still says", want, out, errs);
        free(want);
    }
    free(out);
    free(errs);
    free(cmd);
}

static void run_procedure(const procedure_t *p)
{
    check_mirror(p);
    for (size_t i = 0; i < p->n; i++) {
        const step_t *s = &p->steps[i];
        if (s->before)
            s->before();
        if (s->run) {
            int st = s->run();
            cr_assert_eq(st, s->status, "\"%s\": `%s` ended with %d, the runbook says %d",
                         p->title, s->cmd, st, s->status);
        } else {
            run_step(p, s);
        }
        if (s->after)
            s->after();
    }
}

#define PROCEDURE(title, steps) {title, steps, sizeof steps / sizeof steps[0]}

/* ---- The consumer falls behind ------------------------------------------- */

static void some_read(void)
{
    for (int i = 0; i < 500 && fx_pending(&RB.e.fx) <= 0; i++)
        e2e_sleep_ms(20);
    cr_assert_gt(fx_pending(&RB.e.fx), 0, "evbusd read nothing (log %s)", RB.e.fx.log);
}

static const step_t FALLS_BEHIND[] = {
    {.cmd = "redis-cli -u <REDIS_URL> XINFO GROUPS <STREAM>", .says = {"lag", "pending"},
     .before = some_read},
    {.cmd = "evbusctl status", .says = {"in host:"}},
    {.cmd = "top -H -b -n 1 -w 512 -p <EVBUSD_PID>", .says = {"evbus-reader", "evbus-work0"}},
};
static const procedure_t FALLS_BEHIND_PROC = PROCEDURE("The consumer falls behind", FALLS_BEHIND);

Test(runbook, the_consumer_falls_behind)
{
    start_servers(false, NULL);
    e2e_plugins(&RB.e, "{ pattern: \"order.**\" }", NULL);
    start_evbusd();
    fx_publish(&RB.e.fx, "slow", 30, "order.created", "acme", "{\"fault\":\"sleep:100\",\"i\":%d}");
    run_procedure(&FALLS_BEHIND_PROC);
}

/* ---- Redis is down ------------------------------------------------------- */

static void redis_stops(void)
{
    harness_redis_stop(&RB.e.fx.redis);
    wait_health("status", "unhealthy", 15000);
    /* publishers get errors meanwhile */
    cr_expect_eq(e2e_ctl(&RB.e, NULL, NULL, "publish", "--type", "order.created", "--tenant",
                         "acme", "--data", "{}", NULL), 1);
}

static void redis_returns(void)
{
    cr_assert_eq(harness_redis_start_again(&RB.e.fx.redis), 0);
}

static void resumed(void)
{
    wait_health("status", "ok", 10000);
    log_says("reconnected to Redis after ");
}

static const step_t REDIS_DOWN[] = {
    {.cmd = "evbusctl status", .status = 1,
     .says = {"status:       unhealthy", "redis:        UNREACHABLE"}, .before = redis_stops},
    {.cmd = "redis-cli -u <REDIS_URL> ping", .says = {"PONG"}, .before = redis_returns},
    {.cmd = "evbusctl status", .says = {"status:       ok", "redis:        ok"},
     .before = resumed},
};
static const procedure_t REDIS_DOWN_PROC = PROCEDURE("Redis is down", REDIS_DOWN);

Test(runbook, redis_is_down)
{
    start_servers(false, "health: { unhealthy_after: 1s }\n");
    e2e_plugins(&RB.e, NULL, "{ pattern: \"order.**\" }");
    start_evbusd();
    run_procedure(&REDIS_DOWN_PROC);
    log_says("WARN  [redis] connect to ");
}

/* ---- PostgreSQL: its disk, replays, an outage ---------------------------- */

static void metadata_written(void)
{
    wait_rec_lines(3);
    cr_assert(e2e_wait_event_status(&RB.e, "pg-2", "COMPLETED", 20000, NULL),
              "no metadata (log %s)", RB.e.fx.log);
}

static const step_t PG_DISK[] = {
    {.cmd = "psql <POSTGRES_URL> -c '\\d+ events'", .says = {"events_p", "Partition key"},
     .before = metadata_written},
    {.cmd = "psql <POSTGRES_URL> -c 'SELECT * FROM events_expired ORDER BY dropped_at DESC "
            "LIMIT 5'",
     .says = {"dropped_at"}},
    {.cmd = "evbusctl migrate status", .says = {"0006  ", "0 pending"}},
    {.cmd = "evbusctl migrate up", .says = {"0 migration(s) applied, schema up to date"}},
};
static const procedure_t PG_DISK_PROC = PROCEDURE("PostgreSQL's disk keeps growing", PG_DISK);

static void replayed(void)
{
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "pg-%d", i);
        cr_expect_eq(e2e_rec_calls(&RB.e, id, 1), 1, "%s replayed %zu times", id,
                     e2e_rec_calls(&RB.e, id, 1));
    }
}

static const step_t REPLAY[] = {
    {.cmd = "evbusctl replay start --from <FROM> --to <TO> --type '<TYPE>' --rate 500 --wait",
     .says = {"completed"}, .after = replayed},
    {.cmd = "evbusctl replay list", .says = {"completed"}},
};
static const procedure_t REPLAY_PROC = PROCEDURE("Replaying safely", REPLAY);

static void newest_job(void)
{
    json_t *j = NULL;
    cr_assert_eq(e2e_ctl_json(&RB.e, &j, "replay", "list", "--json", NULL), 0);
    json_t *first = json_is_array(j) ? json_array_get(j, 0)
                                     : json_array_get(json_object_get(j, "jobs"), 0);
    const char *id = json_string_value(json_object_get(first, "id"));
    cr_assert_not_null(id, "no replay job listed");
    set_var("JOB_ID", id);
    json_decref(j);
}

static const step_t REPLAY_HOST_GONE[] = {
    {.cmd = "evbusctl replay status <JOB_ID>", .says = {"position:", "heartbeat:"},
     .before = newest_job},
};
static const procedure_t REPLAY_HOST_GONE_PROC =
    PROCEDURE("A replay job whose host went away", REPLAY_HOST_GONE);

static void pg_stops(void)
{
    cr_assert_eq(harness_pg_stop_keep(&RB.e.pg), 0);
    wait_health("postgres.connected", "false", 15000);
    log_says("metadata writer: PostgreSQL unreachable: ");
}

static void pg_returns(void)
{
    cr_assert_eq(harness_pg_start_again(&RB.e.pg), 0);
    wait_health("postgres.connected", "true", 15000);
    log_says("metadata writer reconnected to PostgreSQL; errors cleared");
}

static const step_t PG_DOWN[] = {
    {.cmd = "evbusctl status", .says = {"status:       degraded", "postgres:     UNREACHABLE"},
     .before = pg_stops},
    {.cmd = "evbusctl migrate status", .status = 1},
    {.cmd = "evbusctl status", .says = {"postgres:     connected"}, .before = pg_returns},
};
static const procedure_t PG_DOWN_PROC = PROCEDURE("PostgreSQL is down", PG_DOWN);

/* Every metric the runbook names is one evbusd exports. */
static void runbook_metrics_exist(void)
{
    char *path = harness_source_path("docs/operations.md");
    char *doc = harness_read_file(path);
    free(path);
    cr_assert_not_null(doc);
    char *start = strstr(doc, "\n## Runbook\n");
    cr_assert_not_null(start);
    char *end = strstr(start + 1, "\n## ");
    if (end)
        *end = '\0';
    int code;
    char *metrics = e2e_http_get(RB.e.admin_port, "/metrics", &code);
    cr_assert_not_null(metrics);
    for (char *p = strstr(start, "evbus_"); p; p = strstr(p + 1, "evbus_")) {
        size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz_");
        if (p > start && (p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z')))
            continue; /* inside another word */
        char name[128];
        snprintf(name, sizeof name, "\n%.*s", (int)n, p);
        char *hit = strstr(metrics, name);
        char after = hit ? hit[strlen(name)] : '\0';
        cr_expect(hit && (after == ' ' || after == '{'), "the runbook names %s, which "
                  "/metrics does not have", name + 1);
    }
    free(metrics);
    free(doc);
}

Test(runbook, postgresql_disk_replays_and_an_outage)
{
    start_servers(true, NULL);
    e2e_plugins(&RB.e, NULL, "{ pattern: \"order.**\" }");
    start_evbusd();
    char t[40];
    e2e_rfc3339(e2e_epoch_ms() - 1000, t);
    set_var("FROM", t);
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "pg-%d", i);
        publish(id, "order.created", "acme", "{\"i\":1}");
    }
    e2e_rfc3339(e2e_epoch_ms() + 1000, t);
    set_var("TO", t);
    set_var("TYPE", "order.**");
    run_procedure(&PG_DISK_PROC);
    run_procedure(&REPLAY_PROC);
    run_procedure(&REPLAY_HOST_GONE_PROC);
    run_procedure(&PG_DOWN_PROC);
    runbook_metrics_exist();
}

/* ---- A handler is slow or stuck ------------------------------------------ */

static void stuck(void)
{
    wait_health("inhost.workers_over_timeout", "1", 15000);
    log_says(": handler chaos/main has been running for ");
}

static void no_longer_pending(void)
{
    cr_assert_eq(fx_pending(&RB.e.fx), 0);
    cr_assert_eq(fx_xlen(&RB.e.fx, "t:events:dlq"), 1);
}

static const step_t SLOW[] = {
    {.cmd = "evbusctl status", .says = {"status:       degraded", "in <HANDLER> for"},
     .before = stuck},
    {.cmd = "evbusctl pending list", .says = {"<ENTRY_ID>"}},
    {.cmd = "evbusctl pending quarantine <ENTRY_ID> --reason \"stuck in <HANDLER>\"",
     .says = {"quarantined as dead letter"}, .after = no_longer_pending},
    /* the stuck call holds the stop for shutdown_timeout_ms, then it exits 1 */
    {.cmd = "systemctl restart evbusd", .status = 1, .run = systemctl_restart},
    {.cmd = "evbusctl status", .says = {"status:       ok"}, .absent = "stuck:"},
};
static const procedure_t SLOW_PROC = PROCEDURE("A handler is slow or stuck", SLOW);

Test(runbook, a_handler_is_slow_or_stuck)
{
    start_servers(false, NULL);
    e2e_conf_file(&RB.e, "05-stop.yaml", "shutdown_timeout_ms: 1000\n");
    e2e_plugins(&RB.e, "{ pattern: \"order.**\", timeout_ms: 300 }", NULL);
    start_evbusd();
    publish("stuck-1", "order.created", "acme", "{\"fault\":\"sleep:60000\"}");
    set_var("ENTRY_ID", RB.entry);
    set_var("HANDLER", "chaos/main");
    run_procedure(&SLOW_PROC);
}

/* ---- A handler's downstream is down -------------------------------------- */

static bool rec_paused_here(void)
{
    json_t *h = health();
    bool has = json_object_get(json_object_get(h, "paused"), "rec") != NULL;
    json_decref(h);
    return has;
}

static long long parked(void)
{
    return e2e_redis_int(&RB.e, "ZCOUNT t:events:retry 1000000000000000 +inf");
}

/* The host enforces the pause; events then arrive and wait for rec. */
static void events_wait_for_it(void)
{
    long long end = harness_now_ms() + 5000;
    while (!rec_paused_here() && harness_now_ms() < end)
        e2e_sleep_ms(50);
    cr_assert(rec_paused_here(), "evbusd never held rec paused (log %s)", RB.e.fx.log);
    for (int i = 0; i < 3; i++) {
        char id[32];
        snprintf(id, sizeof id, "down-%d", i);
        publish(id, "order.created", "acme", "{}");
    }
    end = harness_now_ms() + 10000;
    while (parked() != 3 && harness_now_ms() < end)
        e2e_sleep_ms(50);
    cr_assert_eq(parked(), 3, "deliveries waiting for rec (log %s)", RB.e.fx.log);
    cr_assert(fx_wait_lines(RB.e.calls, 3, 10000), "the other handler stopped too");
    cr_assert_eq(harness_count_lines(RB.e.rec), 0, "a paused handler was called");
}

static void each_delivered_once(void)
{
    wait_rec_lines(3);
    for (int i = 0; i < 3; i++) {
        char id[32];
        snprintf(id, sizeof id, "down-%d", i);
        cr_expect_eq(e2e_rec_calls(&RB.e, id, -1), 1, "%s reached rec %zu times", id,
                     e2e_rec_calls(&RB.e, id, -1));
    }
    cr_expect_eq(parked(), 0);
}

static const step_t DOWNSTREAM[] = {
    {.cmd = "evbusctl handlers pause <INSTANCE> --reason \"downstream down\"",
     .says = {"<INSTANCE> is now paused"}},
    {.cmd = "evbusctl handlers list", .says = {"paused since", "downstream down"},
     .before = events_wait_for_it},
    {.cmd = "evbusctl status", .says = {"paused:", "  <INSTANCE> "}},
    {.cmd = "evbusctl handlers resume <INSTANCE>", .says = {"<INSTANCE> resumed"},
     .after = each_delivered_once},
    {.cmd = "evbusctl handlers list", .says = {"running"}, .absent = "paused since"},
};
static const procedure_t DOWNSTREAM_PROC = PROCEDURE("A handler's downstream is down", DOWNSTREAM);

Test(runbook, a_handlers_downstream_is_down)
{
    start_servers(false, NULL);
    e2e_plugins(&RB.e, "{ pattern: \"order.**\" }", "{ pattern: \"order.**\" }");
    start_evbusd();
    set_var("INSTANCE", "rec");
    run_procedure(&DOWNSTREAM_PROC);
}

/* ---- An admin token leaked ------------------------------------------------ */

#define LEAKED "evb_runbook_leaked_token_0123456789abcdef"

static void tokens_file(bool with_leaked)
{
    char root[72], leaked[72], yaml[1024];
    harness_token_hash(HARNESS_ADMIN_TOKEN, root);
    harness_token_hash(LEAKED, leaked);
    int n = snprintf(yaml, sizeof yaml,
                     "admin:\n  tokens:\n"
                     "    - { name: root, hash: \"%s\", roles: [admin], tenant: \"*\" }\n", root);
    if (with_leaked)
        snprintf(yaml + n, sizeof yaml - (size_t)n,
                 "    - { name: ci-bot, hash: \"%s\", roles: [operator], tenant: \"*\" }\n",
                 leaked);
    fx_conf(&RB.e.fx, "20-tokens.yaml", yaml);
}

/* The operator edits conf.d: the leaked entry's line goes. */
static void leaked_line_removed(void) { tokens_file(false); }

static const step_t LEAKED_STEPS[] = {
    {.cmd = "evbusctl token create --name <NEW_NAME> --role operator --tenant '*'",
     .says = {"name: <NEW_NAME>, hash: \"sha256:"}},
    {.cmd = "evbusctl reload", .says = {"reload ok"}, .before = leaked_line_removed},
    {.cmd = "curl -s -o /dev/null -w '%{http_code}\\n' -H 'Authorization: Bearer "
            "<LEAKED_TOKEN>' http://<ADMIN>/api/v1/config",
     .says = {"401"}},
    {.cmd = "curl -s -H \"Authorization: Bearer $EVBUS_TOKEN\" "
            "'http://<ADMIN>/api/v1/audit?limit=500' | grep -o "
            "'\"token\":\"<LEAKED_NAME>\"[^}]*'",
     .says = {"\"action\":\"handlers.pause\"", "\"target\":\"rec\""}},
};
static const procedure_t LEAKED_PROC = PROCEDURE("An admin token leaked", LEAKED_STEPS);

Test(runbook, an_admin_token_leaked)
{
    start_servers(false, NULL);
    e2e_plugins(&RB.e, NULL, "{ pattern: \"order.**\" }");
    tokens_file(true);
    start_evbusd();
    /* what the leaked token did while it was out */
    int st;
    char *b = harness_http(RB.e.admin_port, "POST", "/api/v1/handlers/rec/pause", LEAKED, NULL,
                           NULL, &st, NULL);
    cr_assert_eq(st, 200, "pause with the leaked token: %d %s", st, b ? b : "");
    free(b);
    char admin[64];
    snprintf(admin, sizeof admin, "127.0.0.1:%d", RB.e.admin_port);
    set_var("ADMIN", admin);
    set_var("LEAKED_TOKEN", LEAKED);
    set_var("LEAKED_NAME", "ci-bot");
    set_var("NEW_NAME", "ci-bot-2");
    snprintf(RB.token_env, sizeof RB.token_env, "EVBUS_TOKEN=%s", HARNESS_ADMIN_TOKEN);
    run_procedure(&LEAKED_PROC);
}

/* ---- A crashing plugin, a poison pill ------------------------------------ */

static void supervisor_starts_it(void)
{
    start_evbusd();
}

/* The plugin is fixed: here, the instance that crashed is replaced by one
 * that records, as a deploy of a new .so and a reload would. */
static void plugin_fixed(void)
{
    e2e_plugins(&RB.e, NULL, "{ pattern: \"order.**\" }");
    sighup_and_wait("ok");
    char id[64];
    newest_dead_letter("quarantined", id);
    cr_assert(id[0], "no quarantined dead letter");
    set_var("DLQ_ID", id);
}

static void handled_again(void)
{
    wait_rec_lines(1);
    cr_expect_eq(e2e_rec_calls(&RB.e, "boom-1", -1), 1);
    wait_xlen("t:events:dlq", 0, 5000);
}

static const step_t CRASH[] = {
    {.cmd = "tail -n 5 <STATE_DIR>/evbusd-crashes.log", .says = {" 6 <ENTRY_ID> <HANDLER> boom-1"}},
    {.cmd = "evbusctl pending list", .says = {"<ENTRY_ID>"}},
    {.cmd = "evbusctl pending quarantine <ENTRY_ID> --reason \"crashes <HANDLER>\"",
     .says = {"quarantined as dead letter"}},
    {.cmd = "evbusctl dlq list --reason quarantined", .says = {"quarantined"},
     .before = supervisor_starts_it},
    {.cmd = "evbusctl dlq retry <DLQ_ID>", .says = {"-"}, .before = plugin_fixed,
     .after = handled_again},
};
static const procedure_t CRASH_PROC = PROCEDURE("A crashing plugin, a poison pill", CRASH);

Test(runbook, a_crashing_plugin)
{
    start_servers(false, NULL);
    e2e_plugins(&RB.e, "{ pattern: \"order.**\" }", NULL);
    publish("boom-1", "order.created", "acme", "{\"fault\":\"crash\"}");
    set_var("ENTRY_ID", RB.entry);
    set_var("HANDLER", "chaos/main");
    e2e_evbusd(&RB.e, 0);
    int st = fx_evbusd_wait(&RB.e.fx, 20000);
    cr_assert_eq(st, 128 + SIGABRT, "evbusd ended with %d, not by the crash (log %s)", st,
                 RB.e.fx.log);
    cr_assert(fx_log_has(&RB.e.fx, "FATAL [crash] signal 6 (SIGABRT) in "));
    run_procedure(&CRASH_PROC);
}

/* ---- The DLQ is filling -------------------------------------------------- */

static void dlq_warns(void)
{
    wait_health("dlq.level", "warning", 15000);
    log_says("WARN  [dlq] dead-letter stream t:events:dlq holds 10 entries");
}

static void a_rejected_one(void)
{
    char id[64];
    newest_dead_letter("reject", id);
    cr_assert(id[0]);
    set_var("DLQ_ID", id);
}

/* The handler is fixed: the rejecting instance gives way to one that records. */
static void handler_fixed(void)
{
    e2e_plugins(&RB.e, NULL, "{ pattern: \"order.**\" }");
    sighup_and_wait("ok");
}

static void all_retried(void)
{
    wait_rec_lines(6);
    cr_expect_eq(e2e_rec_calls(&RB.e, "old-0", -1), 0, "--since let an older one through");
    wait_xlen("t:events:dlq", 4, 5000);
}

static void all_purged(void)
{
    wait_xlen("t:events:dlq", 1, 1000);
    char path[700];
    fx_path(&RB.e.fx, "state/dlq-archive.jsonl", path, sizeof path);
    cr_expect_eq(harness_count_lines(path), 3);
}

static const step_t DLQ[] = {
    {.cmd = "evbusctl status", .says = {"dlq:          10 / 11 (warning)"}, .before = dlq_warns},
    {.cmd = "evbusctl dlq summary", .says = {"10 dead letters matching", "<HANDLER>"}},
    {.cmd = "evbusctl dlq list --reason reject --limit 5", .says = {"of 7; next page: --cursor"}},
    {.cmd = "evbusctl dlq show <DLQ_ID>", .says = {"<DLQ_ID>", "<HANDLER>"},
     .before = a_rejected_one},
    {.cmd = "evbusctl dlq retry --handler <HANDLER> --since <SINCE> --dry-run",
     .says = {"would retry 6 dead letters"}, .before = handler_fixed},
    {.cmd = "evbusctl dlq retry --handler <HANDLER> --since <SINCE> --limit 2",
     .says = {"retried 2 of "}},
    {.cmd = "evbusctl dlq retry --handler <HANDLER> --since <SINCE>",
     .says = {"retried 4 of 4 matching (0 failed)"}, .after = all_retried},
    {.cmd = "evbusctl dlq purge --tenant <TENANT> --type '<TYPE>' --dry-run",
     .says = {"would purge 3 dead letters"}},
    {.cmd = "evbusctl dlq purge --tenant <TENANT> --type '<TYPE>' --yes",
     .says = {"purged 3 of 3 matching (0 failed)", "archived to <STATE_DIR>/dlq-archive.jsonl"},
     .after = all_purged},
};
static const procedure_t DLQ_PROC = PROCEDURE("The DLQ is filling", DLQ);

Test(runbook, the_dlq_is_filling)
{
    start_servers(false, "dlq: { capacity: 11 }\n");
    /* chaos rejects the orders; testkit enforces the approvals' schema */
    e2e_plugins(&RB.e, "{ pattern: \"order.**\" }", "{ pattern: \"approval.**\" }");
    start_evbusd();
    /* a publisher's bad data, before the handler broke */
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "bad-%d", i);
        publish(id, "approval.item.approved", "beta", "{\"approvalId\":1}");
    }
    /* and a failure of the handler before this incident */
    publish("old-0", "order.created", "acme", "{\"fault\":\"reject\"}");
    wait_xlen("t:events:dlq", 4, 20000);
    e2e_sleep_ms(5);
    char since[40];
    e2e_rfc3339(e2e_epoch_ms(), since);
    set_var("SINCE", since);
    e2e_sleep_ms(5);
    for (int i = 0; i < 6; i++) {
        char id[16];
        snprintf(id, sizeof id, "rej-%d", i);
        publish(id, "order.created", "acme", "{\"fault\":\"reject\"}");
    }
    wait_xlen("t:events:dlq", 10, 20000);
    set_var("HANDLER", "chaos/main");
    set_var("TENANT", "beta");
    set_var("TYPE", "approval.**");
    run_procedure(&DLQ_PROC);
}

/* ---- A bad deploy -------------------------------------------------------- */

static void file_fixed(void)
{
    e2e_conf_file(&RB.e, "30-deploy.yaml", "retry: { base_ms: 100 }\n");
}

static const step_t BAD_DEPLOY[] = {
    {.cmd = "evbusd -c <CONF_DIR> --check-config", .status = 2, .says = {"30-deploy.yaml:2:"}},
    {.cmd = "evbusctl status", .says = {"last reload:  FAILED", "evbusctl: warning: "}},
    {.cmd = "evbusd -c <CONF_DIR> --check-config", .says = {"OK"}, .before = file_fixed},
    {.cmd = "evbusctl reload", .says = {"reload ok: generation"}},
};
static const procedure_t BAD_DEPLOY_PROC =
    PROCEDURE("A bad deploy: a broken file in conf.d", BAD_DEPLOY);

Test(runbook, a_bad_deploy)
{
    start_servers(false, NULL);
    e2e_plugins(&RB.e, NULL, "{ pattern: \"order.**\" }");
    start_evbusd();
    e2e_conf_file(&RB.e, "30-deploy.yaml", "retry:\n  base_ms: soon\n");
    sighup_and_wait("failed");
    log_says("30-deploy.yaml:2:");
    /* publishers keep publishing through the broken conf.d */
    cr_expect_eq(e2e_ctl(&RB.e, NULL, NULL, "publish", "--type", "order.created", "--tenant",
                         "acme", "--data", "{}", NULL), 0);
    wait_rec_lines(1);
    run_procedure(&BAD_DEPLOY_PROC);
}

/* ---- Which configuration is live ----------------------------------------- */

static const step_t WHICH_CONFIG[] = {
    {.cmd = "evbusctl --help", .says = {"Configuration: <CONF_DIR> (from EVBUS_CONF_DIR)"}},
    {.cmd = "evbusctl status", .says = {"config:       sha256:", "instance:   rec = testkit"}},
    {.cmd = "evbusctl config show", .says = {"00-host.yaml:"}},
    {.cmd = "evbusd -c <CONF_DIR> --check-config --diff-running",
     .says = {"0 live changes would apply on reload; 0 changes would wait for a restart"}},
};
static const procedure_t WHICH_CONFIG_PROC = PROCEDURE("Which configuration is live", WHICH_CONFIG);

Test(runbook, which_configuration_is_live)
{
    start_servers(false, NULL);
    e2e_plugins(&RB.e, NULL, "{ pattern: \"order.**\" }");
    start_evbusd();
    run_procedure(&WHICH_CONFIG_PROC);
}

/* ---- A reload was partial ------------------------------------------------ */

static const step_t PARTIAL[] = {
    {.cmd = "evbusctl reload", .status = 3,
     .says = {"reload partial", "worker_threads: needs a restart: running 2, files say 3"}},
    {.cmd = "evbusctl status",
     .says = {"last reload:  partial", "pending restart: worker_threads"}},
    {.cmd = "evbusctl config show", .says = {"worker_threads"}},
    {.cmd = "systemctl restart evbusd", .run = systemctl_restart},
    {.cmd = "evbusctl status", .says = {"last reload:  ok"}, .absent = "pending restart"},
};
static const procedure_t PARTIAL_PROC = PROCEDURE("A reload was partial", PARTIAL);

Test(runbook, a_reload_was_partial)
{
    start_servers(false, NULL);
    e2e_plugins(&RB.e, NULL, "{ pattern: \"order.**\" }");
    start_evbusd();
    e2e_conf_file(&RB.e, "30-deploy.yaml", "worker_threads: 3\n");
    run_procedure(&PARTIAL_PROC);
    log_says("worker_threads: changed from 2 to 3 but needs a restart");
}

/* ---- The stream is full -------------------------------------------------- */

static void floor_moved(void)
{
    wait_health("retention.floor_group", "g", 10000);
}

static const step_t STREAM_FULL[] = {
    {.cmd = "evbusctl status", .says = {"(error)", "(group <GROUP>)"}},
    {.cmd = "redis-cli -u <REDIS_URL> XINFO GROUPS <STREAM>", .says = {"<GROUP>"}},
    {.cmd = "redis-cli -u <REDIS_URL> XGROUP DESTROY <STREAM> <GROUP>", .says = {"1"}},
    {.cmd = "evbusctl status", .says = {"retention:"}, .absent = "(group <GROUP>)",
     .before = floor_moved},
    {.cmd = "evbusctl publish --file <FILE>", .absent = "refused"},
};
static const procedure_t STREAM_FULL_PROC = PROCEDURE("The stream is full", STREAM_FULL);

Test(runbook, the_stream_is_full)
{
    start_servers(false, "retention: { max_entries: 20, on_full: reject, interval: 200ms }\n");
    e2e_plugins(&RB.e, NULL, "{ pattern: \"order.**\" }");
    /* another team's group, gone for good, that never read a thing */
    redisContext *c = harness_redis_connect(&RB.e.fx.redis);
    cr_assert_not_null(c);
    redisReply *r = redisCommand(c, "XGROUP CREATE t:events reports 0 MKSTREAM");
    cr_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisFree(c);
    start_evbusd();
    char all[700], rest[700];
    fx_path(&RB.e.fx, "all.ndjson", all, sizeof all);
    fx_path(&RB.e.fx, "rest.ndjson", rest, sizeof rest);
    FILE *fa = fopen(all, "w"), *fr = fopen(rest, "w");
    cr_assert(fa && fr);
    for (int i = 0; i < 30; i++) {
        char line[160];
        snprintf(line, sizeof line, "{\"type\":\"order.created\",\"tenantid\":\"acme\","
                 "\"id\":\"full-%d\",\"data\":{\"i\":%d}}\n", i, i);
        fputs(line, fa);
        if (i >= 20) /* what the cap will refuse */
            fputs(line, fr);
    }
    fclose(fa);
    fclose(fr);
    /* the symptom: a publisher refused at the cap */
    char *out = NULL, *err = NULL;
    cr_assert_eq(e2e_ctl(&RB.e, &out, &err, "publish", "--file", all, NULL), 1, "%s", err);
    cr_assert(strstr(err, "20 of 30 events published"), "%s", err);
    free(out);
    free(err);
    wait_rec_lines(20);
    wait_health("retention.level", "error", 10000);
    log_says("consumer group reports holds the trim floor at ");
    set_var("GROUP", "reports");
    set_var("FILE", rest);
    run_procedure(&STREAM_FULL_PROC);
    wait_rec_lines(30);
}

/* ---- The runbook and the tests agree ------------------------------------- */

static const procedure_t *const ALL[] = {
    &FALLS_BEHIND_PROC,
    &REDIS_DOWN_PROC,
    &PG_DOWN_PROC,
    &PG_DISK_PROC,
    &SLOW_PROC,
    &DOWNSTREAM_PROC,
    &LEAKED_PROC,
    &CRASH_PROC,
    &DLQ_PROC,
    &BAD_DEPLOY_PROC,
    &WHICH_CONFIG_PROC,
    &PARTIAL_PROC,
    &STREAM_FULL_PROC,
    &REPLAY_PROC,
    &REPLAY_HOST_GONE_PROC,
};

/* Fast and without servers: a runbook edit that no test follows fails here
 * first, naming the command. */
Test(runbook, every_runbook_command_is_run_by_a_test)
{
    size_t n_all = sizeof ALL / sizeof ALL[0];
    for (size_t i = 0; i < RB.doc.n_procs; i++) {
        const runbook_proc_t *d = &RB.doc.procs[i];
        size_t k = 0;
        while (k < n_all && strcmp(ALL[k]->title, d->title) != 0)
            k++;
        cr_expect(k < n_all || d->n_cmds == 0, "no test runs the procedure \"### %s\" (%zu "
                  "commands, the first `%s`)", d->title, d->n_cmds, d->n_cmds ? d->cmds[0] : "");
    }
    for (size_t k = 0; k < n_all; k++)
        check_mirror(ALL[k]);
}

/* ---- what the parser takes as a command ---------------------------------- */

Test(runbook, a_command_is_a_line_of_an_sh_block_without_its_comment)
{
    runbook_t rb;
    char err[256];
    const char *md = "## Runbook\n\n### Incident\n\ntext `evbusctl inline`\n\n```sh\n"
                     "# a note\n\nevbusctl  dlq   list --type 'a  b.**'   # why\n```\n\n"
                     "## Next\n\n```sh\nnot in the runbook\n```\n";
    cr_assert_eq(runbook_parse(md, &rb, err, sizeof err), 0, "%s", err);
    cr_assert_eq(rb.n_procs, 1);
    cr_assert_str_eq(rb.procs[0].title, "Incident");
    cr_assert_eq(rb.procs[0].n_cmds, 1);
    cr_expect_str_eq(rb.procs[0].cmds[0], "evbusctl dlq list --type 'a  b.**'");
    runbook_free(&rb);
}

Test(runbook, a_command_no_test_could_find_is_refused)
{
    static const char *const bad[] = {
        "## Runbook\n\n### I\n\n```bash\nevbusctl status\n```\n",       /* not sh */
        "## Runbook\n\n```sh\nevbusctl status\n```\n\n### I\n",          /* no procedure */
        "## Runbook\n\n### I\n\n```sh\nevbusctl dlq list \\\n --json\n```\n", /* continued */
        "## Runbook\n\n### I\n\n```sh\nevbusctl status\n",               /* never closed */
        "## Operations\n",                                                /* no runbook */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        runbook_t rb;
        char err[256] = "";
        cr_expect_eq(runbook_parse(bad[i], &rb, err, sizeof err), -1, "case %zu parsed", i);
        cr_expect(strstr(err, "docs/operations.md line "), "case %zu: %s", i, err);
    }
}

Test(runbook, a_placeholder_without_a_value_is_an_error)
{
    runbook_vars_t v = {0};
    runbook_var_set(&v, "DLQ_ID", "1-0");
    char err[256];
    char *s = runbook_fill("evbusctl dlq show <DLQ_ID> <2 <x>", &v, err, sizeof err);
    cr_expect_str_eq(s, "evbusctl dlq show 1-0 <2 <x>");
    free(s);
    cr_expect_null(runbook_fill("kill <EVBUSD_PID>", &v, err, sizeof err));
    cr_expect(strstr(err, "<EVBUSD_PID>"), "%s", err);
    runbook_vars_free(&v);
}
