/*
 * Core behaviour of evbusd end to end: a real redis-server on a free port,
 * the real daemon binary, real plugin .so files built by meson.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"

static fx_t F;

static void setup(void) { fx_start(&F, false); }
static void teardown(void) { fx_stop(&F); }

TestSuite(core, .init = setup, .fini = teardown, .timeout = 120);

/* Count distinct event ids (3rd column) of a testkit output file. */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static size_t distinct_ids_sorted(const char *path, size_t *lines_out)
{
    char *s = harness_read_file(path);
    if (!s)
        return 0;
    size_t cap = 1024, n = 0, lines = 0;
    char **ids = malloc(cap * sizeof *ids);
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        lines++;
        char *t1 = strchr(line, '\t');
        char *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        char *t3 = t2 ? strchr(t2 + 1, '\t') : NULL;
        if (!t3)
            continue;
        *t3 = '\0';
        if (n == cap)
            ids = realloc(ids, (cap *= 2) * sizeof *ids);
        ids[n++] = t2 + 1;
    }
    qsort(ids, n, sizeof *ids, cmp_str);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || strcmp(ids[i], ids[i - 1]) != 0)
            distinct++;
    free(ids);
    free(s);
    if (lines_out)
        *lines_out = lines;
    return distinct;
}

static void record_instance(const char *file, const char *name, const char *tag, const char *out,
                            const char *pattern, int prio)
{
    char buf[2048];
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: %s\n"
             "    plugin: %s\n"
             "    config: { out: %s, tag: %s }\n"
             "    subscriptions:\n"
             "      - { pattern: \"%s\", priority: %d, handler: record }\n",
             name, fx_plugin("plugins/testkit/testkit.so"), out, tag, pattern, prio);
    fx_conf(&F, file, buf);
}

Test(core, ten_thousand_events_all_handled_none_pending)
{
    char out[600];
    fx_path(&F, "rec.tsv", out, sizeof out);
    fx_host_conf(&F, "c1", NULL);
    record_instance("10-rec.yaml", "rec", "a", out, "approval.**", 10);
    fx_publish(&F, "e", 10000, "approval.item.approved", "t1", FX_APPROVED_V2);
    fx_evbusd(&F, "--exit-idle", "1500");
    cr_assert(fx_wait_lines(out, 10000, 60000), "only %zu of 10000 handled",
              harness_count_lines(out));
    cr_assert_eq(fx_evbusd_wait(&F, 30000), 0, "evbusd did not exit cleanly");
    size_t lines = 0;
    cr_assert_eq(distinct_ids_sorted(out, &lines), 10000);
    cr_assert_eq(lines, 10000, "a handler ran twice for some event: %zu lines", lines);
    cr_assert_eq(fx_pending(&F), 0);
    cr_assert_eq(fx_xlen(&F, "t:events:dlq"), 0);
}

Test(core, kill_9_during_a_batch_then_restart_loses_nothing)
{
    char out[600];
    fx_path(&F, "rec.tsv", out, sizeof out);
    fx_host_conf(&F, "c1", NULL);
    record_instance("10-rec.yaml", "rec", "a", out, "approval.**", 10);
    fx_publish(&F, "e", 20000, "approval.item.approved", "t1", FX_APPROVED_V2);
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_lines(out, 1000, 30000));
    cr_assert_eq(harness_kill(&F.d, SIGKILL, 5000), 128 + SIGKILL);
    size_t before = harness_count_lines(out);
    cr_assert_lt(before, 20000, "everything was handled before the kill; the test proves nothing");
    fx_evbusd(&F, "--exit-idle", "1500");
    cr_assert_eq(fx_evbusd_wait(&F, 60000), 0);
    size_t lines = 0;
    cr_assert_eq(distinct_ids_sorted(out, &lines), 20000, "events were lost across kill -9");
    cr_assert_eq(fx_pending(&F), 0);
}

Test(core, handlers_run_in_priority_order_ties_in_manifest_order)
{
    char out[600];
    fx_path(&F, "order.tsv", out, sizeof out);
    fx_host_conf(&F, "c1", NULL);
    record_instance("10-a.yaml", "a", "p100", out, "approval.**", 100);
    record_instance("20-b.yaml", "b", "p1", out, "approval.item.*", 1);
    record_instance("30-c.yaml", "c", "p50first", out, "**", 50);
    record_instance("40-d.yaml", "d", "p50second", out, "approval.item.approved", 50);
    fx_publish(&F, "e", 50, "approval.item.approved", "t1", FX_APPROVED_V2);
    fx_evbusd(&F, "--exit-idle", "1000");
    cr_assert_eq(fx_evbusd_wait(&F, 30000), 0);
    char *s = harness_read_file(out);
    cr_assert_not_null(s);
    /* per event id, the tags must come in order p1, p50first, p50second, p100 */
    const char *want[] = {"p1", "p50first", "p50second", "p100"};
    for (int i = 0; i < 50; i++) {
        char id[32];
        snprintf(id, sizeof id, "\te-%d\t", i);
        int seen = 0;
        for (char *p = s; (p = strstr(p, id)); p++) {
            char *line = p;
            while (line > s && line[-1] != '\n')
                line--;
            char *tag = strchr(line, '\t') + 1;
            cr_assert_lt(seen, 4);
            cr_assert_eq(strncmp(tag, want[seen], strlen(want[seen])), 0,
                         "event e-%d: handler %d was %.12s, expected %s", i, seen, tag, want[seen]);
            cr_assert_eq(tag[strlen(want[seen])], '\t');
            seen++;
        }
        cr_assert_eq(seen, 4, "event e-%d saw %d handlers", i, seen);
    }
    free(s);
}

Test(core, sigterm_finishes_and_acks_work_in_flight)
{
    char out[600], counts[600], buf[2048];
    fx_path(&F, "rec.tsv", out, sizeof out);
    fx_path(&F, "chaos.log", counts, sizeof counts);
    fx_host_conf(&F, "c1", NULL);
    fx_conf(&F, "05-tune.yaml", "worker_threads: 1\nbatch_size: 20\n");
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: slow\n"
             "    plugin: %s\n"
             "    config: { count_file: %s }\n"
             "    subscriptions: [ { pattern: \"test.**\", priority: 1, schema_mode: off } ]\n",
             fx_plugin("plugins/chaos/chaos.so"), counts);
    fx_conf(&F, "10-slow.yaml", buf);
    record_instance("20-rec.yaml", "rec", "a", out, "test.**", 10);
    fx_publish(&F, "s", 20, "test.slow.work", "t1", "{\"fault\":\"sleep:100\",\"i\":%d}");
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_lines(out, 1, 20000));
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0, "evbusd did not exit 0 on SIGTERM");
    size_t handled = harness_count_lines(out);
    cr_assert_eq(fx_pending(&F), 0, "work in flight was not acked");
    cr_assert_geq(handled, 2, "the batch in flight was not finished");
    cr_assert(fx_log_has(&F, "stopped cleanly"));
}

Test(core, bad_envelopes_go_to_the_dlq_and_the_consumer_carries_on)
{
    char out[600];
    fx_path(&F, "rec.tsv", out, sizeof out);
    fx_host_conf(&F, "c1", NULL);
    record_instance("10-rec.yaml", "rec", "a", out, "**", 10);
    fx_publish_raw(&F, "this is not json");
    fx_publish_raw(&F, "{\"specversion\":\"1.0\",\"id\":\"x1\",\"source\":\"/t\","
                       "\"type\":\"test.a\",\"time\":\"2026-11-26T10:00:00Z\"}");
    fx_publish_raw(&F, "{\"specversion\":\"1.0\",\"id\":\"x2\",\"source\":\"/t\","
                       "\"type\":\"Test..A\",\"time\":\"2026-11-26T10:00:00Z\",\"tenantid\":\"t\"}");
    fx_publish_raw(&F, "{\"specversion\":\"1.0\",\"id\":\"x3\",\"source\":\"/t\","
                       "\"type\":\"test.a\",\"time\":\"yesterday\",\"tenantid\":\"t\"}");
    fx_publish_raw(&F, "{\"specversion\":\"0.3\",\"id\":\"x4\",\"source\":\"/t\","
                       "\"type\":\"test.a\",\"time\":\"2026-11-26T10:00:00Z\",\"tenantid\":\"t\"}");
    fx_publish(&F, "ok", 1, "test.good", "t1", "{\"n\":%d}");
    fx_evbusd(&F, "--exit-idle", "1000");
    cr_assert_eq(fx_evbusd_wait(&F, 30000), 0);
    cr_assert_eq(harness_count_lines(out), 1, "only the valid event may reach a handler");
    char *rec = harness_read_file(out);
    cr_assert(strstr(rec, "\tok-0\t"));
    free(rec);
    cr_assert_eq(fx_xlen(&F, "t:events:dlq"), 5);
    redisContext *c = harness_redis_connect(&F.redis);
    redisReply *r = redisCommand(c, "XRANGE t:events:dlq - +");
    cr_assert_eq(r->elements, 5);
    const char *reasons[5];
    for (size_t i = 0; i < 5; i++) {
        redisReply *fv = r->element[i]->element[1];
        reasons[i] = NULL;
        for (size_t k = 0; k + 1 < fv->elements; k += 2)
            if (strcmp(fv->element[k]->str, "reason") == 0)
                reasons[i] = fv->element[k + 1]->str;
    }
    cr_assert_str_eq(reasons[0], "unparseable");
    for (int i = 1; i < 5; i++)
        cr_assert_str_eq(reasons[i], "invalid_envelope");
    /* the original bytes are kept unchanged */
    cr_assert_str_eq(r->element[0]->element[1]->element[1]->str, "this is not json");
    freeReplyObject(r);
    redisFree(c);
    cr_assert_eq(fx_pending(&F), 0);
}

Test(core, events_nobody_subscribes_to_are_acked_and_counted)
{
    char out[600];
    fx_path(&F, "rec.tsv", out, sizeof out);
    fx_host_conf(&F, "c1", NULL);
    record_instance("10-rec.yaml", "rec", "a", out, "approval.**", 10);
    fx_publish(&F, "n", 7, "nobody.listens.here", "t1", "{\"i\":%d}");
    fx_evbusd(&F, "--exit-idle", "1000");
    cr_assert_eq(fx_evbusd_wait(&F, 30000), 0);
    cr_assert_eq(harness_count_lines(out), 0);
    cr_assert_eq(fx_pending(&F), 0);
    cr_assert_eq(fx_xlen(&F, "t:events:dlq"), 0);
}

static int run_evbusd_check(char **out, char **err)
{
    char *bin = harness_build_path("host/daemon/evbusd");
    char *argv[] = {bin, "-c", F.conf, "--check-config", NULL};
    int rc = harness_run(argv, NULL, NULL, out, err, 30000);
    free(bin);
    return rc;
}

Test(core, check_config_prints_ok_for_a_valid_config)
{
    char out[600];
    fx_path(&F, "rec.tsv", out, sizeof out);
    fx_host_conf(&F, "c1", NULL);
    record_instance("10-rec.yaml", "rec", "a", out, "approval.**", 10);
    char *o = NULL, *e = NULL;
    cr_assert_eq(run_evbusd_check(&o, &e), 0, "stderr: %s", e);
    cr_assert_str_eq(o, "OK\n");
    free(o);
    free(e);
}

/* --check-config runs every init() and fini() with EVBUS_INIT_CHECK: the
 * bundled plugins then check what they can and create nothing. */
Test(core, check_config_runs_plugins_as_a_check_that_leaves_no_trace)
{
    char sink[600], rec[600], calls[600], buf[4096];
    fx_path(&F, "audit.jsonl", sink, sizeof sink);
    fx_path(&F, "rec.tsv", rec, sizeof rec);
    fx_path(&F, "calls.txt", calls, sizeof calls);
    fx_host_conf(&F, "c1", NULL);
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - { name: audit, plugin: %s, config: { path: %s, buffer: 4096 } }\n"
             "  - { name: rec, plugin: %s, config: { out: %s } }\n"
             "  - { name: chaos, plugin: %s, config: { count_file: %s } }\n",
             fx_plugin("plugins/file-sink/file-sink.so"), sink,
             fx_plugin("plugins/testkit/testkit.so"), rec, fx_plugin("plugins/chaos/chaos.so"),
             calls);
    fx_conf(&F, "10-plugins.yaml", buf);
    char *o = NULL, *e = NULL;
    cr_assert_eq(run_evbusd_check(&o, &e), 0, "stderr: %s", e);
    cr_expect_str_eq(o, "OK\n");
    cr_expect(strstr(e, "testkit 1.0.0 checked") && strstr(e, "testkit 1.0.0 check done"),
              "testkit saw no check flag in init and fini: %s", e);
    cr_expect_null(strstr(e, "testkit 1.0.0 ready"), "%s", e);
    const char *const made[] = {sink, rec, calls};
    for (size_t i = 0; i < 3; i++)
        cr_expect_neq(access(made[i], F_OK), 0, "the check created %s", made[i]);
    free(o);
    free(e);

    /* what file-sink can tell without creating the file, it tells */
    char nodir[700], want[2048];
    fx_path(&F, "no-such-dir/audit.jsonl", nodir, sizeof nodir);
    snprintf(buf, sizeof buf,
             "plugins:\n  - name: audit\n    plugin: %s\n    config: { path: %s }\n",
             fx_plugin("plugins/file-sink/file-sink.so"), nodir);
    fx_conf(&F, "10-plugins.yaml", buf);
    cr_assert_eq(run_evbusd_check(&o, &e), 2, "stdout: %s", o);
    snprintf(want, sizeof want, "%s/10-plugins.yaml:4:13: instance 'audit' (%s): init failed: %s: "
             "cannot be created in %s/no-such-dir: No such file or directory\n", F.conf,
             fx_plugin("plugins/file-sink/file-sink.so"), nodir, F.dir);
    cr_expect_not_null(strstr(e, want), "missing: %sin: %s", want, e);
    free(o);
    free(e);
}

/* state_dir holds the plugin copies evbusd dlopen()s: a folder others may
 * write to is refused at --check-config, at start and at every reload. */
Test(core, a_state_dir_others_may_write_is_refused_at_check_start_and_reload)
{
    char copies[700], want[2048];
    snprintf(copies, sizeof copies, "%s/plugins", F.state);
    fx_host_conf(&F, "c1", NULL);
    cr_assert_eq(chmod(F.state, 0775), 0);
    char *o = NULL, *e = NULL;
    cr_assert_eq(run_evbusd_check(&o, &e), 2, "stdout: %s", o);
    snprintf(want, sizeof want, "%s/00-host.yaml:8:12: state_dir %s is writable by group or "
             "others (mode 0775); plugin copies are loaded from it: chmod go-w %s\n", F.conf,
             F.state, F.state);
    cr_expect_not_null(strstr(e, want), "missing: %sin: %s", want, e);
    free(o);
    free(e);
    fx_evbusd(&F, NULL, NULL);
    cr_assert_eq(fx_evbusd_wait(&F, 30000), 2, "evbusd started with an unsafe state_dir");
    F.d.pid = 0;

    /* the copy folder is checked the same way; a missing one is made 0700 */
    cr_assert_eq(chmod(F.state, 0700), 0);
    cr_assert_eq(run_evbusd_check(&o, &e), 0, "stderr: %s", e);
    free(o);
    free(e);
    struct stat st;
    cr_assert_eq(stat(copies, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0700);
    cr_assert_eq(chmod(copies, 0757), 0);
    cr_assert_eq(run_evbusd_check(&o, &e), 2);
    snprintf(want, sizeof want, "state_dir's plugin copy folder %s is writable by group or "
             "others (mode 0757)", copies);
    cr_expect_not_null(strstr(e, want), "missing: %s in: %s", want, e);
    free(o);
    free(e);
    cr_assert_eq(chmod(copies, 0700), 0);

    /* a reload notices a folder opened up after the start, and keeps serving */
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, "started (pid", 20000), "evbusd did not start: %s", F.log);
    cr_assert_eq(chmod(F.state, 0777), 0);
    cr_assert_eq(kill(F.d.pid, SIGHUP), 0);
    cr_assert(fx_wait_log(&F, "reload failed; generation 1 keeps serving", 20000),
              "log: %s", F.log);
    snprintf(want, sizeof want, "state_dir %s is writable by group or others (mode 0777)",
             F.state);
    cr_expect(fx_log_has(&F, want), "log lacks: %s", want);
    cr_assert_eq(chmod(F.state, 0700), 0);
    cr_assert_eq(kill(F.d.pid, SIGHUP), 0);
    cr_assert(fx_wait_log(&F, "generation 2 live", 20000), "log: %s", F.log);
}

Test(core, config_errors_name_file_line_column_and_exit_2)
{
    fx_host_conf(&F, "c1", "bogus_key: 1\n");
    fx_conf(&F, "10-bad.yaml", "plugins:\n  - name: x\n    plugin: /nonexistent/x.so\n");
    char *o = NULL, *e = NULL;
    cr_assert_eq(run_evbusd_check(&o, &e), 2);
    cr_assert(strstr(e, "00-host.yaml:13:1:") && strstr(e, "bogus_key"),
              "no positioned unknown-key error in: %s", e);
    cr_assert(strstr(e, "10-bad.yaml:3:13:"), "no positioned missing-plugin error in: %s", e);
    free(o);
    free(e);
    /* and the daemon refuses to start with the same status */
    fx_evbusd(&F, NULL, NULL);
    cr_assert_eq(fx_evbusd_wait(&F, 30000), 2);
}

/* A plugin's config map is checked before any init(): each problem at its
 * position, every one of them, and exit status 2. */
Test(core, check_config_reports_plugin_config_problems_at_their_positions)
{
    char out[600], ok[600], buf[2048];
    fx_path(&F, "rec.tsv", out, sizeof out);
    fx_path(&F, "ok.tsv", ok, sizeof ok);
    fx_host_conf(&F, "c1", NULL);
    const char *so = fx_plugin("plugins/testkit/testkit.so");
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: rec\n"
             "    plugin: %s\n"
             "    config:\n"
             "      out: %s\n"
             "      tga: x\n"
             "      tag: 7\n"
             "      init_sleep_ms: -1\n"
             "  - name: bare\n"
             "    plugin: %s\n",
             so, out, so);
    fx_conf(&F, "10-rec.yaml", buf);
    record_instance("20-ok.yaml", "ok", "A", ok, "approval.**", 10);
    char *o = NULL, *e = NULL;
    cr_assert_eq(run_evbusd_check(&o, &e), 2, "stderr: %s", e);
    const char *const want[] = {
        "%s/10-rec.yaml:6:7: unknown key 'tga' in config of plugin instance 'rec' (valid: out, "
        "tag, init_sleep_ms)\n",
        "%s/10-rec.yaml:7:12: config.tag: expected a string, got 7\n",
        "%s/10-rec.yaml:8:22: config.init_sleep_ms: must be between 0 and 60000, got -1\n",
        "%s/10-rec.yaml:9:5: missing required key 'out' in config of plugin instance 'bare' (the "
        "file to record events in)\n",
        "evbusd: 4 configuration errors in %s\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char line[1024];
        snprintf(line, sizeof line, want[i], F.conf);
        cr_expect_not_null(strstr(e, line), "missing: %sin: %s", line, e);
    }
    cr_expect_null(strstr(e, "ready"), "an init() ran although a config was wrong: %s", e);
    free(o);
    free(e);
}

Test(core, abi_mismatch_is_refused_with_a_precise_message)
{
    char buf[1024];
    fx_host_conf(&F, "c1", NULL);
    snprintf(buf, sizeof buf, "plugins:\n  - name: old\n    plugin: %s\n",
             fx_plugin("plugins/testkit/abi-mismatch.so"));
    fx_conf(&F, "10-old.yaml", buf);
    char *o = NULL, *e = NULL;
    cr_assert_eq(run_evbusd_check(&o, &e), 2);
    cr_assert(strstr(e, "abi-mismatch.so: ABI version 999, host supports 1"), "got: %s", e);
    cr_assert(strstr(e, "10-old.yaml:3:13:"), "no manifest position in: %s", e);
    free(o);
    free(e);
}

Test(core, init_failure_message_reaches_the_operator)
{
    char buf[1024];
    fx_host_conf(&F, "c1", NULL);
    snprintf(buf, sizeof buf, "plugins:\n  - name: broken\n    plugin: %s\n",
             fx_plugin("plugins/testkit/init-fail.so"));
    fx_conf(&F, "10-broken.yaml", buf);
    char *o = NULL, *e = NULL;
    cr_assert_eq(run_evbusd_check(&o, &e), 2);
    char want[2048];
    snprintf(want, sizeof want, "%s/10-broken.yaml:2:5: instance 'broken' (%s): init failed: "
             "init refused: missing 'path'\n", F.conf, fx_plugin("plugins/testkit/init-fail.so"));
    cr_assert_not_null(strstr(e, want), "missing: %sin: %s", want, e);
    free(o);
    free(e);
}

/* A `handler:` that names no subscriber is found with the libraries, before
 * any init() could leave a trace, and the valid names are listed. */
Test(core, unknown_handler_names_are_reported_before_any_init)
{
    char out[600], buf[2048];
    fx_path(&F, "rec.tsv", out, sizeof out);
    fx_host_conf(&F, "c1", NULL);
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: rec\n"
             "    plugin: %s\n"
             "    config: { out: %s }\n"
             "    subscriptions:\n"
             "      - { pattern: \"approval.**\", handler: recrod }\n",
             fx_plugin("plugins/testkit/testkit.so"), out);
    fx_conf(&F, "10-rec.yaml", buf);
    char *o = NULL, *e = NULL;
    cr_assert_eq(run_evbusd_check(&o, &e), 2, "stderr: %s", e);
    char want[1024];
    snprintf(want, sizeof want, "%s/10-rec.yaml:6:9: plugin 'testkit' has no handler named "
             "'recrod' (valid: record)\n", F.conf);
    cr_expect_not_null(strstr(e, want), "missing: %sin: %s", want, e);
    cr_expect_null(strstr(e, "ready"), "init() ran: %s", e);
    cr_expect_neq(access(out, F_OK), 0, "init() created %s", out);
    free(o);
    free(e);
}

/* dlerror() would name the private copy under state_dir: the operator
 * reads the path they wrote, and how to export the descriptor. */
Test(core, a_missing_descriptor_names_the_configured_file)
{
    char buf[1024];
    const char *so = fx_plugin("plugins/testkit/missing-symbol.so");
    fx_host_conf(&F, "c1", NULL);
    snprintf(buf, sizeof buf, "plugins:\n  - name: nosym\n    plugin: %s\n", so);
    fx_conf(&F, "10-nosym.yaml", buf);
    char *o = NULL, *e = NULL;
    cr_assert_eq(run_evbusd_check(&o, &e), 2);
    char want[2048];
    snprintf(want, sizeof want, "%s/10-nosym.yaml:3:13: %s: missing symbol "
             "evbus_plugin_descriptor: the library exports no function of that name; define it "
             "with EVBUS_PLUGIN() from <evbus/plugin.h>, or mark it EVBUS_PLUGIN_EXPORT when "
             "building with -fvisibility=hidden\n", F.conf, so);
    cr_assert_not_null(strstr(e, want), "missing: %sin: %s", want, e);
    cr_assert_null(strstr(e, F.state), "the private copy's path leaked: %s", e);
    free(o);
    free(e);
}

Test(core, two_instances_of_one_plugin_run_side_by_side)
{
    char a[600], b[600];
    fx_path(&F, "a.tsv", a, sizeof a);
    fx_path(&F, "b.tsv", b, sizeof b);
    fx_host_conf(&F, "c1", NULL);
    record_instance("10-a.yaml", "first", "A", a, "approval.**", 10);
    record_instance("20-b.yaml", "second", "B", b, "approval.item.approved", 20);
    fx_publish(&F, "e", 30, "approval.item.approved", "t1", FX_APPROVED_V2);
    fx_publish(&F, "r", 5, "approval.item.cancelled", "t1", "{\"x\":%d}");
    fx_evbusd(&F, "--exit-idle", "1000");
    cr_assert_eq(fx_evbusd_wait(&F, 30000), 0);
    cr_assert_eq(harness_count_lines(b), 30);
    /* the cancelled events are invalid for their schema: enforce -> DLQ */
    cr_assert_eq(harness_count_lines(a), 30);
    cr_assert_eq(fx_xlen(&F, "t:events:dlq"), 5);
    char *s = harness_read_file(b);
    cr_assert(strstr(s, "second\tB\te-0\t"));
    free(s);
}

Test(core, schema_modes_enforce_advisory_off)
{
    char enf[600], adv[600], off[600];
    fx_path(&F, "enf.tsv", enf, sizeof enf);
    fx_path(&F, "adv.tsv", adv, sizeof adv);
    fx_path(&F, "off.tsv", off, sizeof off);
    fx_host_conf(&F, "c1", NULL);
    char buf[4096];
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: enf\n    plugin: %s\n    config: { out: %s }\n"
             "    subscriptions: [ { pattern: \"approval.item.approved\", handler: record } ]\n"
             "  - name: adv\n    plugin: %s\n    config: { out: %s }\n"
             "    subscriptions: [ { pattern: \"workspace.**\", handler: record, schema_mode: advisory } ]\n"
             "  - name: off\n    plugin: %s\n    config: { out: %s }\n"
             "    subscriptions: [ { pattern: \"tenant.**\", handler: record, schema_mode: off } ]\n",
             fx_plugin("plugins/testkit/testkit.so"), enf, fx_plugin("plugins/testkit/testkit.so"),
             adv, fx_plugin("plugins/testkit/testkit.so"), off);
    fx_conf(&F, "10-modes.yaml", buf);
    fx_publish(&F, "bad", 3, "approval.item.approved", "t1", "{\"nope\":%d}");
    fx_publish(&F, "good", 2, "approval.item.approved", "t1", FX_APPROVED_V2);
    fx_publish(&F, "adv", 4, "workspace.space.created", "t1", "{\"nope\":%d}");
    fx_publish(&F, "off", 2, "tenant.account.created", "t1", "{\"nope\":%d}");
    fx_evbusd(&F, "--exit-idle", "1000");
    cr_assert_eq(fx_evbusd_wait(&F, 30000), 0);
    cr_assert_eq(harness_count_lines(enf), 2, "enforce must only deliver valid payloads");
    cr_assert_eq(harness_count_lines(adv), 4, "advisory delivers invalid payloads");
    cr_assert_eq(harness_count_lines(off), 2);
    cr_assert_eq(fx_xlen(&F, "t:events:dlq"), 3);
    cr_assert(fx_log_has(&F, "fails its schema (advisory, delivered)"));
    cr_assert(fx_log_has(&F, "schema_invalid"));
}

Test(core, old_versions_are_upcast_for_subscriptions_that_accept_only_newer)
{
    char v2[600], any[600];
    fx_path(&F, "v2.tsv", v2, sizeof v2);
    fx_path(&F, "any.tsv", any, sizeof any);
    fx_host_conf(&F, "c1", NULL);
    char buf[4096];
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: modern\n    plugin: %s\n    config: { out: %s }\n"
             "    subscriptions: [ { pattern: \"approval.**\", handler: record, versions: [2] } ]\n"
             "  - name: lenient\n    plugin: %s\n    config: { out: %s }\n"
             "    subscriptions: [ { pattern: \"approval.**\", handler: record } ]\n",
             fx_plugin("plugins/testkit/testkit.so"), v2, fx_plugin("plugins/testkit/testkit.so"),
             any);
    fx_conf(&F, "10-v.yaml", buf);
    fx_publish_raw(&F, "{\"specversion\":\"1.0\",\"id\":\"old-1\",\"source\":\"/t\","
                       "\"type\":\"approval.item.approved\",\"time\":\"2026-11-26T10:00:00Z\","
                       "\"tenantid\":\"t1\",\"schemaversion\":1,\"data\":"
                       "{\"approvalId\":\"3f2b7c1e-8a4d-4c55-9e21-0b6f5d7a9c10\",\"spaceId\":"
                       "\"9b1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f\",\"approverId\":"
                       "\"c0ffee00-1234-4abc-9def-0123456789ab\"}}");
    fx_publish_raw(&F, "{\"specversion\":\"1.0\",\"id\":\"future-1\",\"source\":\"/t\","
                       "\"type\":\"approval.item.approved\",\"time\":\"2026-11-26T10:00:00Z\","
                       "\"tenantid\":\"t1\",\"schemaversion\":9,\"data\":{}}");
    fx_evbusd(&F, "--exit-idle", "1000");
    cr_assert_eq(fx_evbusd_wait(&F, 30000), 0);
    char *s = harness_read_file(v2);
    cr_assert_not_null(s, "the v2-only handler got nothing");
    cr_assert(strstr(s, "\told-1\tapproval.item.approved\t0\t2\t"), "got: %s", s);
    cr_assert(strstr(s, "\"decidedBy\""), "data was not upcast: %s", s);
    free(s);
    s = harness_read_file(any);
    cr_assert(strstr(s, "\told-1\tapproval.item.approved\t0\t1\t"), "got: %s", s);
    cr_assert(strstr(s, "\"approverId\""));
    free(s);
    /* an unknown version is dead-lettered with its reason */
    cr_assert_eq(fx_xlen(&F, "t:events:dlq"), 1);
    redisContext *c = harness_redis_connect(&F.redis);
    redisReply *r = redisCommand(c, "XRANGE t:events:dlq - +");
    redisReply *fv = r->element[0]->element[1];
    bool found = false;
    for (size_t k = 0; k + 1 < fv->elements; k += 2)
        if (strcmp(fv->element[k]->str, "reason") == 0)
            found = strcmp(fv->element[k + 1]->str, "unknown_version") == 0;
    cr_assert(found);
    freeReplyObject(r);
    redisFree(c);
}

Test(core, foreign_function_handler_is_called_with_converted_parameters)
{
    char out[600], buf[2048];
    fx_path(&F, "notify.out", out, sizeof out);
    setenv("NOTIFY_EXAMPLE_OUT", out, 1);
    fx_host_conf(&F, "c1", NULL);
    snprintf(buf, sizeof buf,
             "foreign:\n"
             "  - name: notify\n"
             "    library: %s\n"
             "    symbol: notify\n"
             "    returns: int32\n"
             "    params:\n"
             "      - { type: string, from: /tenantid }\n"
             "      - { type: string, from: /data/approvalId }\n"
             "      - { type: int64, from: /data/amount }\n"
             "    subscriptions: [ { pattern: \"approval.**\", schema_mode: off } ]\n",
             fx_plugin("plugins/notify-example/libnotify-example.so"));
    fx_conf(&F, "10-notify.yaml", buf);
    fx_publish(&F, "p", 3, "approval.payment.requested", "acme",
               "{\"approvalId\":\"ap-%d\",\"amount\":1250}");
    fx_publish(&F, "neg", 1, "approval.payment.requested", "acme",
               "{\"approvalId\":\"ap-n%d\",\"amount\":-5}");
    fx_publish(&F, "miss", 1, "approval.payment.requested", "acme", "{\"approvalId\":\"ap-m%d\"}");
    fx_evbusd(&F, "--exit-idle", "1000");
    cr_assert_eq(fx_evbusd_wait(&F, 30000), 0);
    char *s = harness_read_file(out);
    cr_assert_not_null(s);
    cr_assert(strstr(s, "acme ap-0 1250\n") && strstr(s, "acme ap-2 1250\n"), "got: %s", s);
    free(s);
    /* negative return -> REJECT; missing field -> REJECT with the reason */
    cr_assert_eq(fx_xlen(&F, "t:events:dlq"), 2);
    unsetenv("NOTIFY_EXAMPLE_OUT");
}

Test(core, foreign_handlers_see_data_upcast_to_the_version_they_accept)
{
    char out[600], buf[4096];
    fx_path(&F, "notify.out", out, sizeof out);
    setenv("NOTIFY_EXAMPLE_OUT", out, 1);
    fx_host_conf(&F, "c1", NULL);
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: up\n"
             "    plugin: %s\n"
             "    config: { out: %s/rec.tsv }\n"
             "    subscriptions: [ { pattern: \"nobody.**\", handler: record } ]\n"
             "foreign:\n"
             "  - name: notify\n"
             "    library: %s\n"
             "    symbol: notify\n"
             "    params:\n"
             "      - { type: string, from: /tenantid }\n"
             "      - { type: string, from: /data/decidedBy/id }\n"
             "      - { type: int64, value: 7 }\n"
             "    subscriptions: [ { pattern: \"approval.**\", versions: [2] } ]\n",
             fx_plugin("plugins/testkit/testkit.so"), F.dir,
             fx_plugin("plugins/notify-example/libnotify-example.so"));
    fx_conf(&F, "10-up.yaml", buf);
    /* a v1 event: decidedBy only exists after testkit's 1 -> 2 upcaster */
    fx_publish_raw(&F, "{\"specversion\":\"1.0\",\"id\":\"old-1\",\"source\":\"/t\","
                       "\"type\":\"approval.item.approved\",\"time\":\"2026-11-26T10:00:00Z\","
                       "\"tenantid\":\"acme\",\"schemaversion\":1,\"data\":"
                       "{\"approvalId\":\"3f2b7c1e-8a4d-4c55-9e21-0b6f5d7a9c10\",\"spaceId\":"
                       "\"9b1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f\",\"approverId\":"
                       "\"c0ffee00-1234-4abc-9def-0123456789ab\"}}");
    fx_evbusd(&F, "--exit-idle", "1000");
    cr_assert_eq(fx_evbusd_wait(&F, 30000), 0);
    char *s = harness_read_file(out);
    cr_assert_not_null(s, "notify was not called");
    cr_assert_str_eq(s, "acme c0ffee00-1234-4abc-9def-0123456789ab 7\n");
    free(s);
    cr_assert_eq(fx_xlen(&F, "t:events:dlq"), 0);
    unsetenv("NOTIFY_EXAMPLE_OUT");
}

Test(core, health_endpoint_and_evbusctl_status_report_the_host)
{
    char buf[256];
    int port = harness_free_port();
    snprintf(buf, sizeof buf, "admin: { listen: \"127.0.0.1:%d\" }\n", port);
    fx_host_conf(&F, "c1", buf);
    char out[600];
    fx_path(&F, "rec.tsv", out, sizeof out);
    record_instance("10-rec.yaml", "rec", "a", out, "approval.**", 10);
    fx_evbusd(&F, NULL, NULL);
    char *bin = harness_build_path("host/ctl/evbusctl");
    char *argv[] = {bin, "-c", F.conf, "status", "--json", NULL};
    char *o = NULL, *e = NULL;
    int rc = -1;
    for (int i = 0; i < 50 && rc != 0; i++) {
        free(o);
        free(e);
        o = e = NULL;
        usleep(100000);
        rc = harness_run(argv, NULL, NULL, &o, &e, 10000);
    }
    cr_assert_eq(rc, 0, "status failed: %s", e);
    cr_assert(strstr(o, "\"status\":\"ok\"") && strstr(o, "\"generation\":1"), "got: %s", o);
    free(o);
    free(e);
    char *argv2[] = {bin, "-c", F.conf, "status", NULL};
    cr_assert_eq(harness_run(argv2, NULL, NULL, &o, &e, 10000), 0);
    cr_assert(strstr(o, "status:       ok"), "got: %s", o);
    free(o);
    free(e);
    free(bin);
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 15000), 0);
}
