/*
 * Retention without loss, end to end: a capped stream refuses what does
 * not fit instead of dropping unread events, the trimmer never passes a
 * protected group's floor, and age retention trims exactly the
 * acknowledged entries older than max_age.  Real redis-server, real
 * evbusd, real evbusctl, the testkit plugin recording every event.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"

static fx_t F;
static redisContext *R;

static void setup(void)
{
    fx_start(&F, false);
    R = harness_redis_connect(&F.redis);
    cr_assert_not_null(R);
}

static void teardown(void)
{
    redisFree(R);
    fx_stop(&F);
}

TestSuite(retention, .init = setup, .fini = teardown, .timeout = 300);

static void conf(const char *retention, char *out, size_t outlen)
{
    F.admin_port = harness_free_port();
    char extra[1024];
    snprintf(extra, sizeof extra, "admin: { listen: \"127.0.0.1:%d\" }\nretention: %s\n",
             F.admin_port, retention);
    fx_host_conf(&F, "c1", extra);
    fx_path(&F, "out.tsv", out, outlen);
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

static long long xlen(void) { return harness_redis_int(R, "XLEN t:events"); }

static bool wait_xlen(long long want, int timeout_ms)
{
    for (int i = 0; i < timeout_ms / 20; i++) {
        if (xlen() == want)
            return true;
        usleep(20000);
    }
    return xlen() == want;
}

Test(retention, a_full_stream_refuses_publishes_and_loses_nothing)
{
    char out[600];
    conf("{ max_entries: 100, on_full: reject, interval: 200ms }", out, sizeof out);
    /* evbusd has never run: no group has read anything, nothing may go */
    char nd[700];
    fx_path(&F, "events.ndjson", nd, sizeof nd);
    FILE *f = fopen(nd, "w");
    for (int i = 0; i < 1000; i++)
        fprintf(f, "{\"type\":\"bulk.x\",\"tenantid\":\"t\",\"id\":\"ev-%d\",\"data\":{\"i\":%d}}\n",
                i, i);
    fclose(f);
    char *ctl = harness_build_path("host/ctl/evbusctl");
    char *pub[] = {ctl, "-c", F.conf, "publish", "--file", nd, NULL};
    char *o = NULL, *e = NULL;
    cr_assert_eq(harness_run(pub, NULL, NULL, &o, &e, 60000), 1, "stderr: %s", e);
    size_t ids = 0;
    for (const char *p = o; p && *p; p++)
        ids += *p == '\n';
    cr_expect_eq(ids, 100, "stdout: %s", o);
    cr_expect(strstr(e, "stream full: stream t:events holds 100 entries "
                        "(retention.max_entries 100) and no consumer group has read them yet"),
              "stderr: %s", e);
    cr_expect(strstr(e, "100 of 1000 events published, 900 refused or not sent"), "%s", e);
    free(o);
    free(e);
    cr_assert_eq(xlen(), 100);

    /* evbusd handles exactly what was published */
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_lines(out, 100, 20000));
    cr_assert(fx_wait_drained(&F, 20000));
    usleep(500 * 1000);
    cr_expect_eq(harness_count_lines(out), 100);
    /* acknowledged: the trimmer brings the stream to the policy, 90 % of
     * the cap, so publishers are not refused while consumers keep up */
    cr_expect(wait_xlen(90, 3000), "XLEN %lld, wanted 90", xlen());

    /* acknowledged entries make room: the next publish is accepted */
    f = fopen(nd, "w");
    for (int i = 0; i < 50; i++)
        fprintf(f, "{\"type\":\"bulk.x\",\"tenantid\":\"t\",\"data\":{\"i\":%d}}\n", i);
    fclose(f);
    cr_assert_eq(harness_run(pub, NULL, NULL, &o, &e, 60000), 0, "stderr: %s", e);
    free(o);
    free(e);
    cr_assert(fx_wait_lines(out, 150, 20000));
    cr_expect(xlen() <= 100, "XLEN %lld over the cap", xlen());
    json_t *h = health();
    json_t *ret = json_object_get(h, "retention");
    cr_expect_eq(json_integer_value(json_object_get(json_object_get(ret, "policy"),
                                                    "max_entries")), 100);
    json_decref(h);
    free(ctl);
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
}

Test(retention, a_lagging_protected_group_holds_the_floor_until_it_is_unprotected)
{
    char out[600];
    conf("{ max_age: 1s, interval: 200ms }", out, sizeof out);
    /* a foreign consumer group on the same stream that never reads */
    harness_redis_int(R, "XGROUP CREATE t:events lagging 0 MKSTREAM");
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    fx_publish(&F, "a", 30, "bulk.x", "t", "{\"i\":%d}");
    cr_assert(fx_wait_lines(out, 30, 20000));
    /* g acknowledged everything (fx_wait_drained would wait for `lagging` too) */
    for (int i = 0; i < 500 && fx_pending(&F) != 0; i++)
        usleep(20000);
    cr_assert_eq(fx_pending(&F), 0);
    sleep(2); /* every entry is past max_age and acknowledged by g */
    cr_expect_eq(xlen(), 30, "the lagging group still owes every entry");
    json_t *h = health();
    json_t *ret = json_object_get(h, "retention");
    cr_expect(json_is_true(json_object_get(ret, "blocked")));
    cr_expect_str_eq(json_string_value(json_object_get(ret, "floor_group")), "lagging");
    json_decref(h);
    int st;
    char *metrics = harness_http_get(F.admin_port, "/metrics", &st);
    cr_expect(metrics && strstr(metrics, "evbus_stream_retention_blocked 1\n"));
    free(metrics);

    /* protect only our own group: the lagging one's backlog may go */
    fx_conf(&F, "20-ret.yaml", "retention: { protect_groups: [g] }\n");
    kill(F.d.pid, SIGHUP);
    cr_expect(wait_xlen(0, 5000), "XLEN %lld after unprotecting", xlen());
    h = health();
    cr_expect(json_is_false(json_object_get(json_object_get(h, "retention"), "blocked")));
    json_decref(h);
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
}

Test(retention, age_retention_trims_exactly_the_acknowledged_entries_older_than_max_age)
{
    char out[600];
    conf("{ max_age: 2s, interval: 100ms }", out, sizeof out);
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    fx_publish(&F, "a", 20, "bulk.x", "t", "{\"i\":%d}");
    cr_assert(fx_wait_lines(out, 20, 20000));
    usleep(1200 * 1000);
    fx_publish(&F, "b", 20, "bulk.x", "t", "{\"i\":%d}");
    cr_assert(fx_wait_lines(out, 40, 20000));
    cr_assert(fx_wait_drained(&F, 20000));
    /* the b entries, newest first */
    redisReply *b = redisCommand(R, "XREVRANGE t:events + - COUNT 20");
    cr_assert(b && b->elements == 20);
    /* within ~0.8 s the a entries pass 2 s and go; the b ones must stay */
    cr_assert(wait_xlen(20, 3000), "XLEN %lld", xlen());
    redisReply *left = redisCommand(R, "XRANGE t:events - +");
    cr_assert_eq(left->elements, 20);
    for (size_t i = 0; i < 20; i++)
        cr_expect_str_eq(left->element[i]->element[0]->str,
                         b->element[19 - i]->element[0]->str, "entry %zu", i);
    freeReplyObject(left);
    freeReplyObject(b);
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
}
