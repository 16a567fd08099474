/*
 * Every setting, changed by a reload: generated from the settings tables
 * (host/config/settings.h), so a new row without a reload behaviour fails
 * here.  For each row the test writes a changed value into its own
 * manifest, reloads the running evbusd and checks through the admin
 * endpoint that a `live` row is in force with the new value and a
 * `restart` row kept its running value and is listed as pending restart
 * with its file:line:column; then it removes the change and checks the
 * daemon is back.  Real redis-server, real PostgreSQL, real evbusd.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "config/settings.h"
#include "fixture.h"
#include "harness_pg.h"

static fx_t F;
static harness_pg_t PG;

static void setup(void)
{
    fx_start(&F, false);
    cr_assert_eq(harness_pg_start(&PG), 0, "PostgreSQL did not start");
}

static void teardown(void)
{
    fx_stop(&F);
    harness_pg_stop(&PG);
}

TestSuite(settings, .init = setup, .fini = teardown, .timeout = 600);

static json_t *get_json(const char *path, int *status)
{
    char *body = harness_http(F.admin_port, "GET", path, HARNESS_ADMIN_TOKEN, NULL, NULL, status,
                              NULL);
    cr_assert(body, "GET %s failed", path);
    json_t *j = json_loads(body, 0, NULL);
    cr_assert(j, "GET %s: not JSON: %s", path, body);
    free(body);
    return j;
}

static long long reloads_done(void)
{
    int st;
    json_t *h = get_json("/health", &st);
    json_t *r = json_object_get(h, "reload");
    long long n = json_integer_value(json_object_get(r, "ok_total")) +
                  json_integer_value(json_object_get(r, "failed_total")) +
                  json_integer_value(json_object_get(r, "partial_total"));
    json_decref(h);
    return n;
}

/* SIGHUP and wait for its outcome; asserts the reload did not fail. */
static void reload(const char *why)
{
    long long before = reloads_done();
    kill(F.d.pid, SIGHUP);
    for (int i = 0; i < 1000 && reloads_done() == before; i++)
        usleep(10000);
    int st;
    json_t *h = get_json("/health", &st);
    json_t *r = json_object_get(h, "reload");
    cr_assert(reloads_done() > before, "%s: no reload outcome", why);
    cr_assert(json_is_true(json_object_get(r, "last_ok")), "%s: reload failed: %s", why,
              json_string_value(json_object_get(r, "last_error")));
    json_decref(h);
}

/* The /config row of key. */
static json_t *config_row(json_t *cfg, const char *key)
{
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(cfg, "settings"), i, row)
    {
        if (!strcmp(json_string_value(json_object_get(row, "key")), key))
            return row;
    }
    cr_assert_fail("GET /config has no row %s", key);
    return NULL;
}

/* A valid value different from `cur` for row s, as text. */
static void changed_value(const cfg_setting_t *s, const char *cur, char *out, size_t len)
{
    struct stat st;
    switch (s->type) {
    case CFG_U32: {
        double v = strtod(cur, NULL);
        snprintf(out, len, "%.0f", v + 1 <= s->max ? v + 1 : v - 1);
        return;
    }
    case CFG_DOUBLE: {
        double v = strtod(cur, NULL);
        snprintf(out, len, "%g", v + 0.5 <= s->max ? v + 0.5 : v / 2);
        return;
    }
    case CFG_BOOL:
        snprintf(out, len, "%s", strcmp(cur, "true") ? "true" : "false");
        return;
    case CFG_LISTEN: {
        const char *colon = strrchr(cur, ':');
        snprintf(out, len, "%.*s:%ld", (int)(colon - cur), cur, strtol(colon + 1, NULL, 10) + 1);
        return;
    }
    case CFG_DURATION:
    case CFG_SIZE: {
        /* through the library's own parser and printer: canonical text */
        evbus_config_t tmp;
        memset(&tmp, 0, sizeof tmp);
        tmp.sources = calloc(cfg_settings_count(), sizeof *tmp.sources);
        size_t idx;
        cfg_setting_find(s->key, &idx);
        char err[256];
        cr_assert_eq(cfg_value_set(&tmp, idx, cur, err, sizeof err), 0, "%s: %s", s->key, err);
        uint64_t *v = (uint64_t *)((char *)&tmp + s->offset);
        uint64_t step = s->type == CFG_DURATION ? 1000 : 1024;
        *v = (double)(*v + step) <= s->max ? *v + step : *v - step;
        cfg_value_text(&tmp, idx, out, len);
        free(tmp.sources);
        return;
    }
    case CFG_STRLIST:
        snprintf(out, len, "%s", strcmp(cur, "all") ? "all" : "g");
        return;
    case CFG_PATH:
        /* the same place spelled differently, so the daemon keeps working;
         * an absent optional path becomes an absolute one */
        if (!*cur) {
            snprintf(out, len, "%s/absent.pem", F.conf);
            return;
        }
        snprintf(out, len, "%s%s", cur, stat(cur, &st) == 0 && S_ISDIR(st.st_mode) ? "/." : ".x");
        return;
    case CFG_ENUM:
    case CFG_STRING:
        if (s->names) {
            size_t n = 0, at = 0;
            for (; s->names[n]; n++)
                if (!strcmp(s->names[n], cur))
                    at = n;
            snprintf(out, len, "%s", s->names[(at + 1) % n]);
        } else {
            snprintf(out, len, "%sx", cur);
        }
        return;
    }
}

/* "a.b.c" = v as a one-line manifest: a: { b: { c: "v" } } */
static void write_change(const char *key, const char *value)
{
    char yaml[4096] = "", seg[128];
    if (!strncmp(key, "admin.tls.", 10)) {
        /* cert and key go together (one alone is a config error) */
        snprintf(yaml, sizeof yaml, "admin: { tls: { cert: \"%s\", key: \"%s\" } }\n", value,
                 value);
        fx_conf(&F, "90-change.yaml", yaml);
        return;
    }
    int depth = 0;
    for (const char *p = key; *p;) {
        size_t n = strcspn(p, ".");
        snprintf(seg, sizeof seg, "%.*s", (int)n, p);
        p += n;
        if (*p == '.') {
            p++;
            strcat(yaml, seg);
            strcat(yaml, ": { ");
            depth++;
        } else {
            strcat(yaml, seg);
            strcat(yaml, ": \"");
            strcat(yaml, value);
            strcat(yaml, "\"");
        }
    }
    while (depth--)
        strcat(yaml, " }");
    strcat(yaml, "\n");
    fx_conf(&F, "90-change.yaml", yaml);
}

static bool same_value(const cfg_setting_t *s, const char *a, const char *b)
{
    if (s->type == CFG_DOUBLE)
        return fabs(strtod(a, NULL) - strtod(b, NULL)) < 1e-9;
    return !strcmp(a, b);
}

/*
 * redis.cluster beside the fixture's redis.url is a configuration error
 * (the two are exclusive), so a reload that adds it fails whole, naming
 * both positions, and the daemon keeps serving; once the change is gone a
 * reload succeeds again.
 */
static void cluster_reload_is_refused(const char *change_file)
{
    write_change("redis.cluster", "redis://127.0.0.1:7000");
    long long before = reloads_done();
    kill(F.d.pid, SIGHUP);
    for (int i = 0; i < 1000 && reloads_done() == before; i++)
        usleep(10000);
    int st;
    json_t *h = get_json("/health", &st);
    json_t *r = json_object_get(h, "reload");
    cr_expect(reloads_done() > before, "redis.cluster: no reload outcome");
    cr_expect(json_is_false(json_object_get(r, "last_ok")), "redis.cluster: reload accepted");
    const char *why = json_string_value(json_object_get(r, "last_error"));
    char at[800];
    snprintf(at, sizeof at, "%s:1:", change_file);
    cr_expect(why && strstr(why, "redis.cluster: exclusive with redis.url (set at ") &&
                  strstr(why, at),
              "redis.cluster: reload error %s", why ? why : "(none)");
    json_decref(h);
    cr_assert_eq(unlink(change_file), 0);
    reload("redis.cluster");
}

static void start_daemon(void)
{
    F.admin_port = harness_free_port();
    char extra[1024], hash[72];
    harness_token_hash(HARNESS_ADMIN_TOKEN, hash);
    snprintf(extra, sizeof extra,
             "admin: { listen: \"127.0.0.1:%d\", tokens: [ { name: harness, hash: \"%s\", "
             "roles: [admin], tenant: \"*\" } ],\n"
             "  rate_limit: { per_token_per_s: 100000, burst: 100000 } }\n"
             "postgres: { url: \"%s\", migrate_on_start: true }\n",
             F.admin_port, hash, PG.url);
    fx_host_conf(&F, "c1", extra);
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
}

Test(settings, every_setting_is_applied_by_a_reload_or_reported_as_pending_restart)
{
    start_daemon();
    char change_file[700];
    snprintf(change_file, sizeof change_file, "%s/90-change.yaml", F.conf);
    size_t n = cfg_settings_count(), live = 0, restart = 0, used = 0;
    cr_assert(n > 40, "only %zu settings rows?", n);
    for (size_t i = 0; i < n; i++) {
        const cfg_setting_t *s = cfg_setting_at(i);
        int st;
        json_t *before = get_json("/api/v1/config", &st);
        char cur[900], now[1024];
        snprintf(cur, sizeof cur, "%s",
                 json_string_value(json_object_get(config_row(before, s->key), "value")));
        json_decref(before);
        if (!strcmp(s->key, "redis.cluster")) {
            cluster_reload_is_refused(change_file);
            continue;
        }
        changed_value(s, cur, now, sizeof now);
        cr_assert(strcmp(cur, now), "%s: no different value", s->key);

        write_change(s->key, now);
        reload(s->key);
        json_t *cfg = get_json("/api/v1/config", &st);
        json_t *row = config_row(cfg, s->key);
        const char *in_force = json_string_value(json_object_get(row, "value"));
        const char *pend = json_string_value(json_object_get(row, "pending_restart"));
        json_t *rl = json_object_get(cfg, "reload");
        if (s->reload == CFG_LIVE) {
            live++;
            cr_expect(same_value(s, in_force, now), "%s is live: in force %s, wanted %s",
                      s->key, in_force, now);
            cr_expect_null(pend, "%s is live but reported pending", s->key);
            cr_expect_str_eq(json_string_value(json_object_get(rl, "status")), "ok", "%s",
                             s->key);
            char src[800];
            snprintf(src, sizeof src, "%s:1:", change_file);
            cr_expect(!strncmp(json_string_value(json_object_get(row, "source")), src,
                               strlen(src)),
                      "%s: source %s", s->key, json_string_value(json_object_get(row, "source")));
        } else {
            restart++;
            cr_expect(same_value(s, in_force, cur), "%s needs a restart: in force %s, wanted "
                      "the running %s", s->key, in_force, cur);
            cr_expect(pend && same_value(s, pend, now), "%s: pending %s, wanted %s", s->key,
                      pend ? pend : "(none)", now);
            cr_expect_str_eq(json_string_value(json_object_get(rl, "status")), "partial", "%s",
                             s->key);
            /* the position of the change, in /health's pending list */
            bool found = false;
            size_t k;
            json_t *p;
            json_array_foreach(json_object_get(rl, "pending_restart"), k, p)
            {
                if (strcmp(json_string_value(json_object_get(p, "key")), s->key))
                    continue;
                found = true;
                const char *at = json_string_value(json_object_get(p, "at"));
                cr_expect(!strncmp(at, change_file, strlen(change_file)) &&
                              !strncmp(at + strlen(change_file), ":1:", 3),
                          "%s: pending at %s", s->key, at);
                cr_expect_str_eq(json_string_value(json_object_get(p, "running")), cur);
            }
            cr_expect(found, "%s missing from reload.pending_restart", s->key);
            int mst;
            char *metrics = harness_http_get(F.admin_port, "/metrics", &mst);
            cr_expect(metrics && strstr(metrics, "evbus_reload_pending_restart_settings "),
                      "%s", s->key);
            cr_expect(metrics && !strstr(metrics, "evbus_reload_pending_restart_settings 0\n"),
                      "%s: the pending-restart gauge stayed 0", s->key);
            free(metrics);
        }
        /* not only the generation: what the engine's threads use */
        json_t *h = get_json("/health", &st);
        json_t *use = json_object_get(json_object_get(h, "settings_in_use"), s->key);
        if (use) {
            char u[64];
            snprintf(u, sizeof u, "%s",
                     json_is_boolean(use) ? (json_is_true(use) ? "true" : "false") : "");
            if (!u[0])
                snprintf(u, sizeof u, "%lld", (long long)json_integer_value(use));
            cr_expect_str_eq(u, s->reload == CFG_LIVE ? now : cur, "%s in use", s->key);
            used++;
        }
        if (!strcmp(s->key, "dlq.capacity"))
            cr_expect_eq(json_integer_value(json_object_get(json_object_get(h, "dlq"),
                                                            "capacity")),
                         strtoll(now, NULL, 10));
        json_decref(h);
        json_decref(cfg);

        /* back to the base configuration */
        cr_assert_eq(unlink(change_file), 0);
        reload(s->key);
        cfg = get_json("/api/v1/config", &st);
        row = config_row(cfg, s->key);
        cr_expect(same_value(s, json_string_value(json_object_get(row, "value")), cur),
                  "%s: not back to %s", s->key, cur);
        cr_expect_null(json_object_get(row, "pending_restart"), "%s still pending", s->key);
        json_decref(cfg);
    }
    cr_expect(live > 20 && restart > 10, "live %zu, restart %zu", live, restart);
    cr_expect_eq(used, 12, "settings checked in the engine's own view: %zu", used);
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
}

Test(settings, tools_report_a_partial_reload)
{
    start_daemon();
    char *ctl = harness_build_path("host/ctl/evbusctl");
    char *evbusd = harness_build_path("host/daemon/evbusd");
    char *o = NULL, *e = NULL;
    fx_conf(&F, "90-change.yaml", "worker_threads: 3\ndlq: { capacity: 77 }\n");

    /* before the reload: which change would wait for a restart */
    char *diff[] = {evbusd, "-c", F.conf, "--check-config", "--diff-running", NULL};
    cr_assert_eq(harness_run(diff, NULL, NULL, &o, &e, 20000), 0, "%s", e);
    char want[800];
    snprintf(want, sizeof want, "%s/90-change.yaml:1:17: worker_threads: needs a restart: "
             "running 2, files say 3\n", F.conf);
    cr_expect(strstr(o, want), "got %s", o);
    cr_expect(strstr(o, "1 live change would apply on reload; 1 change would wait"), "got %s",
              o);
    free(o);
    free(e);

    /* the reload itself: exit 3 (partial), the setting named with its position;
     * evbusctl sends the operator token it finds in EVBUS_TOKEN */
    setenv("EVBUS_TOKEN", HARNESS_ADMIN_TOKEN, 1);
    char *rl[] = {ctl, "-c", F.conf, "reload", NULL};
    cr_assert_eq(harness_run(rl, NULL, NULL, &o, &e, 20000), 3, "%s %s", o, e);
    cr_expect(strstr(o, want), "got %s", o);
    cr_expect(strstr(o, "reload partial: generation 2 live"), "got %s", o);
    free(o);
    free(e);
    cr_expect(fx_log_has(&F, "worker_threads: changed from 2 to 3 but needs a restart"));

    /* config show: the value in force, its source, and the pending change */
    char *show[] = {ctl, "-c", F.conf, "config", "show", "--json", NULL};
    cr_assert_eq(harness_run(show, NULL, NULL, &o, &e, 20000), 0, "%s", e);
    json_t *j = json_loads(o, 0, NULL);
    cr_assert(j, "%s", o);
    size_t i;
    json_t *row;
    int seen = 0;
    json_array_foreach(json_object_get(j, "settings"), i, row)
    {
        const char *key = json_string_value(json_object_get(row, "key"));
        if (!strcmp(key, "worker_threads")) {
            seen++;
            cr_expect_str_eq(json_string_value(json_object_get(row, "value")), "2");
            cr_expect_str_eq(json_string_value(json_object_get(row, "pending_restart")), "3");
            cr_expect_str_eq(json_string_value(json_object_get(row, "reload")), "restart");
        } else if (!strcmp(key, "dlq.capacity")) {
            seen++;
            cr_expect_str_eq(json_string_value(json_object_get(row, "value")), "77");
            snprintf(want, sizeof want, "%s/90-change.yaml:2:18", F.conf);
            cr_expect_str_eq(json_string_value(json_object_get(row, "source")), want);
        } else if (!strcmp(key, "retry.factor")) {
            seen++;
            cr_expect_str_eq(json_string_value(json_object_get(row, "value")), "2.0");
            snprintf(want, sizeof want, "%s/00-host.yaml:", F.conf);
            cr_expect(!strncmp(json_string_value(json_object_get(row, "source")), want,
                               strlen(want)));
        } else if (!strcmp(key, "redis.connect_timeout_ms")) {
            seen++;
            cr_expect_str_eq(json_string_value(json_object_get(row, "source")), "default");
        }
    }
    cr_expect_eq(seen, 4);
    json_decref(j);
    free(o);
    free(e);

    /* a reload with nothing pending is ok (exit 0); a broken one fails (exit 1) */
    fx_conf(&F, "90-change.yaml", "dlq: { capacity: 78 }\n");
    cr_assert_eq(harness_run(rl, NULL, NULL, &o, &e, 20000), 0, "%s %s", o, e);
    cr_expect(strstr(o, "reload ok: generation 3 live"), "got %s", o);
    free(o);
    free(e);
    fx_conf(&F, "90-change.yaml", "dlq: { capacity: 0 }\n");
    char adm[64];
    snprintf(adm, sizeof adm, "127.0.0.1:%d", F.admin_port);
    char *rl_admin[] = {ctl, "reload", "--admin", adm, NULL};
    cr_assert_eq(harness_run(rl_admin, NULL, NULL, &o, &e, 20000), 1, "%s %s", o, e);
    snprintf(want, sizeof want, "%s/90-change.yaml:1:18: dlq.capacity: must be at least 1, got 0",
             F.conf);
    cr_expect(strstr(e, want), "got %s", e);
    free(o);
    free(e);
    free(ctl);
    free(evbusd);
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
}
