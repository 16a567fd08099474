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

#include "evbus_build_config.h"
#include "harness.h"

#define STREAM "chaos:events"
#define DLQ STREAM ":dlq"
#define RETRY STREAM ":retry"
#define GROUP "evbus"
#define PUBLISH_BATCH 500
/* Published events not yet seen by a handler, at most: keeps evbusd busy
 * the whole run, so kills land on work in flight, not on an idle host. */
#define PUBLISH_WINDOW 2000

enum fault { F_NONE, F_RETRY, F_REJECT, F_SLEEP, F_CRASH, F_HANG };

typedef struct run {
    int n_events, n_kills, timeout_s;
    uint64_t seed, rng;
    bool keep, isolation;
    const char *build;
    harness_redis_t redis;
    redisContext *rc;
    char *dir;
    char conf[600], log_path[600], count_file[600];
    harness_proc_t daemon;
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
    fputs("usage: chaos-run [--events N] [--kills K] [--build DIR] [--seed S] [--timeout SEC] "
          "[--keep]\n"
          "  --events N     events to publish (default 100000)\n"
          "  --kills K      SIGKILLs of evbusd at random moments (default 5)\n"
          "  --build DIR    meson build directory with evbusd and chaos.so\n"
          "                 (default: $EVBUS_BUILD_ROOT, else the one this was built in)\n"
          "  --seed S       random seed (default: from the clock; printed on stderr)\n"
          "  --timeout SEC  give up after SEC seconds (default 300 + N/200)\n"
          "  --keep         keep the temp folder (logs, count file) on success too\n"
          "  --isolation    run the chaos plugin with `isolation: process`: crash and\n"
          "                 hang faults hit its runner child; evbusd must not crash\n",
          f);
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

static int write_config(run_t *r)
{
    char *yaml = NULL;
    int n = asprintf(&yaml,
                     "redis: { url: \"%s\" }\n"
                     "stream: " STREAM "\n"
                     "group: " GROUP "\n"
                     "consumer: chaos-host\n"
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
                     r->redis.url, r->conf, EVBUS_SOURCE_ROOT,
                     r->isolation ? "handler_timeout_ms: 500\n" : "", r->build, r->count_file,
                     r->isolation ? "    isolation: process\n" : "");
    if (n < 0)
        return -1;
    char state[700];
    snprintf(state, sizeof state, "%s/state", r->conf);
    mkdir(r->conf, 0777);
    mkdir(state, 0700);
    int rc = harness_write_file(r->conf, "10-chaos.yaml", yaml);
    free(yaml);
    return rc;
}

static int start_daemon(run_t *r)
{
    char evbusd[700];
    snprintf(evbusd, sizeof evbusd, "%s/host/daemon/evbusd", r->build);
    char *argv[] = {evbusd, "-c", r->conf, NULL};
    r->starts++;
    return harness_spawn(&r->daemon, argv, NULL, r->log_path);
}

/* Restart evbusd if it died; returns -1 when it cannot even start (its
 * config is refused: exit 2). */
static int supervise(run_t *r)
{
    int st = harness_wait(&r->daemon, 0);
    if (st == -1)
        return 0;
    if (st == 128 + SIGABRT) {
        r->crashes++;
    } else {
        r->odd_exits++;
        fprintf(stderr, "chaos-run: evbusd exited with status %d (see %s)\n", st, r->log_path);
        if (st == 2)
            return -1;
    }
    return start_daemon(r);
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

/* An integer reply of a one-key command ("ZCARD", RETRY). */
static long long int_reply(run_t *r, const char *cmd, const char *key)
{
    redisContext *c = conn(r);
    return c ? harness_redis_int(c, "%s %s", cmd, key) : -1;
}

/* Group read to the end, nothing pending, nothing scheduled. */
static bool settled(run_t *r)
{
    if (int_reply(r, "ZCARD", RETRY) != 0)
        return false;
    redisContext *c = conn(r);
    if (!c)
        return false;
    bool ok = false;
    redisReply *p = redisCommand(c, "XPENDING " STREAM " " GROUP);
    redisReply *last = redisCommand(c, "XREVRANGE " STREAM " + - COUNT 1");
    redisReply *groups = redisCommand(c, "XINFO GROUPS " STREAM);
    if (p && p->type == REDIS_REPLY_ARRAY && p->elements >= 1 && p->element[0]->integer == 0 &&
        last && last->type == REDIS_REPLY_ARRAY && last->elements == 1 && groups &&
        groups->type == REDIS_REPLY_ARRAY) {
        const char *last_id = last->element[0]->element[0]->str;
        for (size_t i = 0; i < groups->elements; i++) {
            redisReply *g = groups->element[i];
            for (size_t k = 0; k + 1 < g->elements; k += 2)
                if (strcmp(g->element[k]->str, "last-delivered-id") == 0)
                    ok = strcmp(g->element[k + 1]->str, last_id) == 0;
        }
    }
    if (p)
        freeReplyObject(p);
    if (last)
        freeReplyObject(last);
    if (groups)
        freeReplyObject(groups);
    return ok;
}

/* What kept the run from settling, for the person reading stderr. */
static void report_state(run_t *r)
{
    redisContext *c = conn(r);
    if (!c)
        return;
    redisReply *p = redisCommand(c, "XPENDING " STREAM " " GROUP " - + 10");
    for (size_t i = 0; p && p->type == REDIS_REPLY_ARRAY && i < p->elements; i++) {
        redisReply *e = p->element[i];
        fprintf(stderr, "chaos-run: still pending %s (consumer %s, idle %lld ms, %lld deliveries)\n",
                e->element[0]->str, e->element[1]->str, e->element[2]->integer,
                e->element[3]->integer);
    }
    if (p)
        freeReplyObject(p);
    redisReply *g = redisCommand(c, "XINFO GROUPS " STREAM);
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
            int_reply(r, "ZCARD", RETRY), int_reply(r, "XLEN", STREAM));
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
static int tally_dlq(run_t *r, long long reasons[6])
{
    static const char *const names[] = {"reject", "retries_exhausted", "poison", NULL};
    char start[64] = "-";
    for (;;) {
        redisContext *c = conn(r);
        if (!c)
            return -1;
        redisReply *rep = redisCommand(c, "XRANGE " DLQ " %s + COUNT 1000", start);
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
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || r.n_events <= 0 || r.n_kills < 0) {
        usage(stderr);
        return 2;
    }
    if (!r.timeout_s)
        r.timeout_s = 300 + r.n_events / 200;
    r.rng = r.seed ? r.seed : 1;
    fprintf(stderr, "chaos-run: events=%d kills=%d seed=%llu build=%s%s\n", r.n_events,
            r.n_kills, (unsigned long long)r.seed, r.build,
            r.isolation ? " isolation=process" : "");

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

    if (harness_redis_start(&r.redis, true) != 0) {
        fprintf(stderr, "chaos-run: redis-server did not start\n");
        return 2;
    }
    r.dir = harness_tmpdir("chaos");
    snprintf(r.conf, sizeof r.conf, "%s/conf", r.dir);
    snprintf(r.log_path, sizeof r.log_path, "%s/evbusd.log", r.dir);
    snprintf(r.count_file, sizeof r.count_file, "%s/calls", r.dir);
    if (write_config(&r) != 0 || start_daemon(&r) != 0) {
        fprintf(stderr, "chaos-run: cannot write the config or start evbusd\n");
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
            if (publish(&r, published, to) != 0) {
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
            harness_kill(&r.daemon, SIGKILL, 10000);
            r.kills_done++;
            fprintf(stderr, "chaos-run: SIGKILL %d/%d after %lld handler calls\n", r.kills_done,
                    r.n_kills, r.calls);
            start_daemon(&r);
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
    harness_redis_stop(&r.redis);
    bool ok = lost == 0 && published == n;
    if (r.isolation && r.crashes) {
        fprintf(stderr, "chaos-run: evbusd crashed %d times although the chaos instance is "
                "isolated\n", r.crashes);
        ok = false;
    }
    if (ok && !r.keep) {
        harness_rmrf(r.dir);
        harness_rmrf(r.redis.dir);
    } else {
        fprintf(stderr, "chaos-run: kept %s (evbusd.log, calls) and %s (redis)\n", r.dir,
                r.redis.dir);
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
