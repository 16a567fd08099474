/*
 * evbusctl and its configuration directory during a bad deploy: a broken
 * file in conf.d costs one warning line, not the commands the runbook sends
 * you to (status, publish, dlq, reload); a setting whose own value is
 * broken comes from what the running evbusd recorded; the commands that
 * show the configuration itself still refuse; and with no configuration at
 * all evbusctl names what it needs instead of guessing a server.  Real
 * evbusd, real evbusctl, a private redis-server.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evbus_build_config.h"
#include "fixture.h"

static fx_t F;
static char admin[64];

static void setup(void) { fx_start(&F, false); }
static void teardown(void) { fx_stop(&F); }

TestSuite(conf, .init = setup, .fini = teardown, .timeout = 120);

struct run {
    int status;
    char *out, *err;
};

/* evbusctl args[0..] (NULL-terminated), stdout and stderr captured */
static struct run ctl_args(const char *const *args)
{
    char *argv[24];
    int n = 0;
    argv[n++] = harness_build_path("host/ctl/evbusctl");
    for (size_t i = 0; args[i] && n < 23; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    struct run r = {0};
    r.status = harness_run(argv, NULL, NULL, &r.out, &r.err, 30000);
    free(argv[0]);
    if (!r.out)
        r.out = strdup("");
    if (!r.err)
        r.err = strdup("");
    return r;
}

#define ctl(...) ctl_args((const char *const[]){__VA_ARGS__})

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
}

static size_t count(const char *s, const char *what)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

/* this Redis, an admin endpoint, the build's plugins folder as plugin_dir
 * and a file-sink instance found there as plugins/file-sink/file-sink.so */
static void valid_conf(void)
{
    char extra[1200], audit[600], inst[1200];
    char *plugins = harness_build_path("plugins");
    snprintf(admin, sizeof admin, "127.0.0.1:%d", harness_free_port());
    snprintf(extra, sizeof extra, "admin: { listen: \"%s\" }\nplugin_dir: %s\n", admin, plugins);
    free(plugins);
    fx_host_conf(&F, "c1", extra);
    fx_path(&F, "audit.jsonl", audit, sizeof audit);
    snprintf(inst, sizeof inst,
             "plugins:\n  - name: audit\n    plugin: file-sink\n    config: { path: %s }\n"
             "    subscriptions: [ \"**\" ]\n", audit);
    fx_conf(&F, "10-audit.yaml", inst);
}

static void start_evbusd(void)
{
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000), "evbusd did not start");
}

Test(conf, plugin_dir_at_the_build_tree_loads_file_sink_from_its_folder)
{
    valid_conf();
    start_evbusd();
    struct run r = ctl("-c", F.conf, "publish", "--type", "order.created", "--tenant", "t1",
                       "--data", "{\"n\":1}", NULL);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    char audit[600];
    fx_path(&F, "audit.jsonl", audit, sizeof audit);
    cr_expect(fx_wait_lines(audit, 1, 20000), "file-sink did not write the event");
    run_free(&r);
}

Test(conf, a_broken_file_costs_one_warning_and_status_publish_dlq_keep_working)
{
    valid_conf();
    start_evbusd();
    fx_conf(&F, "20-broken.yaml", "plugins:\n  - { name: x, plugin: nowhere }\n");

    struct run r = ctl("-c", F.conf, "status", NULL);
    cr_assert_eq(r.status, 0, "stdout: %s\nstderr: %s", r.out, r.err);
    cr_expect(strstr(r.out, "status:       ok"), "got %s", r.out);
    cr_expect(strstr(r.out, "config:       "), "status names its configuration: %s", r.out);
    cr_expect_eq(count(r.err, "\n"), 1, "one line on stderr: %s", r.err);
    cr_expect(strstr(r.err, "evbusctl: warning: ") && strstr(r.err, " has 1 error (first: ") &&
                  strstr(r.err, "20-broken.yaml:2:24: plugin 'nowhere': no such file") &&
                  strstr(r.err, "using the settings that parsed") &&
                  strstr(r.err, "--check-config` lists them"),
              "got %s", r.err);
    run_free(&r);

    r = ctl("-c", F.conf, "publish", "--type", "order.created", "--tenant", "t1", "--data",
            "{\"n\":1}", NULL);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_expect_eq(count(r.err, "evbusctl: warning: "), 1, "got %s", r.err);
    cr_expect_eq(count(r.err, "\n"), 1, "got %s", r.err);
    cr_expect_eq(fx_xlen(&F, "t:events"), 1, "published to the stream of the valid file");
    run_free(&r);

    r = ctl("-c", F.conf, "dlq", "list", NULL);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_expect(strstr(r.out, "no dead letters"), "got %s", r.out);
    cr_expect_eq(count(r.err, "evbusctl: warning: "), 1, "got %s", r.err);
    run_free(&r);

    /* reload asks evbusd (admin.listen from the valid file), which refuses
     * the broken file and keeps serving */
    r = ctl("-c", F.conf, "reload", "--timeout", "20", NULL);
    cr_expect_eq(r.status, 1, "stdout: %s\nstderr: %s", r.out, r.err);
    cr_expect(strstr(r.err, "the reload failed; generation 1 keeps serving"), "got %s", r.err);
    run_free(&r);
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 15000), 0);
}

Test(conf, commands_that_show_the_configuration_and_evbusd_stay_strict)
{
    valid_conf();
    fx_conf(&F, "20-broken.yaml", "plugins:\n  - { name: x, plugin: nowhere }\n");
    struct run r = ctl("-c", F.conf, "config", "show", "--files", NULL);
    cr_expect_eq(r.status, 2, "stdout: %s", r.out);
    cr_expect(strstr(r.err, "20-broken.yaml:2:24: plugin 'nowhere'"), "got %s", r.err);
    cr_expect(strstr(r.err, "evbusctl config: the configuration ") &&
                  strstr(r.err, " is invalid (1 error)"),
              "got %s", r.err);
    cr_expect_not(strstr(r.err, "warning"), "no warning before the errors: %s", r.err);
    cr_expect_eq(r.out[0], '\0', "nothing shown: %s", r.out);
    run_free(&r);

    /* no daemon answers: config show falls back to the files, which are broken */
    r = ctl("-c", F.conf, "config", "show", NULL);
    cr_expect_eq(r.status, 2, "stdout: %s", r.out);
    run_free(&r);

    char *evbusd = harness_build_path("host/daemon/evbusd");
    char *chk[] = {evbusd, "-c", F.conf, "--check-config", NULL};
    char *o = NULL, *e = NULL;
    cr_expect_eq(harness_run(chk, NULL, NULL, &o, &e, 20000), 2, "evbusd must stay strict");
    free(o);
    free(e);
    free(evbusd);
}

Test(conf, a_refused_value_comes_from_the_running_evbusds_record)
{
    valid_conf();
    start_evbusd();
    fx_conf(&F, "30-bad.yaml", "admin: { listen: nope }\nredis: { url: [x] }\n");

    struct run r = ctl("-c", F.conf, "status", NULL);
    cr_assert_eq(r.status, 0, "stdout: %s\nstderr: %s", r.out, r.err);
    cr_expect(strstr(r.err, " has 2 errors (first: "), "got %s", r.err);
    cr_expect(strstr(r.err, "and for redis.url and admin.listen the values the running evbusd "
                            "recorded in "),
              "got %s", r.err);
    run_free(&r);

    r = ctl("-c", F.conf, "publish", "--type", "order.created", "--tenant", "t1", "--data", "{}",
            NULL);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_expect_eq(fx_xlen(&F, "t:events"), 1);
    run_free(&r);

    /* evbusd stopped (its record removed): the earlier file's values, said so */
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 15000), 0);
    r = ctl("-c", F.conf, "publish", "--type", "order.created", "--tenant", "t1", "--data", "{}",
            NULL);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_expect(strstr(r.err, "and for redis.url and admin.listen what earlier files or the "
                            "defaults give (no evbusd running this directory is recorded in "),
              "got %s", r.err);
    cr_expect_eq(fx_xlen(&F, "t:events"), 2);
    run_free(&r);
}

Test(conf, without_any_configuration_a_command_needing_a_server_refuses)
{
    struct stat st;
    if (stat(EVBUS_CONF_DIR, &st) == 0)
        cr_skip_test("the installed %s exists on this machine", EVBUS_CONF_DIR);
    unsetenv("EVBUS_CONF_DIR");
    unsetenv("EVBUS_REDIS_URL");
    unsetenv("EVBUS_POSTGRES_URL");
    const char *const *cmds[] = {
        (const char *const[]){"dlq", "list", NULL, "--redis URL"},
        (const char *const[]){"publish", "--type", "a.b", "--tenant", "t", "--data", "{}", NULL,
                              "--redis URL"},
        (const char *const[]){"status", NULL, "--admin HOST:PORT"},
        (const char *const[]){"events", "list", NULL, "--postgres URL"},
    };
    for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++) {
        const char *const *c = cmds[k];
        size_t n = 0;
        while (c[n])
            n++;
        struct run r = ctl_args(c);
        cr_expect_eq(r.status, 2, "%s: stdout %s stderr %s", c[0], r.out, r.err);
        cr_expect(strstr(r.err, "no configuration to find ") &&
                      strstr(r.err, "pass -c DIR, set EVBUS_CONF_DIR, or give ") &&
                      strstr(r.err, c[n + 1]),
                  "%s: got %s", c[0], r.err);
        run_free(&r);
    }
    /* what is explicit still works without any configuration */
    struct run r = ctl("--redis", F.redis.url, "dlq", "list", NULL);
    cr_expect_eq(r.status, 0, "stderr: %s", r.err);
    cr_expect_eq(r.err[0], '\0', "got %s", r.err);
    run_free(&r);
    r = ctl("--help", NULL);
    cr_expect(strstr(r.out, "Configuration: none ("), "got %s", r.out);
    run_free(&r);
    setenv("EVBUS_REDIS_URL", F.redis.url, 1);
    r = ctl("dlq", "list", NULL);
    cr_expect_eq(r.status, 0, "EVBUS_REDIS_URL names a Redis: %s", r.err);
    run_free(&r);
}

Test(conf, help_says_which_configuration_is_used)
{
    valid_conf();
    setenv("EVBUS_CONF_DIR", F.conf, 1);
    struct run r = ctl("--help", NULL);
    char want[700];
    snprintf(want, sizeof want, "Configuration: %s (from EVBUS_CONF_DIR)", F.conf);
    cr_expect(strstr(r.out, want), "got %s", r.out);
    run_free(&r);
    r = ctl("-c", F.conf, "--help", NULL);
    snprintf(want, sizeof want, "Configuration: %s (from -c)", F.conf);
    cr_expect(strstr(r.out, want), "got %s", r.out);
    run_free(&r);
}
