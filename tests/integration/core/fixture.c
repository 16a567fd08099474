/* fixture — see fixture.h. */
#include "fixture.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void fx_path(const fx_t *f, const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", f->dir, name);
}

void fx_start(fx_t *f, bool aof)
{
    memset(f, 0, sizeof *f);
    cr_assert_eq(harness_redis_start(&f->redis, aof), 0, "redis-server did not start");
    f->dir = harness_tmpdir("core");
    cr_assert_not_null(f->dir);
    fx_path(f, "conf", f->conf, sizeof f->conf);
    fx_path(f, "evbusd.log", f->log, sizeof f->log);
    fx_path(f, "state", f->state, sizeof f->state);
    mkdir(f->conf, 0755);
    mkdir(f->state, 0700); /* evbusd refuses a state_dir others may write */
}

void fx_stop(fx_t *f)
{
    if (f->d.pid > 0)
        harness_kill(&f->d, SIGKILL, 5000);
    /* a sanitized evbusd reports into its log and may go on (UBSan) or
     * abort in a way the test does not notice: every test checks */
    char *log = harness_read_file(f->log);
    if (log) {
        const char *bad[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"};
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            const char *at = strstr(log, bad[i]);
            cr_expect(!at, "evbusd's log has a sanitizer report: %.600s", at ? at : "");
        }
        free(log);
    }
    harness_redis_stop(&f->redis);
    if (getenv("EVBUS_KEEP_TEST_DIRS") == NULL)
        harness_rmrf(f->dir);
    free(f->dir);
    harness_rmrf(f->redis.dir);
}

const char *fx_plugin(const char *rel)
{
    static char bufs[8][600];
    static int slot;
    char *b = bufs[slot++ % 8];
    char *p = harness_build_path(rel);
    snprintf(b, 600, "%s", p);
    free(p);
    return b;
}

void fx_conf(fx_t *f, const char *name, const char *yaml)
{
    cr_assert_eq(harness_write_file(f->conf, name, yaml), 0);
}

void fx_host_conf(fx_t *f, const char *consumer, const char *extra)
{
    char *schemas = harness_source_path("schemas");
    char buf[8192];
    snprintf(buf, sizeof buf,
             "redis: { url: \"%s\" }\n"
             "stream: t:events\n"
             "group: g\n"
             "consumer: %s\n"
             "block_ms: 100\n"
             "batch_size: 200\n"
             "worker_threads: 2\n"
             "state_dir: %s\n"
             "shutdown_timeout_ms: 10000\n"
             "schemas: { dir: %s, mode: enforce }\n"
             "retry: { base_ms: 50, factor: 2, max_ms: 400, max_attempts: 4, jitter: 0.1 }\n"
             "reclaim: { min_idle_ms: 1500, interval_ms: 200, max_deliveries: 3 }\n"
             "%s",
             f->redis.url, consumer, f->state, schemas, extra ? extra : "");
    free(schemas);
    fx_conf(f, "00-host.yaml", buf);
}

void fx_evbusd(fx_t *f, const char *arg1, const char *arg2)
{
    char *bin = harness_build_path("host/daemon/evbusd");
    char *argv[] = {bin, "-c", f->conf, (char *)arg1, (char *)arg2, NULL};
    cr_assert_eq(harness_spawn(&f->d, argv, NULL, f->log), 0);
    free(bin);
}

int fx_evbusd_wait(fx_t *f, int timeout_ms) { return harness_wait(&f->d, timeout_ms); }

void fx_publish(fx_t *f, const char *prefix, size_t n, const char *type, const char *tenant,
                const char *data_fmt)
{
    redisContext *c = harness_redis_connect(&f->redis);
    cr_assert_not_null(c);
    for (size_t i = 0; i < n; i++) {
        char data[2048], ev[4096];
        snprintf(data, sizeof data, data_fmt, (int)i);
        snprintf(ev, sizeof ev,
                 "{\"specversion\":\"1.0\",\"id\":\"%s-%zu\",\"source\":\"/test\",\"type\":\"%s\","
                 "\"time\":\"2026-11-26T10:00:00.000Z\",\"tenantid\":\"%s\",\"data\":%s}",
                 prefix, i, type, tenant, data);
        redisAppendCommand(c, "XADD t:events * event %s", ev);
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *r = NULL;
        cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK);
        cr_assert_eq(r->type, REDIS_REPLY_STRING);
        freeReplyObject(r);
    }
    redisFree(c);
}

void fx_publish_raw(fx_t *f, const char *raw)
{
    redisContext *c = harness_redis_connect(&f->redis);
    cr_assert_not_null(c);
    redisReply *r = redisCommand(c, "XADD t:events * event %s", raw);
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    freeReplyObject(r);
    redisFree(c);
}

typedef struct {
    const char *path;
    size_t n;
} lines_t;

static bool lines_reached(void *ud)
{
    lines_t *l = ud;
    return harness_count_lines(l->path) >= l->n;
}

bool fx_wait_lines(const char *path, size_t n, int timeout_ms)
{
    lines_t l = {path, n};
    return harness_wait_until(lines_reached, &l, timeout_ms);
}

long long fx_pending(fx_t *f)
{
    redisContext *c = harness_redis_connect(&f->redis);
    if (!c)
        return -1;
    redisReply *r = redisCommand(c, "XPENDING t:events g");
    long long n = -1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1)
        n = r->element[0]->integer;
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return n;
}

long long fx_xlen(fx_t *f, const char *key)
{
    redisContext *c = harness_redis_connect(&f->redis);
    if (!c)
        return -1;
    long long n = harness_redis_int(c, "XLEN %s", key);
    redisFree(c);
    return n;
}

static bool drained(void *ud)
{
    fx_t *f = ud;
    redisContext *c = harness_redis_connect(&f->redis);
    if (!c)
        return false;
    redisReply *r = redisCommand(c, "XINFO GROUPS t:events");
    bool ok = false;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
        redisReply *g = r->element[0];
        long long pending = -1, lag = -1;
        for (size_t k = 0; k + 1 < g->elements; k += 2) {
            if (strcmp(g->element[k]->str, "pending") == 0)
                pending = g->element[k + 1]->integer;
            if (strcmp(g->element[k]->str, "lag") == 0)
                lag = g->element[k + 1]->type == REDIS_REPLY_INTEGER ? g->element[k + 1]->integer
                                                                     : -1;
        }
        ok = pending == 0 && lag == 0;
    }
    if (r)
        freeReplyObject(r);
    if (ok)
        ok = harness_redis_int(c, "ZCARD t:events:retry") == 0;
    redisFree(c);
    return ok;
}

bool fx_wait_drained(fx_t *f, int timeout_ms) { return harness_wait_until(drained, f, timeout_ms); }

bool fx_log_has(const fx_t *f, const char *s)
{
    char *log = harness_read_file(f->log);
    bool has = log && strstr(log, s);
    free(log);
    return has;
}

typedef struct {
    const fx_t *f;
    const char *s;
} logwait_t;

static bool log_reached(void *ud)
{
    logwait_t *w = ud;
    return fx_log_has(w->f, w->s);
}

bool fx_wait_log(const fx_t *f, const char *s, int timeout_ms)
{
    logwait_t w = {f, s};
    return harness_wait_until(log_reached, &w, timeout_ms);
}
