/*
 * redis.wait_replicas end to end: a real replica of the test's Redis
 * (REPLICAOF), the real evbusd and evbusctl.  With as many replicas as
 * asked, every WAIT is confirmed and the acks are on the replica; asking
 * for more than exist, every WAIT falls short, which is counted and
 * warned about while no event is held up or lost.
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e.h"

static e2e_t E;
static harness_redis_t replica;

static bool replica_in_sync(void *ud)
{
    (void)ud;
    redisContext *c = harness_redis_connect(&replica);
    if (!c)
        return false;
    redisReply *r = redisCommand(c, "INFO replication");
    bool up = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "master_link_status:up");
    freeReplyObject(r);
    redisFree(c);
    return up;
}

static void setup(void)
{
    e2e_start(&E, false, false);
    cr_assert_eq(harness_redis_start(&replica, false), 0, "replica redis-server");
    redisContext *c = harness_redis_connect(&replica);
    cr_assert(c);
    redisReply *r = redisCommand(c, "REPLICAOF 127.0.0.1 %d", E.fx.redis.port);
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "REPLICAOF: %s", r ? r->str : c->errstr);
    freeReplyObject(r);
    redisFree(c);
    cr_assert(harness_wait_until(replica_in_sync, NULL, 15000), "the replica never synced");
}

static void teardown(void)
{
    harness_redis_stop(&replica);
    e2e_stop(&E);
}

TestSuite(e2e_wait, .init = setup, .fini = teardown, .timeout = 120);

/* timeout_ms: long where every WAIT must be confirmed (a WAIT returns as
 * soon as the replicas answer, and a loaded machine can make one lag),
 * short where every WAIT must time out */
static void start_host(int replicas, int timeout_ms)
{
    char extra[200];
    snprintf(extra, sizeof extra, "redis:\n  wait_replicas: %d\n  wait_timeout_ms: %d\n",
             replicas, timeout_ms);
    /* (a later file: merged key by key with 00-host.yaml's redis: { url }) */
    e2e_host_conf(&E, NULL);
    e2e_conf_file(&E, "05-wait.yaml", extra);
    e2e_plugins(&E, NULL, "{ pattern: \"test.**\" }");
    e2e_evbusd(&E, 0);
    cr_assert(e2e_wait_healthy(&E, 15000), "evbusd did not come up (log %s)", E.fx.log);
}

/* n events through `evbusctl publish --file`; returns its stderr (malloc'd). */
static char *publish(int n)
{
    char path[700];
    fx_path(&E.fx, "events.ndjson", path, sizeof path);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    for (int i = 0; i < n; i++)
        fprintf(f, "{\"id\":\"w-%d\",\"type\":\"test.wait.happened\",\"tenantid\":\"acme\","
                   "\"data\":{\"i\":%d}}\n", i, i);
    fclose(f);
    char *out = NULL, *err = NULL;
    int rc = e2e_ctl(&E, &out, &err, "publish", "--file", path, NULL);
    cr_assert_eq(rc, 0, "evbusctl publish exited %d: %s", rc, err ? err : "");
    free(out);
    return err;
}

static bool all_handled(void *ud)
{
    int n = *(int *)ud;
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "w-%d", i);
        if (e2e_rec_calls(&E, id, -1) < 1)
            return false;
    }
    return true;
}

static long long replica_pending(void)
{
    redisContext *c = harness_redis_connect(&replica);
    cr_assert(c);
    redisReply *r = redisCommand(c, "XPENDING t:events g");
    long long n = r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 ? r->element[0]->integer
                                                                       : -1;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

Test(e2e_wait, the_replicas_asked_for_confirm_every_wait)
{
    start_host(1, 4000);
    char *err = publish(40);
    cr_expect(!strstr(err, "timed out"), "publish warned although the replica is there: %s", err);
    free(err);
    int n = 40;
    cr_assert(harness_wait_until(all_handled, &n, 15000), "not every event was handled");
    cr_assert(fx_wait_drained(&E.fx, 10000), "entries left pending (log %s)", E.fx.log);
    cr_expect_gt(e2e_metric(E.admin_port, "evbus_redis_waits_total"), 0);
    cr_expect_eq(e2e_metric(E.admin_port, "evbus_redis_wait_short_total"), 0);
    /* the WAIT came after the acks: the replica has them too */
    cr_expect_eq(replica_pending(), 0, "acks missing on the replica");
}

Test(e2e_wait, more_replicas_than_exist_is_counted_and_nothing_waits_for_them)
{
    start_host(2, 150);
    char *err = publish(30);
    cr_expect(strstr(err, "waits for 2 replicas timed out"), "no warning from publish: %s", err);
    free(err);
    int n = 30;
    cr_assert(harness_wait_until(all_handled, &n, 15000), "not every event was handled");
    cr_assert(fx_wait_drained(&E.fx, 10000), "entries left pending (log %s)", E.fx.log);
    long long waits = e2e_metric(E.admin_port, "evbus_redis_waits_total");
    long long shorts = e2e_metric(E.admin_port, "evbus_redis_wait_short_total");
    cr_expect_gt(shorts, 0);
    cr_expect_eq(shorts, waits, "%lld of %lld waits fell short with one replica of two", shorts,
                 waits);
    char *log = harness_read_file(E.fx.log);
    cr_expect(log && strstr(log, "of 2 replicas confirmed"), "no warning in the log");
    free(log);
    for (int i = 0; i < 30; i++) {
        char id[32];
        snprintf(id, sizeof id, "w-%d", i);
        cr_expect_eq(e2e_rec_calls(&E, id, -1), 1, "%s handled %zu times", id,
                     e2e_rec_calls(&E, id, -1));
    }
}

Test(e2e_wait, a_wait_longer_than_the_command_timeout_is_refused_with_its_position)
{
    e2e_host_conf(&E, NULL);
    e2e_conf_file(&E, "05-wait.yaml",
                  "redis:\n  wait_replicas: 1\n  command_timeout_ms: 500\n"
                  "  wait_timeout_ms: 800\n");
    char *out = NULL, *err = NULL;
    char *bin = harness_build_path("host/daemon/evbusd");
    char *argv[] = {bin, "-c", E.fx.conf, "--check-config", NULL};
    int rc = harness_run(argv, NULL, NULL, &out, &err, 30000);
    free(bin);
    cr_expect_eq(rc, 2, "evbusd --check-config exited %d", rc);
    cr_expect(err && strstr(err, "05-wait.yaml:4:") &&
                  strstr(err, "redis.wait_timeout_ms: 800 must be below "
                              "redis.command_timeout_ms (500)"),
              "stderr: %s", err ? err : "");
    free(out);
    free(err);
}
