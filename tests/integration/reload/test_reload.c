/*
 * Hot reload: SIGHUP under load, broken manifests, removed subscriptions,
 * replaced plugin files.  Real redis-server, real evbusd, real .so files.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"

static fx_t F;

static void setup(void) { fx_start(&F, false); }
static void teardown(void) { fx_stop(&F); }

TestSuite(reload, .init = setup, .fini = teardown, .timeout = 300);

static int count_in_log(const char *needle)
{
    char *s = harness_read_file(F.log);
    int n = 0;
    for (char *p = s; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    free(s);
    return n;
}

/* SIGHUP, then wait until one more reload outcome is logged. */
static bool reload_and_wait(void)
{
    if (!fx_wait_log(&F, " started (pid ", 20000))
        return false;
    int before = count_in_log(" live ") + count_in_log("keeps serving");
    kill(F.d.pid, SIGHUP);
    for (int i = 0; i < 500; i++) {
        if (count_in_log(" live ") + count_in_log("keeps serving") > before)
            return true;
        usleep(10000);
    }
    return false;
}

static void instance(const char *file, const char *name, const char *plugin, const char *tag,
                     const char *out, const char *pattern)
{
    char buf[2048];
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: %s\n"
             "    plugin: %s\n"
             "    config: { out: %s, tag: %s }\n"
             "    subscriptions: [ { pattern: \"%s\", priority: 10, handler: record } ]\n",
             name, plugin, out, tag, pattern);
    fx_conf(&F, file, buf);
}

/* Copy a file through a temp name and rename(2), as a deploy would. */
static void install_so(const char *from, const char *to)
{
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp", to);
    char *argv[] = {"/bin/cp", (char *)from, tmp, NULL};
    cr_assert_eq(harness_run(argv, NULL, NULL, NULL, NULL, 10000), 0);
    cr_assert_eq(rename(tmp, to), 0);
}



typedef struct publisher {
    fx_t *f;
    atomic_bool stop;
    atomic_int sent;
} publisher_t;

static void *publish_loop(void *arg)
{
    publisher_t *p = arg;
    redisContext *c = harness_redis_connect(&p->f->redis);
    while (!atomic_load(&p->stop)) {
        int i = atomic_load(&p->sent);
        char ev[2048], data[600];
        snprintf(data, sizeof data, FX_APPROVED_V2, i);
        snprintf(ev, sizeof ev,
                 "{\"specversion\":\"1.0\",\"id\":\"s-%d\",\"source\":\"/t\",\"type\":"
                 "\"approval.item.approved\",\"time\":\"2026-11-26T10:00:00Z\",\"tenantid\":"
                 "\"t1\",\"data\":%s}",
                 i, data);
        redisReply *r = redisCommand(c, "XADD t:events * event %s", ev);
        if (r && r->type == REDIS_REPLY_STRING)
            atomic_fetch_add(&p->sent, 1);
        if (r)
            freeReplyObject(r);
        usleep(2000);
    }
    redisFree(c);
    return NULL;
}

/* Lines of `path` mentioning event id `id`. */
static int lines_with(const char *path, const char *id)
{
    char needle[128];
    snprintf(needle, sizeof needle, "\t%s\t", id);
    char *s = harness_read_file(path);
    int n = 0;
    for (char *p = s; p && (p = strstr(p, needle)); p++)
        n++;
    free(s);
    return n;
}

Test(reload, storm_of_50_sighups_under_load_loses_nothing)
{
    char out[600], so[600];
    fx_path(&F, "rec.tsv", out, sizeof out);
    fx_path(&F, "testkit.so", so, sizeof so);
    install_so(fx_plugin("plugins/testkit/testkit.so"), so);
    fx_host_conf(&F, "c1", NULL);
    instance("10-rec.yaml", "rec", so, "v0", out, "approval.**");
    fx_evbusd(&F, NULL, NULL);
    publisher_t pub = {.f = &F};
    pthread_t t;
    pthread_create(&t, NULL, publish_loop, &pub);
    int ok = 0, failed = 0, swapped = 0;
    for (int i = 1; i <= 50; i++) {
        bool broken = i % 7 == 0;
        if (broken)
            fx_conf(&F, "50-broken.yaml", "plugins:\n  - name: rec\n    plugin: nowhere\n");
        else if (i % 5 == 0) { /* a changed config: new tag, same routes */
            char tag[16];
            snprintf(tag, sizeof tag, "v%d", i);
            instance("10-rec.yaml", "rec", so, tag, out, "approval.**");
        }
        if (i % 10 == 0) { /* a new .so on disk */
            install_so(fx_plugin(swapped % 2 ? "plugins/testkit/testkit.so"
                                             : "plugins/testkit/testkit-v2.so"), so);
            swapped++;
        }
        cr_assert(reload_and_wait(), "reload %d never finished", i);
        if (broken) {
            failed++;
            char p[700];
            snprintf(p, sizeof p, "%s/50-broken.yaml", F.conf);
            unlink(p);
        } else {
            ok++;
        }
        cr_assert_eq(kill(F.d.pid, 0), 0, "evbusd exited during reload %d", i);
    }
    atomic_store(&pub.stop, true);
    pthread_join(t, NULL);
    int sent = atomic_load(&pub.sent);
    cr_assert_gt(sent, 100, "the publisher barely ran (%d)", sent);
    cr_assert(fx_wait_drained(&F, 60000), "the stream was not drained after the storm");
    cr_assert_eq(count_in_log("reload failed"), failed);
    cr_assert_eq(count_in_log(" live "), ok);
    /* every event handled (at least once), nothing dead-lettered */
    for (int i = 0; i < sent; i++) {
        char id[32];
        snprintf(id, sizeof id, "s-%d", i);
        cr_assert_geq(lines_with(out, id), 1, "event %s was lost", id);
    }
    cr_assert_eq(fx_xlen(&F, "t:events:dlq"), 0);
    /* the replaced .so really loaded its new code */
    cr_assert_geq(count_in_log("testkit 2.0.0 ready"), 1);
    /* after the last successful reload the new config is what runs */
    fx_publish(&F, "after", 1, "approval.item.approved", "t1", FX_APPROVED_V2);
    cr_assert(fx_wait_lines(out, (size_t)sent + 1, 20000));
    char *s = harness_read_file(out);
    cr_assert(strstr(s, "rec\tv50\tafter-0\t"), "the last config (tag v50) did not route");
    free(s);
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0, "evbusd did not stop cleanly (ASan?)");
}

Test(reload, a_removed_subscription_stops_receiving_events)
{
    char a[600], b[600];
    fx_path(&F, "a.tsv", a, sizeof a);
    fx_path(&F, "b.tsv", b, sizeof b);
    const char *so = fx_plugin("plugins/testkit/testkit.so");
    fx_host_conf(&F, "c1", NULL);
    instance("10-a.yaml", "a", so, "A", a, "approval.**");
    instance("20-b.yaml", "b", so, "B", b, "approval.**");
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    fx_publish(&F, "one", 5, "approval.item.approved", "t1", FX_APPROVED_V2);
    cr_assert(fx_wait_lines(b, 5, 20000));
    char p[700];
    snprintf(p, sizeof p, "%s/20-b.yaml", F.conf);
    unlink(p);
    cr_assert(reload_and_wait());
    cr_assert(fx_log_has(&F, "generation 2 live"));
    fx_publish(&F, "two", 5, "approval.item.approved", "t1", FX_APPROVED_V2);
    cr_assert(fx_wait_lines(a, 10, 20000));
    cr_assert(fx_wait_drained(&F, 20000));
    cr_assert_eq(harness_count_lines(b), 5, "the removed subscription still received events");
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
}

Test(reload, a_broken_manifest_keeps_the_old_routes_and_shows_in_health)
{
    char a[600], buf[128];
    fx_path(&F, "a.tsv", a, sizeof a);
    int port = harness_free_port();
    snprintf(buf, sizeof buf, "admin: { listen: \"127.0.0.1:%d\" }\n", port);
    fx_host_conf(&F, "c1", buf);
    instance("10-a.yaml", "a", fx_plugin("plugins/testkit/testkit.so"), "A", a, "approval.**");
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    fx_conf(&F, "20-broken.yaml", "plugins:\n  - name: x\n    plugin: nowhere\n    surprise: 1\n");
    cr_assert(reload_and_wait());
    cr_assert(fx_log_has(&F, "reload failed; generation 1 keeps serving"));
    fx_publish(&F, "e", 3, "approval.item.approved", "t1", FX_APPROVED_V2);
    cr_assert(fx_wait_lines(a, 3, 20000), "the old routes stopped working");
    char *bin = harness_build_path("host/ctl/evbusctl");
    char *argv[] = {bin, "-c", F.conf, "status", "--json", "--admin", NULL, NULL};
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    argv[6] = addr;
    char *o = NULL, *e = NULL;
    /* --admin alone: status needs no configuration at all */
    char *argv2[] = {bin, "status", "--json", "--admin", addr, NULL};
    cr_assert_eq(harness_run(argv2, NULL, NULL, &o, &e, 10000), 0, "%s", e);
    cr_assert(strstr(o, "\"last_ok\":false"), "got %s", o);
    cr_assert(strstr(o, "20-broken.yaml:4:5:"), "the error lacks its position: %s", o);
    cr_assert(strstr(o, "\"status\":\"degraded\""), "got %s", o);
    free(o);
    free(e);
    char *m = harness_http_get(port, "/metrics", NULL);
    cr_assert_not_null(m);
    cr_assert(strstr(m, "evbus_reloads_total{result=\"failed\"} 1\n"), "metrics: %s", m);
    cr_assert(strstr(m, "evbus_reloads_total{result=\"ok\"} 0\n"));
    free(m);
    (void)argv;
    /* fixing the file and reloading clears the error */
    char p[700];
    snprintf(p, sizeof p, "%s/20-broken.yaml", F.conf);
    unlink(p);
    cr_assert(reload_and_wait());
    cr_assert_eq(harness_run(argv2, NULL, NULL, &o, &e, 10000), 0);
    cr_assert(strstr(o, "\"last_ok\":true"), "got %s", o);
    free(o);
    free(e);
    free(bin);
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
}

Test(reload, a_plugin_config_typo_fails_the_reload_at_its_position_and_keeps_the_old_instance)
{
    char a[600], buf[2048], want[1200];
    fx_path(&F, "a.tsv", a, sizeof a);
    fx_host_conf(&F, "c1", NULL);
    const char *so = fx_plugin("plugins/testkit/testkit.so");
    instance("10-a.yaml", "a", so, "A", a, "approval.**");
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    /* the same instance with `tag` misspelt */
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: a\n"
             "    plugin: %s\n"
             "    config: { out: %s, tga: B }\n"
             "    subscriptions: [ { pattern: \"approval.**\", priority: 10, handler: record } ]\n",
             so, a);
    fx_conf(&F, "10-a.yaml", buf);
    cr_assert(reload_and_wait());
    snprintf(want, sizeof want,
             "%s/10-a.yaml:4:%zu: unknown key 'tga' in config of plugin instance 'a' (valid: out, "
             "tag, init_sleep_ms)",
             F.conf, 22 + strlen(a));
    cr_assert(fx_log_has(&F, want), "no positioned error %s in the log", want);
    cr_assert(fx_log_has(&F, "reload failed; generation 1 keeps serving"));
    fx_publish(&F, "e", 3, "approval.item.approved", "t1", FX_APPROVED_V2);
    cr_assert(fx_wait_lines(a, 3, 20000), "the old instance stopped handling");
    char *s = harness_read_file(a);
    cr_assert(strstr(s, "a\tA\te-0\t"), "not the old instance's tag: %s", s);
    free(s);
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
}

Test(reload, evbusctl_reload_signals_the_pidfile_and_check_config_agrees)
{
    char a[600];
    fx_path(&F, "a.tsv", a, sizeof a);
    fx_host_conf(&F, "c1", NULL);
    instance("10-a.yaml", "a", fx_plugin("plugins/testkit/testkit.so"), "A", a, "approval.**");
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    char pidfile[700];
    snprintf(pidfile, sizeof pidfile, "%s/evbusd.pid", F.state);
    for (int i = 0; i < 100 && access(pidfile, R_OK) != 0; i++)
        usleep(20000);
    char *ctl = harness_build_path("host/ctl/evbusctl");
    char *evbusd = harness_build_path("host/daemon/evbusd");
    /* a broken file: --check-config says so, and the reload fails the same way */
    fx_conf(&F, "20-bad.yaml", "plugins:\n  - { name: a, plugin: nowhere }\n");
    char *chk[] = {evbusd, "-c", F.conf, "--check-config", NULL};
    char *o = NULL, *e = NULL;
    cr_assert_eq(harness_run(chk, NULL, NULL, &o, &e, 20000), 2);
    cr_assert(strstr(e, "20-bad.yaml:2:"), "got %s", e);
    free(o);
    free(e);
    char *rl[] = {ctl, "reload", "--pidfile", pidfile, NULL};
    int before = count_in_log("keeps serving");
    /* evbusctl reload waits for the outcome: failed, with the position */
    cr_assert_eq(harness_run(rl, NULL, NULL, &o, &e, 10000), 1, "%s", e);
    cr_assert(strstr(e, "20-bad.yaml:2:"), "got %s", e);
    cr_assert(strstr(e, "the reload failed; generation 1 keeps serving"), "got %s", e);
    free(o);
    free(e);
    for (int i = 0; i < 300 && count_in_log("keeps serving") == before; i++)
        usleep(10000);
    cr_assert_eq(count_in_log("keeps serving"), before + 1);
    char p[700];
    snprintf(p, sizeof p, "%s/20-bad.yaml", F.conf);
    unlink(p);
    cr_assert_eq(harness_run(chk, NULL, NULL, &o, &e, 20000), 0);
    cr_assert_str_eq(o, "OK\n");
    free(o);
    free(e);
    cr_assert_eq(harness_run(rl, NULL, NULL, &o, &e, 10000), 0, "%s", e);
    cr_assert_str_eq(o, "reload ok: generation 2 live\n");
    free(o);
    free(e);
    for (int i = 0; i < 300 && !fx_log_has(&F, "generation 2 live"); i++)
        usleep(10000);
    cr_assert(fx_log_has(&F, "generation 2 live"));
    free(ctl);
    free(evbusd);
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
}

Test(reload, a_sighup_during_a_reload_schedules_exactly_one_more)
{
    char a[600], buf[2048];
    fx_path(&F, "a.tsv", a, sizeof a);
    fx_host_conf(&F, "c1", NULL);
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: slow\n"
             "    plugin: %s\n"
             "    config: { out: %s, init_sleep_ms: 600 }\n"
             "    subscriptions: [ { pattern: \"approval.**\", handler: record } ]\n",
             fx_plugin("plugins/testkit/testkit.so"), a);
    fx_conf(&F, "10-slow.yaml", buf);
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    kill(F.d.pid, SIGHUP);
    cr_assert(fx_wait_log(&F, "reloading ", 5000));
    /* three more while the first reload sits in the plugin's slow init */
    kill(F.d.pid, SIGHUP);
    kill(F.d.pid, SIGHUP);
    kill(F.d.pid, SIGHUP);
    cr_assert(fx_wait_log(&F, "generation 3 live", 10000), "the coalesced SIGHUP was lost");
    usleep(1500 * 1000); /* a third reload would have finished by now */
    cr_assert_eq(count_in_log("reloading "), 2, "signals during a reload must coalesce into one");
    cr_assert(!fx_log_has(&F, "generation 4 live"));
    cr_assert_eq(kill(F.d.pid, 0), 0);
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
}
