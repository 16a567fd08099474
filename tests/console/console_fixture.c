/*
 * The console's browser tests (console.test.mjs) need real servers: this
 * criterion test starts them with the e2e fixture — redis-server and
 * PostgreSQL on free loopback ports in temporary folders, 262 real dead
 * letters made by the chaos plugin (250 of tenant a, 12 of tenant b), then
 * evbusd serving the console — and runs the node driver against them,
 * passing ports, tokens and paths in the environment.  The test passes
 * when the driver exits 0.
 *
 * EVBUS_CONSOLE_CMD replaces the driver (e.g. "sleep 3600" to keep the
 * servers up while working on the console; the environment is printed).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e.h"

static e2e_t E;

static void setup(void) { e2e_start(&E, false, true); }
static void teardown(void) { e2e_stop(&E); }

TestSuite(console, .init = setup, .fini = teardown, .timeout = 420);

static const struct {
    const char *name, *role, *tenant, *env;
} TOKENS[] = {
    {"oncall", "operator", "*", "EVBUS_TOKEN_OPERATOR"},
    {"root", "admin", "*", "EVBUS_TOKEN_ADMIN"},
    {"watch", "viewer", "*", "EVBUS_TOKEN_VIEWER"},
    {"a-view", "viewer", "a", "EVBUS_TOKEN_TENANT_VIEWER"},
    {"a-op", "operator", "a", "EVBUS_TOKEN_TENANT_OPERATOR"},
    {"pub", "publisher", "a", "EVBUS_TOKEN_PUBLISHER"},
};

static const char *tok(size_t i)
{
    static char buf[8][80];
    snprintf(buf[i], sizeof buf[i], "evb_console_%s_0123456789abcdef", TOKENS[i].name);
    return buf[i];
}

static void write_conf(void)
{
    char extra[8192];
    int n = snprintf(extra, sizeof extra,
                     "postgres: { url: \"%s\", migrate_on_start: true }\n"
                     /* the overview's history gets a point a second */
                     "stats: { history_period: 1s }\n"
                     "admin:\n  listen: \"127.0.0.1:%d\"\n"
                     "  rate_limit: { per_token_per_s: 100000, burst: 100000 }\n  tokens:\n",
                     E.pg.url, E.admin_port);
    for (size_t i = 0; i < sizeof TOKENS / sizeof *TOKENS; i++) {
        char hash[72];
        harness_token_hash(tok(i), hash);
        n += snprintf(extra + n, sizeof extra - (size_t)n,
                      "    - { name: %s, hash: \"%s\", roles: [%s], tenant: \"%s\" }\n",
                      TOKENS[i].name, hash, TOKENS[i].role, TOKENS[i].tenant);
    }
    fx_host_conf(&E.fx, "c1", extra);
    e2e_plugins(&E, "{ pattern: \"test.**\" }", NULL);
}

static void publish(const char *id, const char *type, const char *tenant, bool reject)
{
    char *ev = e2e_event(id, type, tenant, reject ? "{\"fault\":\"reject\"}" : "{}", NULL);
    cr_assert_eq(e2e_xadd(&E, "*", ev, NULL), 0);
    free(ev);
}

Test(console, in_chromium)
{
    write_conf();
    char id[48];
    for (int i = 0; i < 250; i++) {
        snprintf(id, sizeof id, "a-%03d", i);
        publish(id, i % 5 == 0 ? "test.user.signup" : "test.order.created", "a", true);
    }
    for (int i = 0; i < 12; i++) {
        snprintf(id, sizeof id, "b-%03d", i);
        publish(id, "test.order.created", "b", true);
    }
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof id, "ok-%03d", i);
        publish(id, "test.order.created", i % 2 ? "a" : "b", false);
    }
    e2e_evbusd(&E, 0);
    cr_assert(e2e_wait_healthy(&E, 40000), "evbusd did not come up (log %s)", E.fx.log);

    char *src = harness_source_path("tests/console");
    char *build = harness_build_path("console-screenshots");
    char env[4096];
    int n = snprintf(env, sizeof env,
                     "EVBUS_CONSOLE_URL=http://127.0.0.1:%d EVBUS_REDIS_PORT=%d "
                     "EVBUS_CHAOS_CALLS=%s EVBUS_SCREENSHOTS=%s EVBUS_LOG=%s",
                     E.admin_port, E.fx.redis.port, E.calls, build, E.fx.log);
    for (size_t i = 0; i < sizeof TOKENS / sizeof *TOKENS; i++)
        n += snprintf(env + n, sizeof env - (size_t)n, " %s=%s", TOKENS[i].env, tok(i));
    const char *cmd = getenv("EVBUS_CONSOLE_CMD");
    char line[8192];
    if (cmd) {
        printf("%s\n", env);
        fflush(stdout);
        snprintf(line, sizeof line, "env %s %s", env, cmd);
    } else {
        snprintf(line, sizeof line, "cd '%s' && env %s node console.test.mjs", src, env);
    }
    int rc = system(line);
    free(src);
    free(build);
    cr_assert_eq(rc, 0, "the console tests failed (exit status %d; evbusd log %s)", rc, E.fx.log);
}
