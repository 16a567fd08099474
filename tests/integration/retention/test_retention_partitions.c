/*
 * Retention on a partitioned stream (partitions: 4; docs/scale-out.md,
 * "Consuming partitions on one server", Retention): the caps are the
 * logical stream's and each partition keeps its share, a reload may bring
 * them, each partition's publish guard refuses at its share while others
 * still take events, no partition's trimmer passes what a consumer group
 * still owes there, and with retention.archive every partition's entries
 * reach PostgreSQL under their partition stream's name before they leave
 * Redis.  Real redis-server, PostgreSQL, evbusd, evbusctl and libevbus;
 * the testkit plugin records every event handled.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/evbus_client.h"
#include "client/partition.h"
#include "fixture.h"
#include "harness_pg.h"

#define P 4

static fx_t F;
static redisContext *R;
static harness_pg_t PG;
static bool pg_on;
static char out[600];

static void setup(void)
{
    fx_start(&F, false);
    R = harness_redis_connect(&F.redis);
    cr_assert_not_null(R);
    pg_on = false;
}

static void setup_pg(void)
{
    setup();
    cr_assert_eq(harness_pg_start(&PG), 0, "PostgreSQL did not start (see %s/pg.log)", PG.dir);
    pg_on = true;
}

static void teardown(void)
{
    if (F.d.pid > 0 && harness_kill(&F.d, SIGTERM, 15000) >= 0)
        F.d.pid = 0;
    redisFree(R);
    fx_stop(&F);
    if (pg_on)
        harness_pg_stop(&PG);
}

TestSuite(retention_partitions, .init = setup, .fini = teardown, .timeout = 180);
TestSuite(retention_partitions_pg, .init = setup_pg, .fini = teardown, .timeout = 180);

/* partitions: 4, `retention` and `extra`, and rec recording every event. */
static void conf(const char *retention, const char *extra)
{
    F.admin_port = harness_free_port();
    char host[2048];
    snprintf(host, sizeof host,
             "partitions: %d\nadmin: { listen: \"127.0.0.1:%d\" }\nretention: %s\n%s", P,
             F.admin_port, retention, extra ? extra : "");
    fx_host_conf(&F, "c1", host);
    fx_path(&F, "out.tsv", out, sizeof out);
    char buf[2048];
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: rec\n"
             "    plugin: %s\n"
             "    config: { out: %s, tag: R }\n"
             "    subscriptions: [ { pattern: \"**\", handler: record } ]\n",
             fx_plugin("plugins/testkit/testkit.so"), out);
    fx_conf(&F, "10-rec.yaml", buf);
}

static const char *part(unsigned p)
{
    static char names[P][32];
    snprintf(names[p], sizeof names[p], "{t:events:%u}", p);
    return names[p];
}

/* A partition key ("k<i>") whose events go to partition p. */
static void key_in(unsigned p, char *key, size_t len)
{
    for (int i = 0;; i++) {
        snprintf(key, len, "k%d", i);
        if (evbus_partition_of(key, strlen(key), P) == p)
            return;
    }
}

static long long xlen(unsigned p) { return harness_redis_int(R, "XLEN %s", part(p)); }

/* Entries group g has read but not acknowledged in partition p. */
static long long pending(unsigned p)
{
    redisReply *x = redisCommand(R, "XPENDING %s g", part(p));
    cr_assert(x && x->type == REDIS_REPLY_ARRAY && x->elements >= 1);
    long long n = x->element[0]->integer;
    freeReplyObject(x);
    return n;
}

/* HGET of partition p's policy hash ("" when absent). */
static void policy(unsigned p, const char *field, char *val, size_t len)
{
    redisReply *x = redisCommand(R, "HGET %s:retention %s", part(p), field);
    cr_assert(x);
    snprintf(val, len, "%s", x->type == REDIS_REPLY_STRING ? x->str : "");
    freeReplyObject(x);
}

/* Whether every partition's policy hash says field = want, within timeout_ms. */
static bool wait_policy(const char *field, const char *want, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        unsigned ok = 0;
        for (unsigned p = 0; p < P; p++) {
            char v[64];
            policy(p, field, v, sizeof v);
            ok += strcmp(v, want) == 0;
        }
        if (ok == P)
            return true;
        if (harness_now_ms() > deadline)
            return false;
        usleep(50 * 1000);
    }
}

/* Whether evbusd created its group g on every partition, within 10 s. */
static bool groups_ready(void)
{
    long long deadline = harness_now_ms() + 10000;
    for (;;) {
        unsigned ok = 0;
        for (unsigned p = 0; p < P; p++) {
            redisReply *x = redisCommand(R, "XINFO GROUPS %s", part(p));
            ok += x && x->type == REDIS_REPLY_ARRAY && x->elements >= 1;
            freeReplyObject(x);
        }
        if (ok == P)
            return true;
        if (harness_now_ms() > deadline)
            return false;
        usleep(20 * 1000);
    }
}

static json_t *health(void)
{
    int st;
    char *body = harness_http_get(F.admin_port, "/health", &st);
    cr_assert(body);
    json_t *h = json_loads(body, 0, NULL);
    free(body);
    cr_assert(h);
    return h;
}

/* /health's view of partition p's trimmer (borrowed from h). */
static json_t *trimmer(json_t *h, unsigned p)
{
    json_t *o = json_array_get(json_object_get(h, "partitions"), p);
    cr_assert(json_is_object(o), "no partition %u in /health", p);
    return json_object_get(o, "retention");
}

static long long jint(const json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

/* Publish one event of key `key` with libevbus: its return code, the
 * error in err. */
static int publish(evbus_client_t *c, const char *key, int i, char *err, size_t errlen)
{
    json_t *ev = json_pack("{s:s, s:s, s:s, s:{s:i}}", "type", "bulk.x", "tenantid", "t",
                           "partitionkey", key, "data", "i", i);
    char id[64];
    int rc = evbus_publish(c, ev, id, sizeof id, err, errlen);
    json_decref(ev);
    return rc;
}

static evbus_client_t *client(void)
{
    char err[256];
    evbus_client_t *c = evbus_client_new(F.redis.url, "t:events", err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    cr_assert_eq(evbus_client_set_partitions(c, P), 0);
    return c;
}

static char *ctl_out(const char *cmd)
{
    char *ctl = harness_build_path("host/ctl/evbusctl");
    char *argv[] = {ctl, "-c", F.conf, (char *)cmd, NULL};
    char *o = NULL, *e = NULL;
    int st = harness_run(argv, NULL, NULL, &o, &e, 30000);
    cr_expect(st == 0 || st == 1, "evbusctl %s exited %d: %s", cmd, st, e ? e : "");
    free(e);
    free(ctl);
    return o;
}

Test(retention_partitions, a_reload_brings_caps_and_each_partition_publishes_its_share)
{
    conf("{ interval: 100ms }", NULL);
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    cr_assert(wait_policy("max_entries", "0", 5000), "no policy in every partition");
    /* 1001 entries and 4 MiB + 1 byte over 4 partitions: shares rounded up */
    fx_conf(&F, "20-ret.yaml", "retention: { max_entries: 1001, max_bytes: 4194305 }\n");
    kill(F.d.pid, SIGHUP);
    cr_assert(fx_wait_log(&F, "generation 2 live", 10000), "the reload was not applied");
    cr_expect(!fx_log_has(&F, "keeps serving"), "the reload failed");
    cr_expect(wait_policy("max_entries", "251", 5000), "max_entries share not in every policy");
    cr_expect(wait_policy("max_bytes", "1048577", 5000), "max_bytes share not in every policy");
    json_t *h = health();
    for (unsigned p = 0; p < P; p++) {
        json_t *pol = json_object_get(trimmer(h, p), "policy");
        cr_expect_eq(jint(pol, "max_entries"), 251, "partition %u", p);
        json_t *stream = json_object_get(pol, "stream");
        cr_expect_eq(jint(stream, "max_entries"), 1001, "partition %u", p);
        cr_expect_eq(jint(stream, "max_bytes"), 4194305, "partition %u", p);
        cr_expect_eq(jint(stream, "partitions"), P, "partition %u", p);
    }
    json_decref(h);
    char *st = ctl_out("status");
    cr_expect(st && strstr(st, "max_entries 251 (1001 / 4 partitions), max_bytes 1048577 "
                               "(4194305 / 4 partitions), on_full reject"),
              "%s", st ? st : "");
    cr_expect(st && strstr(st, "{t:events:3}") && strstr(st, " of 251 entries"), "%s",
              st ? st : "");
    free(st);
}

Test(retention_partitions, a_partition_is_full_at_its_share_and_keeps_what_a_group_owes)
{
    conf("{ max_entries: 80, on_full: reject, interval: 100ms }", NULL);
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    cr_assert(wait_policy("max_entries", "20", 5000), "no share of the cap in every policy");
    cr_assert(groups_ready(), "evbusd's group is not on every partition");
    /* a consumer group of partition 1 that reads nothing: it owes everything */
    harness_redis_int(R, "XGROUP CREATE %s lagging 0", part(1));
    char k1[16], k2[16], err[512];
    key_in(1, k1, sizeof k1);
    key_in(2, k2, sizeof k2);
    evbus_client_t *c = client();
    for (int i = 0; i < 20; i++)
        cr_assert_eq(publish(c, k1, i, err, sizeof err), 0, "event %d of partition 1: %s", i,
                     err);
    /* g handled them all: only lagging owes them now */
    cr_assert(fx_wait_lines(out, 20, 20000));
    for (int w = 0; w < 500 && pending(1) != 0; w++)
        usleep(10 * 1000);
    int rc = 0, refused = 0;
    for (int i = 20; i < 25; i++)
        if ((rc = publish(c, k1, i, err, sizeof err)) == EVBUS_CLIENT_EFULL)
            refused++;
    cr_expect_eq(refused, 5, "partition 1 took %d events past its share of 20", 5 - refused);
    cr_expect_eq(rc, EVBUS_CLIENT_EFULL, "rc %d: %s", rc, err);
    cr_expect(strstr(err, "stream {t:events:1} holds 20 entries (retention.max_entries 20) and "
                          "consumer group lagging still owes them"),
              "%s", err);
    /* the other partitions keep taking events: the guard trims what every
     * group is done with there, one at a time as rec acknowledges */
    for (int i = 0; i < 25; i++) {
        cr_assert_eq(publish(c, k2, i, err, sizeof err), 0, "event %d of partition 2: %s", i,
                     err);
        cr_assert(fx_wait_lines(out, (size_t)(21 + i), 20000));
        for (int w = 0; w < 500 && pending(2) != 0; w++)
            usleep(10 * 1000);
    }
    cr_expect_leq(xlen(2), 20, "partition 2 holds %lld entries", xlen(2));
    /* trimmer rounds later partition 1 still holds every entry lagging owes */
    usleep(600 * 1000);
    cr_expect_eq(xlen(1), 20, "partition 1 lost entries its group still owes");
    cr_expect_eq(harness_count_lines(out), 45);
    json_t *h = health();
    json_t *t1 = trimmer(h, 1), *t2 = trimmer(h, 2);
    cr_expect(json_is_true(json_object_get(t1, "full")), "partition 1 not full");
    cr_expect(json_is_true(json_object_get(t1, "blocked")));
    cr_expect_str_eq(json_string_value(json_object_get(t1, "floor_group")), "lagging");
    cr_expect_str_eq(json_string_value(json_object_get(t1, "level")), "error");
    cr_expect(json_is_false(json_object_get(t2, "full")), "partition 2 full");
    cr_expect_str_eq(json_string_value(json_object_get(json_object_get(h, "retention"),
                                                       "level")), "ok", "partition 0's trimmer");
    cr_expect_str_eq(json_string_value(json_object_get(h, "status")), "degraded");
    json_decref(h);
    char *st = ctl_out("status");
    cr_expect(st && strstr(st, "{t:events:1}") &&
                  strstr(st, "20 of 20 entries (error); FULL: publishers are refused; group "
                             "lagging holds the floor"),
              "%s", st ? st : "");
    free(st);

    /* protect only g: lagging's backlog may go, down to 90 % of the share */
    fx_conf(&F, "20-ret.yaml", "retention: { protect_groups: [g] }\n");
    kill(F.d.pid, SIGHUP);
    long long deadline = harness_now_ms() + 5000;
    while (xlen(1) != 18 && harness_now_ms() < deadline)
        usleep(50 * 1000);
    cr_expect_eq(xlen(1), 18, "partition 1 after unprotecting lagging: %lld", xlen(1));
    cr_expect_eq(publish(c, k1, 99, err, sizeof err), 0, "%s", err);
    evbus_client_free(c);
}

Test(retention_partitions, a_partition_is_flagged_full_at_its_share_of_max_bytes)
{
    conf("{ max_bytes: 64KiB, on_full: reject, interval: 100ms }", NULL);
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    cr_assert(wait_policy("max_bytes", "16384", 5000), "no share of max_bytes in every policy");
    cr_assert(groups_ready(), "evbusd's group is not on every partition");
    harness_redis_int(R, "XGROUP CREATE %s lagging 0", part(1));
    char k1[16], k2[16], err[512];
    key_in(1, k1, sizeof k1);
    key_in(2, k2, sizeof k2);
    evbus_client_t *c = client();
    /* the trimmer flags {t:events:1} full within a round of its share */
    int accepted = 0, rc = 0;
    for (int i = 0; i < 3000 && (rc = publish(c, k1, i, err, sizeof err)) == 0; i++) {
        accepted++;
        usleep(2000);
    }
    cr_assert_eq(rc, EVBUS_CLIENT_EFULL, "rc %d after %d events: %s", rc, accepted, err);
    /* once g has handled them all, what holds the floor is lagging */
    cr_assert(fx_wait_lines(out, (size_t)accepted, 20000));
    for (int w = 0; w < 500 && pending(1) != 0; w++)
        usleep(10 * 1000);
    usleep(400 * 1000);
    cr_expect_eq(publish(c, k1, -1, err, sizeof err), EVBUS_CLIENT_EFULL, "%s", err);
    cr_expect(strstr(err, "stream {t:events:1} holds about ") &&
                  strstr(err, "bytes (retention.max_bytes 16384) and consumer group lagging "
                              "still owes them"),
              "%s", err);
    cr_expect_eq(xlen(1), accepted, "partition 1 lost entries its group still owes");
    cr_expect_eq(harness_redis_int(R, "EXISTS %s:retention:full", part(1)), 1);
    cr_expect_eq(harness_redis_int(R, "EXISTS %s:retention:full", part(2)), 0,
                 "partition 2 flagged full");
    /* another partition still takes events */
    cr_expect_eq(publish(c, k2, 0, err, sizeof err), 0, "%s", err);
    evbus_client_free(c);
}

Test(retention_partitions_pg, each_partitions_entries_are_archived_under_its_stream_before_trimming)
{
    char pg[300];
    snprintf(pg, sizeof pg, "postgres: { url: \"%s\", migrate_on_start: true }\n", PG.url);
    conf("{ max_age: 1h, interval: 100ms }", pg);
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    evbus_client_t *c = client();
    int per[P] = {0};
    char err[512], key[16];
    for (int i = 0; i < 60; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        per[evbus_partition_of(key, strlen(key), P)]++;
        cr_assert_eq(publish(c, key, i, err, sizeof err), 0, "%s", err);
    }
    evbus_client_free(c);
    cr_assert(fx_wait_lines(out, 60, 20000));
    /* a reload brings the archive and a short max_age in one generation:
     * every entry is acknowledged and past it, so archived, then trimmed */
    fx_conf(&F, "20-ret.yaml", "retention: { max_age: 500ms, archive: postgres }\n");
    kill(F.d.pid, SIGHUP);
    cr_assert(fx_wait_log(&F, "generation 2 live", 10000), "the reload was not applied");
    long long left = -1, deadline = harness_now_ms() + 15000;
    while (harness_now_ms() < deadline) {
        left = 0;
        for (unsigned p = 0; p < P; p++)
            left += xlen(p);
        if (left == 0)
            break;
        usleep(100 * 1000);
    }
    cr_assert_eq(left, 0, "%lld entries never left the partitions", left);
    PGconn *db = PQconnectdb(PG.url);
    cr_assert_eq(PQstatus(db), CONNECTION_OK);
    for (unsigned p = 0; p < P; p++) {
        const char *params[] = {part(p)};
        PGresult *r = PQexecParams(db, "SELECT count(*), max(ms || '-' || seq) FROM"
                                       " events_archive WHERE stream = $1",
                                   1, NULL, params, NULL, NULL, 0);
        cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(db));
        cr_expect_eq(atoi(PQgetvalue(r, 0, 0)), per[p], "rows of %s", part(p));
        char wm[64];
        policy(p, "archived", wm, sizeof wm);
        if (per[p])
            cr_expect(wm[0] != '\0', "no watermark in %s:retention", part(p));
        PQclear(r);
    }
    PGresult *r = PQexec(db, "SELECT count(*) FROM events_archive WHERE stream = 't:events'");
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "0", "rows under the unpartitioned stream's name");
    PQclear(r);
    PQfinish(db);
    json_t *h = health();
    for (unsigned p = 0; p < P; p++) {
        json_t *a = json_object_get(trimmer(h, p), "archive");
        cr_expect_str_eq(json_string_value(json_object_get(a, "mode")), "postgres", "%u", p);
        cr_expect_eq(jint(a, "archived_total"), per[p], "partition %u", p);
    }
    json_decref(h);
}

Test(retention_partitions, evbusctl_publish_refuses_at_a_partitions_share_of_the_configured_cap)
{
    /* evbusd has not run: evbusctl guards with the configuration's cap */
    conf("{ max_entries: 80, on_full: reject }", NULL);
    char k1[16], nd[700];
    key_in(1, k1, sizeof k1);
    fx_path(&F, "events.ndjson", nd, sizeof nd);
    FILE *f = fopen(nd, "w");
    for (int i = 0; i < 50; i++)
        fprintf(f, "{\"type\":\"bulk.x\",\"tenantid\":\"t\",\"partitionkey\":\"%s\","
                   "\"data\":{\"i\":%d}}\n", k1, i);
    fclose(f);
    char *ctl = harness_build_path("host/ctl/evbusctl");
    char *argv[] = {ctl, "-c", F.conf, "publish", "--file", nd, NULL};
    char *o = NULL, *e = NULL;
    cr_expect_eq(harness_run(argv, NULL, NULL, &o, &e, 60000), 1, "stderr: %s", e);
    cr_expect(e && strstr(e, "stream {t:events:1} holds 20 entries (retention.max_entries 20) "
                             "and no consumer group has read them yet"),
              "stderr: %s", e ? e : "");
    cr_expect(e && strstr(e, "20 of 50 events published"), "stderr: %s", e ? e : "");
    cr_expect_eq(xlen(1), 20);
    free(o);
    free(e);
    free(ctl);
}
