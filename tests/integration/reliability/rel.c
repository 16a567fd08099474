/*
 * rel — see rel.h.  Talks to the daemon only the ways an operator could:
 * its config files, its signals, its admin endpoint and Redis itself.
 */
#include "rel.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int rel_setup(rel_t *r, bool aof)
{
    memset(r, 0, sizeof *r);
    if (harness_redis_start(&r->redis, aof) != 0)
        return -1;
    r->dir = harness_tmpdir("rel");
    if (!r->dir)
        return -1;
    snprintf(r->count_file, sizeof r->count_file, "%s/chaos-calls", r->dir);
    snprintf(r->rec_file, sizeof r->rec_file, "%s/rec-calls", r->dir);
    snprintf(r->archive, sizeof r->archive, "%s/dlq-archive.jsonl", r->dir);
    return rel_redis(r) ? 0 : -1;
}

void rel_teardown(rel_t *r, rel_host_t *const hosts[])
{
    for (size_t i = 0; hosts && hosts[i]; i++)
        if (hosts[i]->proc.pid > 0)
            harness_kill(&hosts[i]->proc, SIGKILL, 5000);
    if (r->rc)
        redisFree(r->rc);
    r->rc = NULL;
    harness_redis_stop(&r->redis);
    if (getenv("EVBUS_TEST_KEEP") == NULL) {
        harness_rmrf(r->dir);
        harness_rmrf(r->redis.dir);
    }
    free(r->dir);
    r->dir = NULL;
}

redisContext *rel_redis(rel_t *r)
{
    if (r->rc && !r->rc->err)
        return r->rc;
    if (r->rc)
        redisFree(r->rc);
    r->rc = harness_redis_connect(&r->redis);
    return r->rc;
}

int rel_redis_restart(rel_t *r)
{
    if (r->rc)
        redisFree(r->rc);
    r->rc = NULL;
    return harness_redis_restart(&r->redis);
}

static unsigned or_default(unsigned v, unsigned def) { return v ? v : def; }

int rel_host_config(rel_t *r, rel_host_t *h, const char *name, const rel_host_opts_t *opts)
{
    rel_host_opts_t o = opts ? *opts : (rel_host_opts_t){0};
    snprintf(h->conf_dir, sizeof h->conf_dir, "%s/%s", r->dir, name);
    snprintf(h->log_path, sizeof h->log_path, "%s/%s.log", r->dir, name);
    if (!h->admin_port)
        h->admin_port = harness_free_port();
    char state[600];
    snprintf(state, sizeof state, "%s/state", h->conf_dir);
    mkdir(h->conf_dir, 0777);
    mkdir(state, 0700);
    char *chaos = harness_build_path("plugins/chaos/chaos.so");
    char *testkit = harness_build_path("plugins/testkit/testkit.so");
    char *schemas = harness_source_path("schemas");
    char *yaml = NULL;
    int n = asprintf(
        &yaml,
        "redis: { url: \"%s\" }\n"
        "stream: " REL_STREAM "\n"
        "group: " REL_GROUP "\n"
        "consumer: %s\n"
        "batch_size: %u\n"
        "block_ms: 100\n"
        "worker_threads: %u\n"
        "state_dir: %s\n"
        "schemas: { dir: %s, mode: off }\n"
        "log_level: info\n"
        "admin: { listen: \"127.0.0.1:%d\" }\n"
        "retry: { base_ms: %u, factor: 2, max_ms: 5000, max_attempts: %u, jitter: 0.2 }\n"
        "dlq: { capacity: %u, archive: %s }\n"
        "reclaim: { min_idle_ms: %u, interval_ms: 200, max_deliveries: %u }\n"
        "shutdown_timeout_ms: 10000\n"
        "plugins:\n"
        "  - name: chaos\n"
        "    plugin: %s\n"
        "    config: { count_file: %s }\n"
        "    subscriptions:\n"
        "      - { pattern: \"test.**\"%s }\n"
        "  - name: rec\n"
        "    plugin: %s\n"
        "    config: { out: %s }\n"
        "    subscriptions:\n"
        "      - { pattern: \"test.**\", handler: record, priority: 10%s }\n",
        r->redis.url, o.consumer ? o.consumer : "c1", or_default(o.batch_size, 100),
        or_default(o.worker_threads, 2), state, schemas, h->admin_port,
        or_default(o.retry_base_ms, 50), or_default(o.max_attempts, 5),
        or_default(o.dlq_capacity, 10000), r->archive, or_default(o.min_idle_ms, 1000),
        or_default(o.max_deliveries, 3), chaos, r->count_file,
        o.chaos_sub_extra ? o.chaos_sub_extra : "", testkit, r->rec_file,
        o.rec_sub_extra ? o.rec_sub_extra : "");
    free(chaos);
    free(testkit);
    free(schemas);
    if (n < 0)
        return -1;
    int rc = harness_write_file(h->conf_dir, "10-rel.yaml", yaml);
    free(yaml);
    return rc;
}

int rel_host_start(rel_host_t *h, int exit_idle_ms)
{
    char *evbusd = harness_build_path("host/daemon/evbusd");
    char idle[32];
    snprintf(idle, sizeof idle, "%d", exit_idle_ms);
    char *argv[] = {evbusd, "-c", h->conf_dir, exit_idle_ms > 0 ? "--exit-idle" : NULL, idle,
                    NULL};
    int rc = harness_spawn(&h->proc, argv, NULL, h->log_path);
    free(evbusd);
    return rc;
}

int rel_host_stop(rel_host_t *h)
{
    int rc = harness_kill(&h->proc, SIGTERM, 15000);
    if (rc == -1)
        harness_kill(&h->proc, SIGKILL, 5000);
    return rc;
}

char *rel_event_json(const char *id, const char *fault, const char *tenant)
{
    json_t *data = json_object();
    if (fault)
        json_object_set_new(data, "fault", json_string(fault));
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "specversion", "1.0", "id", id,
                           "source", "tests/reliability", "type", "test.rel.happened", "time",
                           "2025-03-14T09:26:53Z", "tenantid", tenant ? tenant : "tenant-a",
                           "data", data);
    char *s = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    return s;
}

int rel_publish_raw(rel_t *r, const char *json, char sid[64])
{
    redisReply *rep = NULL;
    /* a second try on a fresh connection: the first may have been cut by a
     * Redis restart the test did on purpose */
    for (int attempt = 0; attempt < 2 && !rep; attempt++) {
        redisContext *c = rel_redis(r);
        if (!c)
            return -1;
        rep = redisCommand(c, "XADD " REL_STREAM " * event %s", json);
    }
    int rc = rep && rep->type == REDIS_REPLY_STRING ? 0 : -1;
    if (rc == 0 && sid)
        snprintf(sid, 64, "%s", rep->str);
    if (rep)
        freeReplyObject(rep);
    return rc;
}

int rel_publish(rel_t *r, const char *id, const char *fault, char sid[64])
{
    char *json = rel_event_json(id, fault, NULL);
    int rc = rel_publish_raw(r, json, sid);
    free(json);
    return rc;
}

/* Lines of `path` whose whitespace-separated column `col` (0-based) equals
 * `want`, and, when want2 is given, column col2 equals want2. */
static size_t count_cols(const char *path, const char *sep, int col, const char *want, int col2,
                         const char *want2)
{
    char *s = harness_read_file(path);
    if (!s)
        return 0;
    size_t n = 0;
    char *save = NULL;
    for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *cols[8] = {0};
        int k = 0;
        char *save2 = NULL;
        for (char *t = strtok_r(line, sep, &save2); t && k < 8; t = strtok_r(NULL, sep, &save2))
            cols[k++] = t;
        if (col < k && strcmp(cols[col], want) == 0 &&
            (!want2 || (col2 < k && strcmp(cols[col2], want2) == 0)))
            n++;
    }
    free(s);
    return n;
}

size_t rel_chaos_calls(const rel_t *r, const char *id, const char *result)
{
    return count_cols(r->count_file, " ", 1, id, 3, result);
}

size_t rel_rec_calls(const rel_t *r, const char *id)
{
    return count_cols(r->rec_file, "\t", 2, id, 0, NULL);
}

long long rel_pending(rel_t *r, const char *consumer)
{
    redisContext *c = rel_redis(r);
    if (!c)
        return -1;
    redisReply *rep = consumer ? redisCommand(c, "XPENDING " REL_STREAM " " REL_GROUP
                                                 " - + 100000 %s", consumer)
                               : redisCommand(c, "XPENDING " REL_STREAM " " REL_GROUP);
    long long n = -1;
    if (rep && rep->type == REDIS_REPLY_ARRAY) {
        if (consumer)
            n = (long long)rep->elements;
        else if (rep->elements >= 1 && rep->element[0]->type == REDIS_REPLY_INTEGER)
            n = rep->element[0]->integer;
    }
    if (rep)
        freeReplyObject(rep);
    return n;
}

long long rel_zcard_retry(rel_t *r)
{
    redisContext *c = rel_redis(r);
    return c ? harness_redis_int(c, "ZCARD " REL_RETRY) : -1;
}

long long rel_xlen(rel_t *r, const char *key)
{
    redisContext *c = rel_redis(r);
    return c ? harness_redis_int(c, "XLEN %s", key) : -1;
}

bool rel_drained(rel_t *r)
{
    redisContext *c = rel_redis(r);
    if (!c || rel_pending(r, NULL) != 0 || rel_zcard_retry(r) != 0)
        return false;
    redisReply *last = redisCommand(c, "XREVRANGE " REL_STREAM " + - COUNT 1");
    redisReply *groups = redisCommand(c, "XINFO GROUPS " REL_STREAM);
    bool ok = false;
    if (last && last->type == REDIS_REPLY_ARRAY && groups && groups->type == REDIS_REPLY_ARRAY) {
        const char *last_id = last->elements ? last->element[0]->element[0]->str : "0-0";
        for (size_t i = 0; i < groups->elements; i++) {
            redisReply *g = groups->element[i];
            const char *name = NULL, *delivered = NULL;
            for (size_t k = 0; k + 1 < g->elements; k += 2) {
                if (strcmp(g->element[k]->str, "name") == 0)
                    name = g->element[k + 1]->str;
                else if (strcmp(g->element[k]->str, "last-delivered-id") == 0)
                    delivered = g->element[k + 1]->str;
            }
            if (name && strcmp(name, REL_GROUP) == 0 && delivered)
                ok = strcmp(delivered, last_id) == 0;
        }
    }
    if (last)
        freeReplyObject(last);
    if (groups)
        freeReplyObject(groups);
    return ok;
}

const char *rel_field(const redisReply *entry, const char *name, size_t *len)
{
    if (!entry || entry->type != REDIS_REPLY_ARRAY || entry->elements < 2)
        return NULL;
    const redisReply *fv = entry->element[1];
    for (size_t k = 0; fv->type == REDIS_REPLY_ARRAY && k + 1 < fv->elements; k += 2)
        if (strcmp(fv->element[k]->str, name) == 0) {
            if (len)
                *len = fv->element[k + 1]->len;
            return fv->element[k + 1]->str;
        }
    return NULL;
}

char *rel_http_get(int port, const char *path)
{
    int status;
    char *body = harness_http_get(port, path, &status);
    if (body && status != 200) {
        free(body);
        body = NULL;
    }
    return body;
}

long long rel_metric(int port, const char *name)
{
    char *body = rel_http_get(port, "/metrics");
    if (!body)
        return -1;
    long long v = -1;
    size_t nl = strlen(name);
    for (char *line = body; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, name, nl) == 0 && line[nl] == ' ') {
            v = strtoll(line + nl + 1, NULL, 10);
            break;
        }
    free(body);
    return v;
}

bool rel_dlq_level(int port, char out[16])
{
    char *body = rel_http_get(port, "/health");
    if (!body)
        return false;
    json_t *h = json_loads(body, 0, NULL);
    free(body);
    const char *lvl = json_string_value(json_object_get(json_object_get(h, "dlq"), "level"));
    snprintf(out, 16, "%s", lvl ? lvl : "");
    json_decref(h);
    return lvl != NULL;
}

size_t rel_file_count(const char *path, const char *needle)
{
    char *s = harness_read_file(path);
    if (!s)
        return 0;
    size_t n = 0, nl = strlen(needle);
    for (char *p = strstr(s, needle); p; p = strstr(p + nl, needle))
        n++;
    free(s);
    return n;
}

bool rel_wait(rel_t *r, rel_pred_fn pred, const void *arg, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        if (pred(r, arg))
            return true;
        if (harness_now_ms() >= deadline)
            return false;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}
