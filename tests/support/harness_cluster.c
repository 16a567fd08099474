/*
 * harness_cluster — see harness_cluster.h.  Starts the nodes with
 * harness_spawn, joins them with the real redis-cli, and polls the nodes'
 * own view (CLUSTER INFO, INFO replication) rather than sleeping.
 */
#include "harness_cluster.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "harness.h"

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

redisContext *harness_cluster_connect(const harness_cluster_t *c, int i)
{
    struct timeval tv = {2, 0};
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", c->port[i], tv);
    if (!ctx || ctx->err) {
        if (ctx)
            redisFree(ctx);
        return NULL;
    }
    redisSetTimeout(ctx, tv);
    return ctx;
}

/* The text reply of a command on node i (malloc'd), or NULL. */
static char *node_text(const harness_cluster_t *c, int i, const char *cmd)
{
    redisContext *ctx = harness_cluster_connect(c, i);
    if (!ctx)
        return NULL;
    redisReply *r = redisCommand(ctx, cmd);
    char *out = r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
                    ? strdup(r->str)
                    : NULL;
    if (r)
        freeReplyObject(r);
    redisFree(ctx);
    return out;
}

static int launch(harness_cluster_t *c, int i)
{
    char sub[300], port[16], bus[16], logp[400];
    snprintf(sub, sizeof sub, "%s/%d", c->dir, i);
    mkdir(sub, 0777);
    snprintf(port, sizeof port, "%d", c->port[i]);
    snprintf(bus, sizeof bus, "%d", c->bus_port[i]);
    snprintf(logp, sizeof logp, "%s/redis.log", sub);
    char *argv[] = {"/usr/bin/redis-server", "--port", port, "--bind", "127.0.0.1",
                    "--dir", sub, "--save", "", "--appendonly", "no",
                    "--cluster-enabled", "yes", "--cluster-port", bus,
                    "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
                    "--daemonize", "no", "--logfile", logp, NULL};
    harness_proc_t p;
    if (harness_spawn(&p, argv, NULL, NULL) != 0)
        return -1;
    c->pid[i] = p.pid;
    long long deadline = harness_now_ms() + 10000;
    while (harness_now_ms() < deadline) {
        char *pong = node_text(c, i, "PING");
        bool ok = pong && !strcmp(pong, "PONG");
        free(pong);
        if (ok)
            return 0;
        pause_ms(20);
    }
    return -1;
}

/* A free port that is none of the first `taken` nodes' ports (a port
 * freed by harness_free_port may be handed out again). */
static int fresh_port(const harness_cluster_t *c, int taken)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        int p = harness_free_port();
        bool dup = p <= 0;
        for (int k = 0; k < taken && !dup; k++)
            dup = c->port[k] == p || c->bus_port[k] == p;
        if (!dup)
            return p;
    }
    return -1;
}

int harness_cluster_wait_ok(const harness_cluster_t *c, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    while (harness_now_ms() < deadline) {
        bool all = true;
        for (int i = 0; i < c->n && all; i++) {
            if (c->pid[i] <= 0)
                continue;
            char *info = node_text(c, i, "CLUSTER INFO");
            all = info && strstr(info, "cluster_state:ok");
            free(info);
        }
        if (all)
            return 0;
        pause_ms(50);
    }
    return -1;
}

/* Whether every replica's link to its master is up. */
static bool replicas_linked(const harness_cluster_t *c)
{
    for (int i = 0; i < c->n; i++) {
        char *info = node_text(c, i, "INFO replication");
        bool ok = info && (strstr(info, "role:master") || strstr(info, "master_link_status:up"));
        free(info);
        if (!ok)
            return false;
    }
    return true;
}

int harness_cluster_start(harness_cluster_t *c, int masters, int replicas)
{
    memset(c, 0, sizeof *c);
    c->n = masters * (1 + replicas);
    if (masters < 3 || c->n > HARNESS_CLUSTER_MAX)
        return -1;
    char *d = harness_tmpdir("cluster");
    if (!d)
        return -1;
    snprintf(c->dir, sizeof c->dir, "%s", d);
    free(d);
    size_t used = 0;
    for (int i = 0; i < c->n; i++) {
        c->port[i] = fresh_port(c, i);
        c->bus_port[i] = -1;
        c->bus_port[i] = fresh_port(c, i + 1);
        if (c->port[i] < 0 || c->bus_port[i] < 0 || launch(c, i) != 0)
            goto fail;
        used += (size_t)snprintf(c->seeds + used, sizeof c->seeds - used, "%sredis://127.0.0.1:%d",
                                 i ? "," : "", c->port[i]);
    }
    char *argv[HARNESS_CLUSTER_MAX + 8];
    char addrs[HARNESS_CLUSTER_MAX][32], reps[8];
    int a = 0;
    argv[a++] = "/usr/bin/redis-cli";
    argv[a++] = "--cluster";
    argv[a++] = "create";
    for (int i = 0; i < c->n; i++) {
        snprintf(addrs[i], sizeof addrs[i], "127.0.0.1:%d", c->port[i]);
        argv[a++] = addrs[i];
    }
    snprintf(reps, sizeof reps, "%d", replicas);
    argv[a++] = "--cluster-replicas";
    argv[a++] = reps;
    argv[a++] = "--cluster-yes";
    argv[a] = NULL;
    char *out = NULL, *err = NULL;
    int rc = harness_run(argv, NULL, NULL, &out, &err, 60000);
    if (rc != 0) {
        fprintf(stderr, "redis-cli --cluster create: exit %d\n%s\n%s\n", rc, out ? out : "",
                err ? err : "");
        free(out);
        free(err);
        goto fail;
    }
    free(out);
    free(err);
    if (harness_cluster_wait_ok(c, 60000) != 0)
        goto fail;
    long long deadline = harness_now_ms() + 60000;
    while (!replicas_linked(c))
        if (harness_now_ms() > deadline)
            goto fail;
        else
            pause_ms(50);
    return 0;
fail:
    for (int i = 0; i < c->n; i++)
        harness_cluster_kill(c, i);
    return -1;
}

int harness_cluster_start_alone(harness_cluster_t *c)
{
    memset(c, 0, sizeof *c);
    char *d = harness_tmpdir("cluster");
    if (!d)
        return -1;
    snprintf(c->dir, sizeof c->dir, "%s", d);
    free(d);
    c->n = 1;
    c->port[0] = fresh_port(c, 0);
    c->bus_port[0] = -1;
    c->bus_port[0] = fresh_port(c, 1);
    if (c->port[0] < 0 || c->bus_port[0] < 0 || launch(c, 0) != 0) {
        harness_cluster_kill(c, 0);
        return -1;
    }
    snprintf(c->seeds, sizeof c->seeds, "redis://127.0.0.1:%d", c->port[0]);
    return 0;
}

void harness_cluster_kill(harness_cluster_t *c, int i)
{
    if (c->pid[i] > 0) {
        harness_proc_t p = {.pid = c->pid[i]};
        harness_kill(&p, SIGKILL, 5000);
        c->pid[i] = 0;
    }
}

void harness_cluster_stop(harness_cluster_t *c)
{
    for (int i = 0; i < c->n; i++) {
        if (c->pid[i] <= 0)
            continue;
        harness_proc_t p = {.pid = c->pid[i]};
        if (harness_kill(&p, SIGTERM, 5000) < 0)
            harness_kill(&p, SIGKILL, 5000);
        c->pid[i] = 0;
    }
    harness_rmrf(c->dir);
}

int harness_cluster_node_of_port(const harness_cluster_t *c, int port)
{
    for (int i = 0; i < c->n; i++)
        if (c->port[i] == port)
            return i;
    return -1;
}

int harness_cluster_node_id(const harness_cluster_t *c, int i, char out[41])
{
    char *id = node_text(c, i, "CLUSTER MYID");
    if (!id || strlen(id) != 40) {
        free(id);
        return -1;
    }
    memcpy(out, id, 41);
    free(id);
    return 0;
}

bool harness_cluster_is_master(const harness_cluster_t *c, int i)
{
    char *info = node_text(c, i, "INFO replication");
    bool m = info && strstr(info, "role:master");
    free(info);
    return m;
}

redisReply *harness_cluster_vcommand(const harness_cluster_t *c, int i, char *why,
                                     size_t whylen, const char *fmt, va_list ap)
{
    redisContext *ctx = harness_cluster_connect(c, i);
    if (!ctx) {
        snprintf(why, whylen, "node %d: cannot connect", i);
        return NULL;
    }
    redisReply *r = redisvCommand(ctx, fmt, ap);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        snprintf(why, whylen, "node %d: %s: %s", i, fmt, r ? r->str : ctx->errstr);
        if (r)
            freeReplyObject(r);
        r = NULL;
    }
    redisFree(ctx);
    return r;
}

redisReply *harness_cluster_command(const harness_cluster_t *c, int i, char *why, size_t whylen,
                                    const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = harness_cluster_vcommand(c, i, why, whylen, fmt, ap);
    va_end(ap);
    return r;
}

/* Runs a command that must succeed and drops its reply; 0 or -1 (why). */
static int command_ok(const harness_cluster_t *c, int i, char *why, size_t whylen,
                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = harness_cluster_vcommand(c, i, why, whylen, fmt, ap);
    va_end(ap);
    if (!r)
        return -1;
    freeReplyObject(r);
    return 0;
}

int harness_cluster_move_slot(const harness_cluster_t *c, unsigned slot, int src, int dst,
                              void (*stage)(void *ud, int stage), void *ud, char *why,
                              size_t whylen)
{
    char src_id[41], dst_id[41];
    if (harness_cluster_node_id(c, src, src_id) != 0 ||
        harness_cluster_node_id(c, dst, dst_id) != 0) {
        snprintf(why, whylen, "node %d or %d: no CLUSTER MYID", src, dst);
        return -1;
    }
    if (command_ok(c, dst, why, whylen, "CLUSTER SETSLOT %u IMPORTING %s", slot, src_id) != 0 ||
        command_ok(c, src, why, whylen, "CLUSTER SETSLOT %u MIGRATING %s", slot, dst_id) != 0)
        return -1;
    if (stage)
        stage(ud, 1);
    for (;;) {
        redisReply *keys =
            harness_cluster_command(c, src, why, whylen, "CLUSTER GETKEYSINSLOT %u 100", slot);
        if (!keys)
            return -1;
        size_t n = keys->type == REDIS_REPLY_ARRAY ? keys->elements : 0;
        for (size_t k = 0; k < n; k++)
            if (command_ok(c, src, why, whylen, "MIGRATE 127.0.0.1 %d %b 0 5000", c->port[dst],
                           keys->element[k]->str, keys->element[k]->len) != 0) {
                freeReplyObject(keys);
                return -1;
            }
        freeReplyObject(keys);
        if (n == 0)
            break;
    }
    if (stage)
        stage(ud, 2);
    for (int i = 0; i < c->n; i++)
        if (harness_cluster_is_master(c, i) &&
            command_ok(c, i, why, whylen, "CLUSTER SETSLOT %u NODE %s", slot, dst_id) != 0)
            return -1;
    if (stage)
        stage(ud, 3);
    return 0;
}

int harness_cluster_replica_of(const harness_cluster_t *c, int master)
{
    char want[32];
    snprintf(want, sizeof want, "master_port:%d\r", c->port[master]);
    for (int i = 0; i < c->n; i++) {
        if (i == master || c->pid[i] <= 0)
            continue;
        char *info = node_text(c, i, "INFO replication");
        bool mine = info && strstr(info, "role:slave") && strstr(info, want);
        free(info);
        if (mine)
            return i;
    }
    return -1;
}
