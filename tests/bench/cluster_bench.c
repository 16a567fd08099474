/*
 * cluster-bench — one Redis server against a Redis Cluster, in the same
 * run (docs/performance.md, "Scale-out"):
 *
 *   cluster-bench [--events N (default 100000)] [--build DIR] [--json FILE]
 *
 * Scenarios, each draining N events of the benchmark's shape
 * (bench_event.h, keyed by 1,000 partition keys) with bench-counter.so's
 * three handlers, schemas enforced:
 *   1. one redis-server, partitions: 1, one evbusd host; then the same
 *      server with partitions: 6 (the cost of partitions and their
 *      leases and fencing, without a cluster);
 *   2. a local Redis Cluster of 3 masters (no replicas), partitions: 6,
 *      with 1, 2 and 3 evbusd hosts sharing the partitions.
 * For each: the hosts are started on the empty stream and left to share
 * the partitions, then stopped (SIGSTOP), the N events written, the hosts
 * resumed (SIGCONT), and the drain timed from there until every
 * partition's group has read everything and owes nothing.  Redis CPU is
 * the user + system time of every redis-server (every master) over that
 * drain (/proc/PID/stat), per event.
 *
 * Printed: the drain rate, Redis CPU per event, and what one master could
 * drain at a full core at that cost ("projected/master": 1 s / CPU per
 * event) — on a 2-core machine a cluster cannot drain faster than one
 * server, since every process shares the same two cores; the per-event
 * cost is what a cluster on real machines scales by.  Timings are
 * reported, never judged: the exit status is 0 when every scenario ran.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "bench_event.h"
#include "client/cluster.h"
#include "client/partition.h"
#include "evbus_build_config.h"
#include "harness.h"
#include "harness_cluster.h"

#define MAX_HOSTS 3
#define CLUSTER_P 6
#define KEYS 1000

typedef struct result {
    char name[64];
    int hosts, partitions;
    double seconds, cpu_us_per_event;
    long events;
} result_t;

static const char *build_dir;
static char *work;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* utime + stime of pid, in seconds. */
static double cpu_of(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command may hold spaces */
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Where the deployment is: one server or the cluster. */
typedef struct target {
    harness_redis_t *one;
    harness_cluster_t *hc;
    evbus_cluster_t *cl;
    redisContext *c; /* one server */
} target_t;

static redisReply *cmd(target_t *t, int argc, const char **argv)
{
    if (t->c)
        return redisCommandArgv(t->c, argc, argv, NULL);
    return evbus_cluster_command(t->cl, argc, argv, NULL, NULL, 0);
}

static double redis_cpu(const target_t *t)
{
    if (t->one)
        return cpu_of(t->one->pid);
    double s = 0;
    for (int i = 0; i < t->hc->n; i++)
        s += cpu_of(t->hc->pid[i]);
    return s;
}

static void stream_of(const char *s, int parts, int p, char *out, size_t len)
{
    if (parts > 1)
        snprintf(out, len, "{%s:%d}", s, p);
    else
        snprintf(out, len, "%s", s);
}

/* Write n events into their partitions (pipelined; on the cluster through
 * the cluster client's pipeline, which groups them by master). */
static int fill(target_t *t, const char *s, int parts, long n)
{
    for (long off = 0; off < n; off += 2000) {
        long m = n - off < 2000 ? n - off : 2000;
        evbus_cluster_pipe_t *pp = t->cl ? evbus_cluster_pipe_new(t->cl) : NULL;
        for (long i = off; i < off + m; i++) {
            char ev[BENCH_EVENT_MAX], key[16], stream[128];
            bench_event_format_keyed(ev, sizeof ev, (unsigned long)i, -1, KEYS);
            snprintf(key, sizeof key, "k%ld", i % KEYS);
            stream_of(s, parts, (int)evbus_partition_of(key, strlen(key), (unsigned)parts),
                      stream, sizeof stream);
            const char *argv[] = {"XADD", stream, "*", "event", ev};
            if (pp)
                evbus_cluster_pipe_append(pp, 5, argv, NULL, NULL, 0);
            else
                redisAppendCommandArgv(t->c, 5, argv, NULL);
        }
        int bad = 0;
        if (pp) {
            char err[256];
            evbus_cluster_pipe_exec(pp, err, sizeof err);
            for (long k = 0; k < m; k++) {
                redisReply *r = evbus_cluster_pipe_reply(pp, (size_t)k);
                bad += !r || r->type != REDIS_REPLY_STRING;
            }
            evbus_cluster_pipe_free(pp);
        } else {
            for (long k = 0; k < m; k++) {
                redisReply *r = NULL;
                if (redisGetReply(t->c, (void **)&r) != REDIS_OK || !r)
                    return -1;
                bad += r->type != REDIS_REPLY_STRING;
                freeReplyObject(r);
            }
        }
        if (bad) {
            fprintf(stderr, "cluster-bench: %d XADDs failed\n", bad);
            return -1;
        }
    }
    return 0;
}

/* Every partition's group read to the end and owing nothing; -1 when the
 * group does not exist yet. */
static int drained(target_t *t, const char *s, int parts)
{
    for (int p = 0; p < parts; p++) {
        char stream[128];
        stream_of(s, parts, p, stream, sizeof stream);
        const char *argv[] = {"XINFO", "GROUPS", stream};
        redisReply *r = cmd(t, 3, argv);
        int ok = -1;
        if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
            redisReply *g = r->element[0];
            long long lag = -1, pending = -1;
            for (size_t k = 0; k + 1 < g->elements; k += 2) {
                if (!strcmp(g->element[k]->str, "lag") &&
                    g->element[k + 1]->type == REDIS_REPLY_INTEGER)
                    lag = g->element[k + 1]->integer;
                else if (!strcmp(g->element[k]->str, "pending"))
                    pending = g->element[k + 1]->integer;
            }
            ok = lag == 0 && pending == 0;
        }
        if (r)
            freeReplyObject(r);
        if (ok != 1)
            return ok;
    }
    return 1;
}

static int write_conf(const char *dir, const target_t *t, const char *s, int parts, int h,
                      int port)
{
    char state[800], redis[1400];
    snprintf(state, sizeof state, "%s/state", dir);
    mkdir(dir, 0777);
    mkdir(state, 0700);
    if (t->hc)
        snprintf(redis, sizeof redis, "redis: { cluster: \"%s\" }\n", t->hc->seeds);
    else
        snprintf(redis, sizeof redis, "redis: { url: \"%s\" }\n", t->one->url);
    char *yaml = NULL;
    if (asprintf(&yaml,
                 "%s"
                 "stream: %s\n"
                 "partitions: %d\n"
                 "consumer: bench-h%d\n"
                 "worker_threads: 2\n"
                 "state_dir: %s\n"
                 "schemas: { dir: %s/schemas, mode: enforce }\n"
                 "admin: { listen: \"127.0.0.1:%d\" }\n"
                 "log_level: warn\n"
                 "plugins:\n"
                 "  - name: counter\n"
                 "    plugin: %s/plugins/testkit/bench-counter.so\n",
                 redis, s, parts, h, state, EVBUS_SOURCE_ROOT, port, build_dir) < 0)
        return -1;
    int rc = harness_write_file(dir, "10-bench.yaml", yaml);
    free(yaml);
    return rc;
}

/* /health's ownership.owned size of the host on port (-1: no answer). */
static int owned(int port)
{
    int st = 0;
    char *body = harness_http_get(port, "/health", &st);
    int n = -1;
    const char *o = body ? strstr(body, "\"owned\":[") : NULL;
    if (o) {
        n = 0;
        for (const char *p = o + 9; *p && *p != ']'; p++)
            n += *p == ',';
        n += o[9] != ']';
    }
    free(body);
    return n;
}

static int run_scenario(target_t *t, const char *name, const char *s, int parts, int hosts,
                        long n, result_t *res)
{
    harness_proc_t hp[MAX_HOSTS];
    int ports[MAX_HOSTS];
    char evbusd[700];
    snprintf(evbusd, sizeof evbusd, "%s/host/daemon/evbusd", build_dir);
    for (int h = 0; h < hosts; h++) {
        char dir[700], log[800];
        snprintf(dir, sizeof dir, "%s/%s-h%d", work, s, h);
        snprintf(log, sizeof log, "%s.log", dir);
        ports[h] = harness_free_port();
        if (write_conf(dir, t, s, parts, h, ports[h]) != 0)
            return -1;
        char *argv[] = {evbusd, "-c", dir, NULL};
        if (harness_spawn(&hp[h], argv, NULL, log) != 0)
            return -1;
    }
    /* serving, and (several partitions) sharing them evenly */
    long long until = harness_now_ms() + 60000;
    for (;;) {
        bool ready = drained(t, s, parts) == 1;
        int total = 0;
        for (int h = 0; ready && parts > 1 && h < hosts; h++) {
            int k = owned(ports[h]);
            ready = k >= parts / hosts;
            total += k;
        }
        if (ready && (parts == 1 || total == parts))
            break;
        if (harness_now_ms() > until) {
            fprintf(stderr, "cluster-bench: %s: the hosts never got ready\n", name);
            return -1;
        }
        sleep_ms(50);
    }
    for (int h = 0; h < hosts; h++)
        kill(hp[h].pid, SIGSTOP);
    if (fill(t, s, parts, n) != 0)
        return -1;
    double cpu0 = redis_cpu(t), t0 = bench_now();
    for (int h = 0; h < hosts; h++)
        kill(hp[h].pid, SIGCONT);
    while (drained(t, s, parts) != 1) {
        if (bench_now() - t0 > 600) {
            fprintf(stderr, "cluster-bench: %s: not drained in 600 s\n", name);
            return -1;
        }
        sleep_ms(5);
    }
    double secs = bench_now() - t0, cpu = redis_cpu(t) - cpu0;
    for (int h = 0; h < hosts; h++)
        harness_kill(&hp[h], SIGTERM, 20000);
    snprintf(res->name, sizeof res->name, "%s", name);
    res->hosts = hosts;
    res->partitions = parts;
    res->events = n;
    res->seconds = secs;
    res->cpu_us_per_event = cpu * 1e6 / (double)n;
    fprintf(stderr, "cluster-bench: %s: %ld events in %.2f s, Redis CPU %.2f s\n", name, n, secs,
            cpu);
    return 0;
}

int main(int argc, char **argv)
{
    long n = 100000;
    const char *json_out = NULL;
    const char *env_build = getenv("EVBUS_BUILD_ROOT");
    build_dir = env_build && *env_build ? env_build : EVBUS_BUILD_ROOT;
    static const struct option opts[] = {{"events", required_argument, NULL, 'n'},
                                         {"build", required_argument, NULL, 'b'},
                                         {"json", required_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'n': n = atol(optarg); break;
        case 'b': build_dir = optarg; break;
        case 'j': json_out = optarg; break;
        case 'h':
            puts("usage: cluster-bench [--events N] [--build DIR] [--json FILE]");
            return 0;
        default:
            fputs("usage: cluster-bench [--events N] [--build DIR] [--json FILE]\n", stderr);
            return 2;
        }
    }
    if (n <= 0 || optind < argc) {
        fputs("usage: cluster-bench [--events N] [--build DIR] [--json FILE]\n", stderr);
        return 2;
    }
    work = harness_tmpdir("cluster-bench");
    result_t res[2 + MAX_HOSTS];
    int nres = 0, rc = 0;

    harness_redis_t one;
    if (harness_redis_start(&one, false) != 0) {
        fprintf(stderr, "cluster-bench: redis-server did not start\n");
        return 2;
    }
    target_t t1 = {.one = &one, .c = harness_redis_connect(&one)};
    if (!t1.c || run_scenario(&t1, "one server, P=1, 1 host", "cb:one", 1, 1, n, &res[nres]) != 0)
        rc = 1;
    else
        nres++;
    if (rc == 0 &&
        run_scenario(&t1, "one server, P=6, 1 host", "cb:six", CLUSTER_P, 1, n, &res[nres]) != 0)
        rc = 1;
    else if (rc == 0)
        nres++;
    redisFree(t1.c);
    harness_redis_stop(&one);

    harness_cluster_t hc;
    if (rc == 0 && harness_cluster_start(&hc, 3, 0) != 0) {
        fprintf(stderr, "cluster-bench: the cluster did not start (logs in %s)\n", hc.dir);
        rc = 1;
    } else if (rc == 0) {
        char err[256];
        target_t tc = {.hc = &hc, .cl = evbus_cluster_new(hc.seeds, NULL, err, sizeof err)};
        for (int h = 1; h <= MAX_HOSTS && tc.cl && rc == 0; h++) {
            char name[64], s[32];
            snprintf(name, sizeof name, "cluster 3 masters, P=%d, %d host%s", CLUSTER_P, h,
                     h == 1 ? "" : "s");
            snprintf(s, sizeof s, "cb:c%d", h);
            if (run_scenario(&tc, name, s, CLUSTER_P, h, n, &res[nres]) != 0)
                rc = 1;
            else
                nres++;
        }
        if (!tc.cl)
            rc = 1;
        evbus_cluster_free(tc.cl);
        harness_cluster_stop(&hc);
    }

    printf("%-34s %8s %8s %10s %12s %16s\n", "scenario", "events", "seconds", "events/s",
           "Redis us/ev", "projected/master");
    for (int i = 0; i < nres; i++)
        printf("%-34s %8ld %8.2f %10.0f %12.2f %16.0f\n", res[i].name, res[i].events,
               res[i].seconds, (double)res[i].events / res[i].seconds, res[i].cpu_us_per_event,
               res[i].cpu_us_per_event > 0 ? 1e6 / res[i].cpu_us_per_event : 0);
    if (json_out) {
        FILE *f = fopen(json_out, "w");
        if (f) {
            fprintf(f, "[");
            for (int i = 0; i < nres; i++)
                fprintf(f,
                        "%s{\"scenario\":\"%s\",\"hosts\":%d,\"partitions\":%d,\"events\":%ld,"
                        "\"seconds\":%.3f,\"events_per_s\":%.0f,\"redis_cpu_us_per_event\":%.3f}",
                        i ? "," : "", res[i].name, res[i].hosts, res[i].partitions,
                        res[i].events, res[i].seconds, (double)res[i].events / res[i].seconds,
                        res[i].cpu_us_per_event);
            fprintf(f, "]\n");
            fclose(f);
        }
    }
    if (rc == 0)
        harness_rmrf(work);
    else
        fprintf(stderr, "cluster-bench: kept %s (the hosts' logs)\n", work);
    free(work);
    return rc == 0 ? 0 : 1;
}
