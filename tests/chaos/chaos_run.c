/*
 * chaos-run — the at-least-once check under fire: publishes N events with a
 * fault mix while SIGKILLing evbusd K times at random moments and
 * restarting Redis once, waits until everything is settled, then proves
 * that no event was lost.
 *
 *   chaos-run [--events N] [--kills K] [--build DIR] [--seed S]
 *             [--timeout SEC] [--keep] [--isolation]
 *
 * (tests/chaos/run builds it and runs it; see the usage comment there.)
 *
 * Setup: its own redis-server (AOF, appendfsync always) on a free port and
 * a temp folder (/tmp/evbus-test-chaos-*) with one evbusd config: the chaos
 * plugin on "test.**" writing one line per call to a count file, retry base
 * 20 ms, max_attempts 5, reclaim min_idle 1000 ms, max_deliveries 3.
 *
 * Fault mix (seeded): ~92% none, 5% retry:1..3, 1% reject, 2% sleep:5, and
 * max(1, N/25000) crash events (each costs up to max_deliveries aborts).
 * The driver is evbusd's supervisor: whenever evbusd dies (crash fault or
 * our SIGKILL) it is started again with the same consumer name.  Kill and
 * Redis-restart moments are drawn as points of handler progress (calls
 * counted in the count file), so they land while events are in flight.
 *
 * --cluster runs it all on a real local Redis Cluster instead (3 masters,
 * 1 replica each, tests/support/harness_cluster.h): the stream in
 * --partitions P partitions (default 6; events keyed "k0".."k<keys-1>",
 * --keys, default 97, XADDed into their partition streams through the
 * cluster client), --hosts H evbusd hosts (default 2, at most MAX_HOSTS)
 * sharing them through leases, SIGKILLed in turn, and a master failed over
 * to its replica (CLUSTER FAILOVER) where one server is restarted.
 *
 * --isolation runs the chaos instance with `isolation: process`: a crash
 * fault then aborts its evbus-plugin-runner child, not evbusd, so crash
 * events are ten times as many (max(1, N/2500)), each is retried until its
 * attempts run out and dead-lettered (retries_exhausted, the reason naming
 * SIGABRT), and a few hang events (sleep:2000 against a handler timeout of
 * 500 ms) are killed at the timeout the same way.  evbusd itself must
 * never crash: a crash exit of evbusd fails the run.
 *
 * Settled: everything published, every kill done, group read up to the
 * stream's last entry, nothing pending, retry schedule empty (twice, 300 ms
 * apart).  Then stdout gets exactly one line:
 *   published=P handled=H dlq=D lost=L duplicates=U
 * handled: event ids with at least one OK call; dlq: event ids in the DLQ;
 * lost: published ids neither handled nor in the DLQ; duplicates: OK calls
 * beyond the first per (event id, handler).  Details go to stderr.
 * Exit 0 iff lost == 0 (1 otherwise, 2 on a usage or setup error).  The
 * temp folder is removed on success unless --keep; on failure it is kept
 * and its path printed.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "client/cluster.h"
#include "client/partition.h"
#include "evbus_build_config.h"
#include "harness.h"
#include "harness_cluster.h"

#define STREAM "chaos:events"
#define GROUP "evbus"
#define PUBLISH_BATCH 500
/* Published events not yet seen by a handler, at most: keeps evbusd busy
 * the whole run, so kills land on work in flight, not on an idle host. */
#define PUBLISH_WINDOW 2000
#define MAX_HOSTS 4

enum fault { F_NONE, F_RETRY, F_REJECT, F_SLEEP, F_CRASH, F_HANG };

typedef struct run {
    int n_events, n_kills, timeout_s;
    uint64_t seed, rng;
    bool keep, isolation, cluster;
    const char *build;
    harness_redis_t redis;
    harness_cluster_t hc;   /* --cluster */
    evbus_cluster_t *cl;    /* --cluster: the driver's handle */
    redisContext *rc;
    char *dir;
    char conf[600], log_path[600], count_file[600];
    harness_proc_t daemon;  /* host 0 */
    /* --cluster: hosts 1.. (each its own conf and log) */
    harness_proc_t more[MAX_HOSTS];
    char more_conf[MAX_HOSTS][600], more_log[MAX_HOSTS][600];
    int hosts, parts, keys;
    unsigned char *faults;  /* per event */
    unsigned char *retries; /* N of retry:N */
    uint16_t *ok_calls;     /* per event */
    bool *in_dlq;
    int kills_done, crashes, odd_exits, starts;
    bool redis_restarted;
    /* progress: handler calls seen in the count file */
    int count_fd;
    long long calls;
} run_t;

static uint64_t rnd(run_t *r)
{
    /* xorshift64*: reproducible from --seed, no global state */
    r->rng ^= r->rng >> 12;
    r->rng ^= r->rng << 25;
    r->rng ^= r->rng >> 27;
    return r->rng * 2685821657736338717ULL;
}

static double rnd01(run_t *r) { return (double)(rnd(r) >> 11) / 9007199254740992.0; }

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: chaos-run [--events N] [--kills K] [--build DIR] [--seed S] [--timeout SEC] "
          "[--keep] [--isolation] [--cluster]\n"
          "  --events N     events to publish (default 100000)\n"
          "  --kills K      SIGKILLs of evbusd at random moments (default 5)\n"
          "  --build DIR    meson build directory with evbusd and chaos.so\n"
          "                 (default: $EVBUS_BUILD_ROOT, else the one this was built in)\n"
          "  --seed S       random seed (default: from the clock; printed on stderr)\n"
          "  --timeout SEC  give up after SEC seconds (default 300 + N/200)\n"
          "  --keep         keep the temp folder (logs, count file) on success too\n"
          "  --isolation    run the chaos plugin with `isolation: process`: crash and\n"
          "                 hang faults hit its runner child; evbusd must not crash\n"
          "  --cluster      on a local Redis Cluster (3 masters + 3 replicas), a master\n"
          "                 failed over instead of the Redis restart; with it:\n"
          "  --partitions P partitions (default 6)\n"
          "  --hosts H      evbusd hosts sharing them, SIGKILLed in turn (default 2, max %d)\n"
          "  --keys K       partition keys the events spread over (default 97)\n",
          MAX_HOSTS);
}

static redisContext *conn(run_t *r)
{
    for (int i = 0; i < 200; i++) {
        if (r->rc && !r->rc->err)
            return r->rc;
        if (r->rc)
            redisFree(r->rc);
        r->rc = harness_redis_connect(&r->redis);
        if (r->rc)
            return r->rc;
        sleep_ms(50);
    }
    return NULL;
}

static int write_config(run_t *r, const char *conf, const char *consumer)
{
    char *yaml = NULL, redis[1400];
    if (r->cluster)
        snprintf(redis, sizeof redis,
                 "redis: { cluster: \"%s\" }\npartitions: %d\nownership: { lease_ms: 2000 }\n",
                 r->hc.seeds, r->parts);
    else
        snprintf(redis, sizeof redis, "redis: { url: \"%s\" }\n", r->redis.url);
    int n = asprintf(&yaml,
                     "%s"
                     "stream: " STREAM "\n"
                     "group: " GROUP "\n"
                     "consumer: %s\n"
                     "batch_size: 200\n"
                     "block_ms: 100\n"
                     "worker_threads: 4\n"
                     "state_dir: %s/state\n"
                     "schemas: { dir: %s/schemas, mode: off }\n"
                     "log_level: info\n"
                     "retry: { base_ms: 20, factor: 2, max_ms: 200, max_attempts: 5, jitter: 0.2 }\n"
                     "dlq: { capacity: 10000000 }\n"
                     "reclaim: { min_idle_ms: 1000, interval_ms: 200, max_deliveries: 3 }\n"
                     "shutdown_timeout_ms: 10000\n"
                     "%s"
                     /* retention on and trimming hard all through the run: it
                      * must never take an entry the group still owes */
                     "retention: { max_age: 2s, interval: 200ms }\n"
                     "plugins:\n"
                     "  - name: chaos\n"
                     "    plugin: %s/plugins/chaos/chaos.so\n"
                     "    config: { count_file: %s }\n"
                     "%s"
                     "    subscriptions:\n"
                     "      - { pattern: \"test.**\" }\n",
                     redis, consumer, conf, EVBUS_SOURCE_ROOT,
                     r->isolation ? "handler_timeout_ms: 500\n" : "", r->build, r->count_file,
                     r->isolation ? "    isolation: process\n" : "");
    if (n < 0)
        return -1;
    char state[700];
    snprintf(state, sizeof state, "%s/state", conf);
    mkdir(conf, 0777);
    mkdir(state, 0700);
    int rc = harness_write_file(conf, "10-chaos.yaml", yaml);
    free(yaml);
    return rc;
}

/* Start host h (0, or 1 with --cluster). */
static int start_host(run_t *r, int h)
{
    char evbusd[700];
    snprintf(evbusd, sizeof evbusd, "%s/host/daemon/evbusd", r->build);
    char *argv[] = {evbusd, "-c", h ? r->more_conf[h] : r->conf, NULL};
    r->starts++;
    return harness_spawn(h ? &r->more[h] : &r->daemon, argv, NULL,
                         h ? r->more_log[h] : r->log_path);
}

static int start_daemon(run_t *r) { return start_host(r, 0); }

/* Restart evbusd if it died; returns -1 when it cannot even start (its
 * config is refused: exit 2). */
static int supervise_host(run_t *r, int h)
{
    int st = harness_wait(h ? &r->more[h] : &r->daemon, 0);
    if (st == -1)
        return 0;
    if (st == 128 + SIGABRT) {
        r->crashes++;
    } else {
        r->odd_exits++;
        fprintf(stderr, "chaos-run: evbusd exited with status %d (see %s)\n", st,
                h ? r->more_log[h] : r->log_path);
        if (st == 2)
            return -1;
    }
    return start_host(r, h);
}

static int supervise(run_t *r)
{
    int rc = 0;
    for (int h = 0; h < r->hosts && rc == 0; h++)
        rc = supervise_host(r, h);
    return rc;
}

/* Count handler calls appended since the last look. */
static void read_progress(run_t *r)
{
    if (r->count_fd < 0)
        r->count_fd = open(r->count_file, O_RDONLY | O_CLOEXEC);
    if (r->count_fd < 0)
        return;
    char buf[65536];
    ssize_t got;
    while ((got = read(r->count_fd, buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < got; i++)
            r->calls += buf[i] == '\n';
}

/* ---- Redis: one server, or (--cluster) the cluster's partitions ---- */

static int n_parts(const run_t *r) { return r->cluster ? r->parts : 1; }

/* Partition p's stream, retry schedule or dead-letter stream (suffix "",
 * ":retry", ":dlq"); one server: today's names. */
static void part_key(const run_t *r, int p, const char *suffix, char *out, size_t len)
{
    if (r->cluster)
        snprintf(out, len, "{" STREAM ":%d}%s", p, suffix);
    else
        snprintf(out, len, "%s%s", STREAM, suffix);
}

/* A command (NULL-terminated arguments) on the server, or routed by its
 * key on the cluster (tried again for a while: a master may be failing
 * over).  NULL when Redis cannot be reached. */
static redisReply *cmd(run_t *r, const char *a0, ...)
{
    const char *argv[16];
    int n = 0;
    va_list ap;
    va_start(ap, a0);
    for (const char *a = a0; a && n < 16; a = va_arg(ap, const char *))
        argv[n++] = a;
    va_end(ap);
    if (!r->cluster) {
        redisContext *c = conn(r);
        return c ? redisCommandArgv(c, n, argv, NULL) : NULL;
    }
    for (int tries = 0; tries < 100; tries++) {
        redisReply *rep = evbus_cluster_command(r->cl, n, argv, NULL, NULL, 0);
        if (rep)
            return rep;
        sleep_ms(100);
    }
    return NULL;
}

static const char *fault_text(const run_t *r, int i, char out[32])
{
    switch (r->faults[i]) {
    case F_RETRY: snprintf(out, 32, "retry:%u", r->retries[i]); return out;
    case F_REJECT: return "reject";
    case F_SLEEP: return "sleep:5";
    case F_CRASH: return "crash";
    case F_HANG: return "sleep:2000";
    default: return NULL;
    }
}

/* XADD events [from, to) in one pipeline; on a connection error the
 * unconfirmed rest is sent again on a new connection. */
static int publish(run_t *r, int from, int to)
{
    while (from < to) {
        redisContext *c = conn(r);
        if (!c)
            return -1;
        for (int i = from; i < to; i++) {
            char ft[32], json[512];
            const char *f = fault_text(r, i, ft);
            snprintf(json, sizeof json,
                     "{\"specversion\":\"1.0\",\"id\":\"ev-%d\",\"source\":\"chaos-run\","
                     "\"type\":\"test.chaos.event\",\"time\":\"2025-03-14T09:26:53Z\","
                     "\"tenantid\":\"t-chaos\",\"data\":{%s%s%s}}",
                     i, f ? "\"fault\":\"" : "", f ? f : "", f ? "\"" : "");
            redisAppendCommand(c, "XADD " STREAM " * event %s", json);
        }
        int done = from;
        for (int i = from; i < to; i++) {
            redisReply *rep = NULL;
            if (redisGetReply(c, (void **)&rep) != REDIS_OK || !rep)
                break;
            bool ok = rep->type == REDIS_REPLY_STRING;
            freeReplyObject(rep);
            if (!ok)
                break;
            done = i + 1;
        }
        if (done < to)
            fprintf(stderr, "chaos-run: publishing interrupted at ev-%d; sending the rest again\n",
                    done);
        from = done;
    }
    return 0;
}

/* --cluster: XADD events [from, to), each into its partition stream (key
 * "k<i mod keys>"), pipelined through the cluster client; what was not
 * confirmed (a master failing over) is sent again. */
static int publish_cluster(run_t *r, int from, int to)
{
    int n = to - from, *todo = malloc((size_t)n * sizeof *todo);
    if (!todo)
        return -1;
    for (int k = 0; k < n; k++)
        todo[k] = from + k;
    for (int round = 0; n > 0 && round < 200; round++) {
        evbus_cluster_pipe_t *pp = evbus_cluster_pipe_new(r->cl);
        for (int k = 0; k < n; k++) {
            int i = todo[k];
            char ft[32], json[600], key[16], stream[64];
            const char *f = fault_text(r, i, ft);
            snprintf(key, sizeof key, "k%d", i % r->keys);
            snprintf(json, sizeof json,
                     "{\"specversion\":\"1.0\",\"id\":\"ev-%d\",\"source\":\"chaos-run\","
                     "\"type\":\"test.chaos.event\",\"time\":\"2025-03-14T09:26:53Z\","
                     "\"tenantid\":\"t-chaos\",\"partitionkey\":\"%s\",\"data\":{%s%s%s}}",
                     i, key, f ? "\"fault\":\"" : "", f ? f : "", f ? "\"" : "");
            part_key(r, (int)evbus_partition_of(key, strlen(key), (unsigned)r->parts), "", stream,
                     sizeof stream);
            const char *argv[] = {"XADD", stream, "*", "event", json};
            evbus_cluster_pipe_append(pp, 5, argv, NULL, NULL, 0);
        }
        char err[512];
        evbus_cluster_pipe_exec(pp, err, sizeof err);
        int m = 0;
        for (int k = 0; k < n; k++) {
            redisReply *rep = evbus_cluster_pipe_reply(pp, (size_t)k);
            if (!rep || rep->type != REDIS_REPLY_STRING)
                todo[m++] = todo[k];
        }
        evbus_cluster_pipe_free(pp);
        if (m) {
            fprintf(stderr, "chaos-run: %d XADDs not confirmed; sending them again\n", m);
            sleep_ms(200);
        }
        n = m;
    }
    free(todo);
    return n ? -1 : 0;
}

/* An integer reply of a one-key command ("ZCARD", a retry schedule). */
static long long int_reply(run_t *r, const char *what, const char *key)
{
    redisReply *rep = cmd(r, what, key, NULL);
    long long v = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    if (rep)
        freeReplyObject(rep);
    return v;
}

/* Partition p's group read to the end, nothing pending, nothing
 * scheduled. */
static bool settled_part(run_t *r, int p)
{
    char stream[64], retry[64];
    part_key(r, p, "", stream, sizeof stream);
    part_key(r, p, ":retry", retry, sizeof retry);
    if (int_reply(r, "ZCARD", retry) != 0)
        return false;
    bool ok = false;
    redisReply *pe = cmd(r, "XPENDING", stream, GROUP, NULL);
    redisReply *last = cmd(r, "XREVRANGE", stream, "+", "-", "COUNT", "1", NULL);
    redisReply *groups = cmd(r, "XINFO", "GROUPS", stream, NULL);
    if (last && last->type == REDIS_REPLY_ARRAY && last->elements == 0) {
        ok = true; /* nothing was ever published into this partition */
    } else if (pe && pe->type == REDIS_REPLY_ARRAY && pe->elements >= 1 &&
               pe->element[0]->integer == 0 && last && last->type == REDIS_REPLY_ARRAY &&
               last->elements == 1 && groups && groups->type == REDIS_REPLY_ARRAY) {
        const char *last_id = last->element[0]->element[0]->str;
        for (size_t i = 0; i < groups->elements; i++) {
            redisReply *g = groups->element[i];
            for (size_t k = 0; k + 1 < g->elements; k += 2)
                if (strcmp(g->element[k]->str, "last-delivered-id") == 0)
                    ok = strcmp(g->element[k + 1]->str, last_id) == 0;
        }
    }
    if (pe)
        freeReplyObject(pe);
    if (last)
        freeReplyObject(last);
    if (groups)
        freeReplyObject(groups);
    return ok;
}

static bool settled(run_t *r)
{
    for (int p = 0; p < n_parts(r); p++)
        if (!settled_part(r, p))
            return false;
    return true;
}

/* What kept the run from settling, for the person reading stderr. */
static void report_state_part(run_t *r, int part)
{
    char stream[64], retry[64];
    part_key(r, part, "", stream, sizeof stream);
    part_key(r, part, ":retry", retry, sizeof retry);
    fprintf(stderr, "chaos-run: %s:\n", stream);
    redisReply *p = cmd(r, "XPENDING", stream, GROUP, "-", "+", "10", NULL);
    for (size_t i = 0; p && p->type == REDIS_REPLY_ARRAY && i < p->elements; i++) {
        redisReply *e = p->element[i];
        fprintf(stderr, "chaos-run: still pending %s (consumer %s, idle %lld ms, %lld deliveries)\n",
                e->element[0]->str, e->element[1]->str, e->element[2]->integer,
                e->element[3]->integer);
    }
    if (p)
        freeReplyObject(p);
    redisReply *g = cmd(r, "XINFO", "GROUPS", stream, NULL);
    for (size_t i = 0; g && g->type == REDIS_REPLY_ARRAY && i < g->elements; i++)
        for (size_t k = 0; k + 1 < g->element[i]->elements; k += 2) {
            redisReply *v = g->element[i]->element[k + 1];
            if (v->type == REDIS_REPLY_STRING)
                fprintf(stderr, "chaos-run: group %s = %s\n", g->element[i]->element[k]->str,
                        v->str);
            else if (v->type == REDIS_REPLY_INTEGER)
                fprintf(stderr, "chaos-run: group %s = %lld\n", g->element[i]->element[k]->str,
                        v->integer);
        }
    if (g)
        freeReplyObject(g);
    fprintf(stderr, "chaos-run: retry schedule holds %lld, stream %lld entries\n",
            int_reply(r, "ZCARD", retry), int_reply(r, "XLEN", stream));
}

static void report_state(run_t *r)
{
    for (int p = 0; p < n_parts(r); p++)
        report_state_part(r, p);
}

static int event_index(const run_t *r, const char *id)
{
    if (!id || strncmp(id, "ev-", 3) != 0)
        return -1;
    char *end;
    long i = strtol(id + 3, &end, 10);
    return (*end || i < 0 || i >= r->n_events) ? -1 : (int)i;
}

/* Tally OK calls per event from the count file: "chaos <id> <attempt> <RESULT>". */
static int tally_calls(run_t *r)
{
    FILE *f = fopen(r->count_file, "r");
    if (!f)
        return -1;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char inst[64], id[128], result[16];
        int attempt;
        if (sscanf(line, "%63s %127s %d %15s", inst, id, &attempt, result) != 4)
            continue;
        int i = event_index(r, id);
        if (i >= 0 && strcmp(result, "OK") == 0 && r->ok_calls[i] < UINT16_MAX)
            r->ok_calls[i]++;
    }
    fclose(f);
    return 0;
}

/* Mark every event id found in the DLQ; counts reasons on stderr. */
static int tally_dlq_part(run_t *r, int part, long long reasons[6])
{
    static const char *const names[] = {"reject", "retries_exhausted", "poison", NULL};
    char start[64] = "-", dlq[64];
    part_key(r, part, ":dlq", dlq, sizeof dlq);
    for (;;) {
        redisReply *rep = cmd(r, "XRANGE", dlq, start, "+", "COUNT", "1000", NULL);
        if (!rep || rep->type != REDIS_REPLY_ARRAY) {
            if (rep)
                freeReplyObject(rep);
            return -1;
        }
        size_t n = rep->elements;
        for (size_t k = 0; k < n; k++) {
            redisReply *e = rep->element[k], *fv = e->element[1];
            const char *eid = NULL, *reason = NULL;
            for (size_t j = 0; j + 1 < fv->elements; j += 2) {
                if (strcmp(fv->element[j]->str, "event_id") == 0)
                    eid = fv->element[j + 1]->str;
                else if (strcmp(fv->element[j]->str, "reason") == 0)
                    reason = fv->element[j + 1]->str;
            }
            int i = event_index(r, eid);
            if (i >= 0 && r->in_dlq[i])
                fprintf(stderr, "chaos-run: %s is in the DLQ more than once (entry %s: %s)\n",
                        eid, e->element[0]->str, reason ? reason : "?");
            if (i >= 0)
                r->in_dlq[i] = true;
            int ri = 0;
            while (names[ri] && (!reason || strcmp(names[ri], reason) != 0))
                ri++;
            reasons[ri]++;
            if (k + 1 == n)
                snprintf(start, sizeof start, "(%s", e->element[0]->str);
        }
        freeReplyObject(rep);
        if (n < 1000)
            return 0;
    }
}

static int tally_dlq(run_t *r, long long reasons[6])
{
    for (int p = 0; p < n_parts(r); p++)
        if (tally_dlq_part(r, p, reasons) != 0)
            return -1;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    run_t r = {.n_events = 100000, .n_kills = 5, .count_fd = -1};
    r.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    const char *env_build = getenv("EVBUS_BUILD_ROOT");
    r.build = env_build && *env_build ? env_build : EVBUS_BUILD_ROOT;
    static const struct option opts[] = {
        {"events", required_argument, NULL, 'n'}, {"kills", required_argument, NULL, 'k'},
        {"build", required_argument, NULL, 'b'},  {"seed", required_argument, NULL, 's'},
        {"timeout", required_argument, NULL, 't'}, {"keep", no_argument, NULL, 'K'},
        {"isolation", no_argument, NULL, 'I'},    {"help", no_argument, NULL, 'h'},
        {"cluster", no_argument, NULL, 'C'},      {"hosts", required_argument, NULL, 'H'},
        {"partitions", required_argument, NULL, 'P'}, {"keys", required_argument, NULL, 'Y'},
        {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'n': r.n_events = atoi(optarg); break;
        case 'k': r.n_kills = atoi(optarg); break;
        case 'b': r.build = optarg; break;
        case 's': r.seed = strtoull(optarg, NULL, 10); break;
        case 't': r.timeout_s = atoi(optarg); break;
        case 'K': r.keep = true; break;
        case 'I': r.isolation = true; break;
        case 'C': r.cluster = true; break;
        case 'H': r.hosts = atoi(optarg); break;
        case 'P': r.parts = atoi(optarg); break;
        case 'Y': r.keys = atoi(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!r.cluster && (r.hosts || r.parts || r.keys)) {
        fprintf(stderr, "chaos-run: --hosts, --partitions and --keys go with --cluster\n");
        return 2;
    }
    if (!r.hosts)
        r.hosts = r.cluster ? 2 : 1;
    if (!r.parts)
        r.parts = 6;
    if (!r.keys)
        r.keys = 97;
    if (optind < argc || r.n_events <= 0 || r.n_kills < 0 || r.hosts < 1 ||
        r.hosts > MAX_HOSTS || r.parts < 2 || r.parts > 1024 || r.keys < 1) {
        usage(stderr);
        return 2;
    }
    if (!r.timeout_s)
        r.timeout_s = 300 + r.n_events / 200;
    r.rng = r.seed ? r.seed : 1;
    fprintf(stderr, "chaos-run: events=%d kills=%d seed=%llu build=%s%s", r.n_events, r.n_kills,
            (unsigned long long)r.seed, r.build, r.isolation ? " isolation=process" : "");
    if (r.cluster)
        fprintf(stderr, " cluster partitions=%d hosts=%d keys=%d", r.parts, r.hosts, r.keys);
    fputc('\n', stderr);

    /* the fault mix */
    int n = r.n_events;
    r.faults = calloc((size_t)n, 1);
    r.retries = calloc((size_t)n, 1);
    r.ok_calls = calloc((size_t)n, sizeof *r.ok_calls);
    r.in_dlq = calloc((size_t)n, sizeof *r.in_dlq);
    if (!r.faults || !r.retries || !r.ok_calls || !r.in_dlq)
        return 2;
    for (int i = 0; i < n; i++) {
        double x = rnd01(&r);
        if (x < 0.05) {
            r.faults[i] = F_RETRY;
            r.retries[i] = (unsigned char)(1 + rnd(&r) % 3);
        } else if (x < 0.06) {
            r.faults[i] = F_REJECT;
        } else if (x < 0.08) {
            r.faults[i] = F_SLEEP;
        }
    }
    int per = r.isolation ? 2500 : 25000;
    int n_crash = n / per > 1 ? n / per : 1;
    for (int c = 0; c < n_crash; c++)
        r.faults[rnd(&r) % (uint64_t)n] = F_CRASH;
    int n_hang = r.isolation ? (n / 10000 > 1 ? n / 10000 : 1) : 0;
    for (int c = 0; c < n_hang; c++)
        r.faults[rnd(&r) % (uint64_t)n] = F_HANG;

    /* moments, as handler-call progress */
    double *kill_at = calloc((size_t)r.n_kills + 1, sizeof *kill_at);
    for (int k = 0; k < r.n_kills; k++)
        kill_at[k] = (0.05 + 0.9 * rnd01(&r)) * n;
    qsort(kill_at, (size_t)r.n_kills, sizeof *kill_at, cmp_double);
    double redis_at = (0.2 + 0.6 * rnd01(&r)) * n;

    if (r.cluster) {
        char err[512];
        if (harness_cluster_start(&r.hc, 3, 1) != 0 ||
            !(r.cl = evbus_cluster_new(r.hc.seeds, NULL, err, sizeof err))) {
            fprintf(stderr, "chaos-run: the cluster did not start (logs in %s)\n", r.hc.dir);
            return 2;
        }
    } else if (harness_redis_start(&r.redis, true) != 0) {
        fprintf(stderr, "chaos-run: redis-server did not start\n");
        return 2;
    }
    r.dir = harness_tmpdir("chaos");
    snprintf(r.conf, sizeof r.conf, "%s/conf", r.dir);
    snprintf(r.log_path, sizeof r.log_path, "%s/evbusd.log", r.dir);
    for (int h = 1; h < r.hosts; h++) {
        snprintf(r.more_conf[h], sizeof r.more_conf[h], "%s/conf%d", r.dir, h + 1);
        snprintf(r.more_log[h], sizeof r.more_log[h], "%s/evbusd%d.log", r.dir, h + 1);
    }
    snprintf(r.count_file, sizeof r.count_file, "%s/calls", r.dir);
    bool setup_ok = write_config(&r, r.conf, "chaos-host") == 0 && start_daemon(&r) == 0;
    for (int h = 1; h < r.hosts && setup_ok; h++) {
        char name[32];
        snprintf(name, sizeof name, "chaos-host%d", h + 1);
        setup_ok = write_config(&r, r.more_conf[h], name) == 0 && start_host(&r, h) == 0;
    }
    if (!setup_ok) {
        fprintf(stderr, "chaos-run: cannot write the config or start evbusd\n");
        if (r.cluster)
            harness_cluster_stop(&r.hc);
        else
            harness_redis_stop(&r.redis);
        return 2;
    }

    long long t0 = harness_now_ms(), deadline = t0 + (long long)r.timeout_s * 1000;
    int published = 0, stable = 0;
    bool timed_out = false;
    for (;;) {
        if (harness_now_ms() > deadline) {
            timed_out = true;
            break;
        }
        read_progress(&r);
        if (published < n && published - r.calls < PUBLISH_WINDOW) {
            int to = published + PUBLISH_BATCH < n ? published + PUBLISH_BATCH : n;
            if ((r.cluster ? publish_cluster(&r, published, to) : publish(&r, published, to)) !=
                0) {
                fprintf(stderr, "chaos-run: cannot reach Redis to publish\n");
                timed_out = true;
                break;
            }
            published = to;
        }
        if (supervise(&r) != 0) {
            fprintf(stderr, "chaos-run: evbusd refuses to start; see %s\n", r.log_path);
            timed_out = true;
            break;
        }
        read_progress(&r);
        bool all_published = published == n;
        /* a kill still owed once the work ran out is done now */
        if (r.kills_done < r.n_kills &&
            (r.calls >= kill_at[r.kills_done] || (all_published && stable > 0))) {
            int h = r.kills_done % r.hosts; /* hosts in turn */
            harness_kill(h ? &r.more[h] : &r.daemon, SIGKILL, 10000);
            r.kills_done++;
            fprintf(stderr, "chaos-run: SIGKILL %d/%d (host %d) after %lld handler calls\n",
                    r.kills_done, r.n_kills, h, r.calls);
            start_host(&r, h);
            stable = 0;
        }
        if (r.cluster && !r.redis_restarted &&
            (r.calls >= redis_at || (all_published && stable > 0))) {
            /* a master hands over to its replica (no acknowledged write is
             * lost in a manual failover) */
            int m = (int)(rnd(&r) % 3), seen = -1, node = -1;
            for (int i = 0; i < r.hc.n && node < 0; i++)
                if (harness_cluster_is_master(&r.hc, i) && ++seen == m)
                    node = i;
            int rep_i = node < 0 ? -1 : harness_cluster_replica_of(&r.hc, node);
            redisContext *fc = rep_i < 0 ? NULL : harness_cluster_connect(&r.hc, rep_i);
            redisReply *fr = fc ? redisCommand(fc, "CLUSTER FAILOVER") : NULL;
            fprintf(stderr, "chaos-run: failing master %d over to replica %d after %lld handler "
                    "calls: %s\n", node, rep_i, r.calls, fr && fr->str ? fr->str : "no reply");
            if (fr)
                freeReplyObject(fr);
            if (fc)
                redisFree(fc);
            r.redis_restarted = true;
            stable = 0;
        }
        if (!r.redis_restarted && (r.calls >= redis_at || (all_published && stable > 0))) {
            fprintf(stderr, "chaos-run: restarting Redis after %lld handler calls\n", r.calls);
            if (r.rc)
                redisFree(r.rc);
            r.rc = NULL; /* its server is gone: no reply would ever come */
            if (harness_redis_restart(&r.redis) != 0) {
                fprintf(stderr, "chaos-run: Redis did not come back\n");
                timed_out = true;
                break;
            }
            r.redis_restarted = true;
            stable = 0;
        }
        if (all_published && settled(&r)) {
            if (++stable >= 2 && r.kills_done == r.n_kills && r.redis_restarted)
                break;
            sleep_ms(300);
        } else {
            stable = 0;
            sleep_ms(all_published ? 50 : 2);
        }
    }
    if (timed_out)
        report_state(&r);
    long long elapsed = harness_now_ms() - t0;
    int st = harness_kill(&r.daemon, SIGTERM, 20000);
    if (st != 0)
        fprintf(stderr, "chaos-run: evbusd stopped with status %d\n", st);
    for (int h = 1; h < r.hosts; h++)
        if ((st = harness_kill(&r.more[h], SIGTERM, 20000)) != 0)
            fprintf(stderr, "chaos-run: evbusd %d stopped with status %d\n", h + 1, st);

    long long reasons[6] = {0};
    read_progress(&r);
    if (tally_calls(&r) != 0 || tally_dlq(&r, reasons) != 0)
        fprintf(stderr, "chaos-run: could not read back the results\n");
    long long handled = 0, dlq = 0, lost = 0, dups = 0, misplaced = 0;
    for (int i = 0; i < n; i++) {
        handled += r.ok_calls[i] > 0;
        dlq += r.in_dlq[i];
        lost += !r.ok_calls[i] && !r.in_dlq[i];
        dups += r.ok_calls[i] > 1 ? r.ok_calls[i] - 1 : 0;
        /* events that must fail yet succeeded, or never fail yet sit in
         * the DLQ for another reason than poison, are worth a look */
        if ((r.faults[i] == F_REJECT || r.faults[i] == F_CRASH || r.faults[i] == F_HANG) &&
            r.ok_calls[i])
            misplaced++;
        if (lost && lost <= 10 && !r.ok_calls[i] && !r.in_dlq[i]) {
            char ft[32];
            const char *f = fault_text(&r, i, ft);
            fprintf(stderr, "chaos-run: lost ev-%d (fault %s)\n", i, f ? f : "none");
        }
    }
    fprintf(stderr,
            "chaos-run: %.1f s, %d evbusd starts, %d kills, %d crash exits (%d crash events, "
            "%d hang events), "
            "%d other exits, redis restarted %s; %lld handler calls; DLQ reasons: reject=%lld "
            "retries_exhausted=%lld poison=%lld other=%lld; %lld events that must fail "
            "succeeded%s\n",
            elapsed / 1000.0, r.starts, r.kills_done, r.crashes, n_crash, n_hang, r.odd_exits,
            r.redis_restarted ? "yes" : "no", r.calls, reasons[0], reasons[1], reasons[2],
            reasons[3], misplaced, timed_out ? "; TIMED OUT before settling" : "");
    printf("published=%d handled=%lld dlq=%lld lost=%lld duplicates=%lld\n", published, handled,
           dlq, lost, dups);
    fflush(stdout);

    if (r.rc)
        redisFree(r.rc);
    if (r.cluster) {
        evbus_cluster_free(r.cl);
        harness_cluster_stop(&r.hc);
    } else {
        harness_redis_stop(&r.redis);
    }
    bool ok = lost == 0 && published == n;
    if (r.isolation && r.crashes) {
        fprintf(stderr, "chaos-run: evbusd crashed %d times although the chaos instance is "
                "isolated\n", r.crashes);
        ok = false;
    }
    if (ok && !r.keep) {
        harness_rmrf(r.dir);
        if (!r.cluster)
            harness_rmrf(r.redis.dir);
    } else {
        fprintf(stderr, "chaos-run: kept %s (evbusd.log, calls) and %s (redis)\n", r.dir,
                r.cluster ? "(the cluster is removed)" : r.redis.dir);
    }
    if (r.count_fd >= 0)
        close(r.count_fd);
    free(kill_at);
    free(r.faults);
    free(r.retries);
    free(r.ok_calls);
    free(r.in_dlq);
    free(r.dir);
    return ok ? 0 : 1;
}
