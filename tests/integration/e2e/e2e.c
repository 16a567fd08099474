/*
 * e2e — see e2e.h.  A thin layer over the core fixture: it adds
 * PostgreSQL, evbusctl runs and the readers of the plugins' output files.
 */
#include "e2e.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void e2e_start(e2e_t *e, bool aof, bool pg)
{
    memset(e, 0, sizeof *e);
    fx_start(&e->fx, aof);
    fx_path(&e->fx, "rec.tsv", e->rec, sizeof e->rec);
    fx_path(&e->fx, "chaos-calls", e->calls, sizeof e->calls);
    e->admin_port = harness_free_port();
    if (pg) {
        cr_assert_eq(harness_pg_start(&e->pg), 0, "PostgreSQL did not start (see %s/pg.log)",
                     e->pg.dir);
        e->pg_on = true;
    }
}

void e2e_stop(e2e_t *e)
{
    fx_stop(&e->fx);
    if (e->pg_on)
        harness_pg_stop(&e->pg);
    e->pg_on = false;
}

void e2e_host_conf(e2e_t *e, const char *extra)
{
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "admin: { listen: \"127.0.0.1:%d\" }\n", e->admin_port);
    if (e->pg_on)
        n += snprintf(buf + n, sizeof buf - (size_t)n,
                      "postgres: { url: \"%s\", migrate_on_start: true }\n", e->pg.url);
    snprintf(buf + n, sizeof buf - (size_t)n, "%s", extra ? extra : "");
    fx_host_conf(&e->fx, "c1", buf);
}

void e2e_conf_file(e2e_t *e, const char *name, const char *yaml) { fx_conf(&e->fx, name, yaml); }

void e2e_plugins(e2e_t *e, const char *chaos_sub, const char *rec_sub)
{
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "plugins:\n");
    if (chaos_sub)
        n += snprintf(buf + n, sizeof buf - (size_t)n,
                      "  - name: chaos\n"
                      "    plugin: %s\n"
                      "    config: { count_file: %s }\n"
                      "    subscriptions:\n"
                      "      - %s\n",
                      fx_plugin("plugins/chaos/chaos.so"), e->calls, chaos_sub);
    if (rec_sub)
        snprintf(buf + n, sizeof buf - (size_t)n,
                 "  - name: rec\n"
                 "    plugin: %s\n"
                 "    config: { out: %s }\n"
                 "    subscriptions:\n"
                 "      - %s\n",
                 fx_plugin("plugins/testkit/testkit.so"), e->rec, rec_sub);
    fx_conf(&e->fx, "10-plugins.yaml", buf);
}

void e2e_evbusd(e2e_t *e, int exit_idle_ms)
{
    char idle[32];
    snprintf(idle, sizeof idle, "%d", exit_idle_ms);
    fx_evbusd(&e->fx, exit_idle_ms > 0 ? "--exit-idle" : NULL, idle);
}

typedef struct {
    e2e_t *e;
    int port;
} health_t;

static bool healthy(void *ud)
{
    health_t *h = ud;
    char admin[64];
    snprintf(admin, sizeof admin, "127.0.0.1:%d", h->port);
    return e2e_ctl(h->e, NULL, NULL, "status", "--json", "--admin", admin, NULL) == 0;
}

bool e2e_wait_healthy_at(e2e_t *e, int port, int timeout_ms)
{
    health_t h = {e, port};
    return harness_wait_until(healthy, &h, timeout_ms);
}

bool e2e_wait_healthy(e2e_t *e, int timeout_ms)
{
    return e2e_wait_healthy_at(e, e->admin_port, timeout_ms);
}

/* s with every occurrence of from replaced by to; malloc'd. */
static char *replace_all(const char *s, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to), n = 0;
    for (const char *p = strstr(s, from); p; p = strstr(p + fl, from))
        n++;
    char *out = malloc(strlen(s) + n * tl + 1), *o = out;
    for (const char *p; (p = strstr(s, from)); s = p + fl) {
        memcpy(o, s, (size_t)(p - s));
        o += p - s;
        memcpy(o, to, tl);
        o += tl;
    }
    strcpy(o, s);
    return out;
}

void e2e_start_clone(e2e_t *e, const char *name, const char *consumer, int admin_port,
                     harness_proc_t *proc)
{
    char conf[700], state[700], log[700], from_c[64], to_c[64], from_a[64], to_a[64];
    snprintf(conf, sizeof conf, "%s/%s", e->fx.dir, name);
    snprintf(state, sizeof state, "%s/%s-state", e->fx.dir, name);
    snprintf(log, sizeof log, "%s/%s.log", e->fx.dir, name);
    snprintf(from_c, sizeof from_c, "consumer: c1\n");
    snprintf(to_c, sizeof to_c, "consumer: %s\n", consumer);
    snprintf(from_a, sizeof from_a, "127.0.0.1:%d\"", e->admin_port);
    snprintf(to_a, sizeof to_a, "127.0.0.1:%d\"", admin_port);
    mkdir(state, 0700);
    DIR *d = opendir(e->fx.conf);
    cr_assert_not_null(d);
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.')
            continue;
        char path[1000];
        snprintf(path, sizeof path, "%s/%s", e->fx.conf, de->d_name);
        char *y = harness_read_file(path);
        cr_assert_not_null(y);
        char *a = replace_all(y, from_c, to_c);
        char *b = replace_all(a, from_a, to_a);
        char *c = replace_all(b, e->fx.state, state);
        cr_assert_eq(harness_write_file(conf, de->d_name, c), 0);
        free(y);
        free(a);
        free(b);
        free(c);
    }
    closedir(d);
    char *bin = harness_build_path("host/daemon/evbusd");
    char *argv[] = {bin, "-c", conf, NULL};
    cr_assert_eq(harness_spawn(proc, argv, NULL, log), 0);
    free(bin);
}

void e2e_run_until_idle(e2e_t *e, int idle_ms)
{
    e2e_evbusd(e, idle_ms);
    int st = fx_evbusd_wait(&e->fx, 60000);
    cr_assert_eq(st, 0, "evbusd exited with %d (log %s)", st, e->fx.log);
    e->fx.d.pid = 0;
}

static int ctl_v(e2e_t *e, char **out, char **err, va_list ap)
{
    char *bin = harness_build_path("host/ctl/evbusctl");
    char *argv[40] = {bin, "-c", e->fx.conf};
    int argc = 3;
    const char *a;
    while ((a = va_arg(ap, const char *)) && argc < 39)
        argv[argc++] = (char *)a;
    argv[argc] = NULL;
    char *o = NULL, *er = NULL;
    int rc = harness_run(argv, NULL, NULL, &o, &er, 30000);
    free(bin);
    if (out)
        *out = o;
    else
        free(o);
    if (err)
        *err = er;
    else
        free(er);
    return rc;
}

int e2e_ctl(e2e_t *e, char **out, char **err, ...)
{
    va_list ap;
    va_start(ap, err);
    int rc = ctl_v(e, out, err, ap);
    va_end(ap);
    return rc;
}

int e2e_ctl_json(e2e_t *e, json_t **json, ...)
{
    va_list ap;
    va_start(ap, json);
    char *out = NULL;
    int rc = ctl_v(e, &out, NULL, ap);
    va_end(ap);
    *json = out ? json_loads(out, JSON_DECODE_ANY, NULL) : NULL;
    free(out);
    return rc;
}

char *e2e_event(const char *id, const char *type, const char *tenant, const char *data,
                const char *extra)
{
    char *s = NULL;
    if (asprintf(&s,
                 "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"/tests/e2e\",\"type\":\"%s\","
                 "\"time\":\"2026-11-26T10:00:00Z\",\"tenantid\":\"%s\"%s%s,\"data\":%s}",
                 id, type, tenant, extra ? "," : "", extra ? extra : "", data) < 0)
        return NULL;
    return s;
}

int e2e_xadd(e2e_t *e, const char *sid, const char *json, char *out)
{
    redisContext *c = harness_redis_connect(&e->fx.redis);
    if (!c)
        return -1;
    redisReply *r = redisCommand(c, "XADD t:events %s event %s", sid, json);
    int rc = r && r->type == REDIS_REPLY_STRING ? 0 : -1;
    if (rc == 0 && out)
        snprintf(out, 64, "%s", r->str);
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return rc;
}

long long e2e_redis_int(e2e_t *e, const char *fmt, ...)
{
    redisContext *c = harness_redis_connect(&e->fx.redis);
    if (!c)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return v;
}

/* Lines of path split by sep whose column col equals want and, when want2
 * is given, column col2 equals want2.  The first match goes to *first. */
static size_t count_cols(const char *path, const char *sep, int col, const char *want, int col2,
                         const char *want2, char **first)
{
    char *s = harness_read_file(path);
    if (!s)
        return 0;
    size_t n = 0;
    char *save = NULL;
    for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *copy = first && !*first ? strdup(line) : NULL;
        char *cols[8] = {0};
        int k = 0;
        char *save2 = NULL;
        for (char *t = strtok_r(line, sep, &save2); t && k < 8; t = strtok_r(NULL, sep, &save2))
            cols[k++] = t;
        bool hit = col < k && strcmp(cols[col], want) == 0 &&
                   (!want2 || (col2 < k && strcmp(cols[col2], want2) == 0));
        if (hit) {
            n++;
            if (copy) {
                *first = copy;
                copy = NULL;
            }
        }
        free(copy);
    }
    free(s);
    return n;
}

size_t e2e_chaos_calls(const e2e_t *e, const char *id, const char *result)
{
    return count_cols(e->calls, " ", 1, id, 3, result, NULL);
}

size_t e2e_rec_calls(const e2e_t *e, const char *id, int replay)
{
    char r[8];
    snprintf(r, sizeof r, "%d", replay);
    return count_cols(e->rec, "\t", 2, id, 4, replay < 0 ? NULL : r, NULL);
}

char *e2e_rec_line(const e2e_t *e, const char *id, int replay)
{
    char r[8], *line = NULL;
    snprintf(r, sizeof r, "%d", replay);
    count_cols(e->rec, "\t", 2, id, 4, replay < 0 ? NULL : r, &line);
    return line;
}

bool e2e_wait_event_status(e2e_t *e, const char *id, const char *status, int timeout_ms,
                           json_t **row)
{
    long long end = harness_now_ms() + timeout_ms;
    json_t *j = NULL;
    bool ok = false;
    for (;;) {
        json_decref(j);
        j = NULL;
        int rc = e2e_ctl_json(e, &j, "events", "show", id, "--json", NULL);
        const char *st = json_string_value(json_object_get(j, "status"));
        if (rc == 0 && st && strcmp(st, status) == 0) {
            ok = true;
            break;
        }
        if (harness_now_ms() >= end)
            break;
        e2e_sleep_ms(100);
    }
    if (row)
        *row = j;
    else
        json_decref(j);
    return ok;
}

char *e2e_http_get(int port, const char *path, int *code)
{
    return harness_http_get(port, path, code);
}

long long e2e_metric(int port, const char *name)
{
    int code;
    char *body = e2e_http_get(port, "/metrics", &code);
    if (!body)
        return -1;
    long long v = -1;
    size_t nl = strlen(name);
    for (char *line = body; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, name, nl) == 0 && line[nl] == ' ') {
            v = strtoll(line + nl + 1, NULL, 10);
            break;
        }
    free(body);
    return v;
}

int64_t e2e_epoch_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void e2e_rfc3339(int64_t ms, char out[40])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char whole[32];
    strftime(whole, sizeof whole, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 40, "%.20s.%03dZ", whole, (int)(ms % 1000));
}

void e2e_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

char *e2e_approved_v2(int n)
{
    char *s = NULL;
    if (asprintf(&s, FX_APPROVED_V2, n) < 0)
        return NULL;
    return s;
}
