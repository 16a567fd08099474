/*
 * Per-key ordering end to end (docs/plugins.md, "Per-key ordering").
 *
 * One evbusd with four workers runs two instances of keyed.so on "test.**":
 * "ko" with ordering: per_key and "plain" without it.  Each call appends
 * "<key> <seq> <attempt> <start_us> <end_us> <result>" to its file; events
 * say in data.fail how often they fail before they succeed (and "ko" can be
 * paused through the pause hash, as evbusctl does).  The tests read
 * the files back and check, per key: stream order, one call at a time, no
 * attempt spent by the events that waited, and who waited for whom.
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define STREAM "ko:events"

typedef struct call {
    char key[32];
    int seq, attempt;
    long long start, end;
    char result[8];
} call_t;

typedef struct calls {
    call_t *v;
    size_t n;
} calls_t;

static harness_redis_t redis;
static char *dir;
static char ko_file[512], plain_file[512], conf_dir[512], log_path[512];
static int admin_port;
static harness_proc_t host;
static redisContext *rc;
static const char *ko_ordering = "per_key"; /* the "ko" subscription's ordering: */
static const char *ko_isolation = "in-process"; /* the "ko" instance's isolation: */
static const char *plain_pattern = "test.**";  /* what "plain" subscribes to */

static void write_config(unsigned max_attempts, unsigned base_ms)
{
    char state[600];
    snprintf(conf_dir, sizeof conf_dir, "%s/conf", dir);
    snprintf(state, sizeof state, "%s/state", dir);
    mkdir(conf_dir, 0777);
    mkdir(state, 0700);
    char *keyed = harness_build_path("plugins/testkit/keyed.so");
    char *schemas = harness_source_path("schemas");
    char *yaml = NULL;
    cr_assert_geq(asprintf(&yaml,
                           "redis: { url: \"%s\" }\n"
                           "stream: " STREAM "\n"
                           "consumer: c1\n"
                           "batch_size: 200\n"
                           "block_ms: 50\n"
                           "worker_threads: 4\n"
                           "state_dir: %s\n"
                           "schemas: { dir: %s, mode: off }\n"
                           "admin: { listen: \"127.0.0.1:%d\" }\n"
                           "retry: { base_ms: %u, factor: 2, max_ms: 5000, max_attempts: %u, "
                           "jitter: 0 }\n"
                           "reclaim: { min_idle_ms: 1000, interval_ms: 200 }\n"
                           "plugins:\n"
                           "  - name: ko\n"
                           "    plugin: %s\n"
                           "    isolation: %s\n"
                           "    config: { out: %s, sleep_ms: 3 }\n"
                           "    subscriptions:\n"
                           "      - { pattern: \"test.**\", ordering: %s }\n"
                           "  - name: plain\n"
                           "    plugin: %s\n"
                           "    config: { out: %s, sleep_ms: 3 }\n"
                           "    subscriptions:\n"
                           "      - { pattern: \"%s\" }\n",
                           redis.url, state, schemas, admin_port, base_ms, max_attempts, keyed,
                           ko_isolation, ko_file, ko_ordering, keyed, plain_file, plain_pattern),
                  0);
    free(keyed);
    free(schemas);
    cr_assert_eq(harness_write_file(conf_dir, "10-ko.yaml", yaml), 0);
    free(yaml);
}

static void start_host(void)
{
    char *evbusd = harness_build_path("host/daemon/evbusd");
    char *argv[] = {evbusd, "-c", conf_dir, NULL};
    cr_assert_eq(harness_spawn(&host, argv, NULL, log_path), 0);
    free(evbusd);
}

/* SIGTERM: evbusd finishes what it holds and exits 0 (under the
 * sanitizers, also without a report). */
static void stop_host(void)
{
    int rc = harness_kill(&host, SIGTERM, 15000);
    cr_expect_eq(rc, 0, "evbusd did not exit cleanly (status %d); see %s", rc, log_path);
    host.pid = 0;
}

static void setup(void)
{
    cr_assert_eq(harness_redis_start(&redis, false), 0);
    dir = harness_tmpdir("keyorder");
    snprintf(ko_file, sizeof ko_file, "%s/ko.tsv", dir);
    snprintf(plain_file, sizeof plain_file, "%s/plain.tsv", dir);
    snprintf(log_path, sizeof log_path, "%s/evbusd.log", dir);
    admin_port = harness_free_port();
    rc = harness_redis_connect(&redis);
    cr_assert_not_null(rc);
    host.pid = 0;
    ko_ordering = "per_key";
    ko_isolation = "in-process";
    plain_pattern = "test.**";
}

static void teardown(void)
{
    if (host.pid > 0)
        harness_kill(&host, SIGKILL, 5000);
    if (rc)
        redisFree(rc);
    harness_redis_stop(&redis);
    char *log = harness_read_file(log_path);
    if (log && getenv("KEYORDER_SHOW_LOG"))
        fprintf(stderr, "%s\n", log);
    free(log);
    harness_rmrf(dir);
    free(dir);
}

TestSuite(keyorder, .init = setup, .fini = teardown, .timeout = 120);

static void publish(const char *key, int seq, int fail, bool reject)
{
    char id[64];
    snprintf(id, sizeof id, "%s-%d", key, seq);
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:{s:i, s:i, s:b}}",
                           "specversion", "1.0", "id", id, "source", "tests/keyorder", "type",
                           "test.keyorder.step", "time", "2026-12-07T00:00:00Z", "tenantid",
                           "tenant-a", "partitionkey", key, "data", "seq", seq, "fail", fail,
                           "reject", reject);
    char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    redisReply *r = redisCommand(rc, "XADD " STREAM " * event %s", text);
    free(text);
    cr_assert(r && r->type == REDIS_REPLY_STRING, "XADD failed");
    freeReplyObject(r);
}

static calls_t read_calls(const char *path)
{
    calls_t c = {0};
    char *text = harness_read_file(path);
    if (!text)
        return c;
    size_t cap = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (c.n == cap) {
            cap = cap ? cap * 2 : 64;
            c.v = realloc(c.v, cap * sizeof *c.v);
        }
        call_t *k = &c.v[c.n];
        if (sscanf(line, "%31s %d %d %lld %lld %7s", k->key, &k->seq, &k->attempt, &k->start,
                   &k->end, k->result) == 6)
            c.n++;
    }
    free(text);
    return c;
}

static long long redis_int(const char *fmt, const char *arg)
{
    return harness_redis_int(rc, fmt, arg);
}

static size_t count_ok(const calls_t *c, const char *key)
{
    size_t n = 0;
    for (size_t i = 0; i < c->n; i++)
        n += !strcmp(c->v[i].key, key) && !strcmp(c->v[i].result, "ok");
    return n;
}

/* Everything read, acknowledged, no retry scheduled, no key held. */
static bool drained(void *ud)
{
    (void)ud;
    redisReply *r = redisCommand(rc, "XINFO GROUPS " STREAM);
    bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 1;
    if (ok) {
        const redisReply *g = r->element[0];
        long long pending = -1, lag = -1;
        for (size_t i = 0; i + 1 < g->elements; i += 2) {
            if (!strcmp(g->element[i]->str, "pending"))
                pending = g->element[i + 1]->integer;
            if (!strcmp(g->element[i]->str, "lag"))
                lag = g->element[i + 1]->type == REDIS_REPLY_INTEGER ? g->element[i + 1]->integer
                                                                      : -1;
        }
        ok = pending == 0 && lag == 0;
    }
    if (r)
        freeReplyObject(r);
    return ok && redis_int("ZCARD %s", STREAM ":retry") == 0 &&
           redis_int("HLEN %s", STREAM ":keyhold") == 0;
}

/* The first successful call of key/seq, or NULL. */
static const call_t *first_ok(const calls_t *c, const char *key, int seq)
{
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->v[i].key, key) && c->v[i].seq == seq && !strcmp(c->v[i].result, "ok"))
            return &c->v[i];
    return NULL;
}

static const call_t *first_call(const calls_t *c, const char *key, int seq)
{
    const call_t *f = NULL;
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->v[i].key, key) && c->v[i].seq == seq && (!f || c->v[i].start < f->start))
            f = &c->v[i];
    return f;
}

/* Per key: calls never overlap, and seq n first succeeds before seq n+1
 * is first called (stream order, one at a time). */
static void expect_per_key_order(const calls_t *c, const char *const *keys, size_t n_keys,
                                 int per_key)
{
    for (size_t k = 0; k < n_keys; k++) {
        for (size_t i = 0; i < c->n; i++)
            for (size_t j = i + 1; j < c->n; j++)
                if (!strcmp(c->v[i].key, keys[k]) && !strcmp(c->v[j].key, keys[k]))
                    cr_expect(c->v[i].end <= c->v[j].start || c->v[j].end <= c->v[i].start,
                              "calls of key %s overlap: seq %d and seq %d", keys[k],
                              c->v[i].seq, c->v[j].seq);
        for (int s = 1; s < per_key; s++) {
            const call_t *done = first_ok(c, keys[k], s), *next = first_call(c, keys[k], s + 1);
            cr_assert_not_null(done, "%s-%d never succeeded", keys[k], s);
            cr_assert_not_null(next, "%s-%d never called", keys[k], s + 1);
            cr_expect_leq(done->end, next->start, "%s-%d was called before %s-%d succeeded",
                          keys[k], s + 1, keys[k], s);
        }
    }
}

static long long metric(const char *name)
{
    char *body = harness_http_get(admin_port, "/metrics", NULL);
    long long v = -1;
    for (char *p = body; p && (p = strstr(p, name)); p += strlen(name))
        if ((p == body || p[-1] == '\n') && p[strlen(name)] == ' ')
            v = atoll(p + strlen(name) + 1);
    free(body);
    return v;
}

Test(keyorder, per_key_order_holds_and_a_retrying_key_blocks_only_itself)
{
    write_config(5, 400); /* A-1 fails twice: retried after 400 and 800 ms */
    /* 8 keys x 20 events read in one batch of 160: without lanes, the
     * batch's chunks would run the same keys on all four workers at once */
    static const char *const keys[] = {"A", "B", "C", "D", "E", "F", "G", "H"};
    enum { N_KEYS = 8, PER_KEY = 20 };
    for (int s = 1; s <= PER_KEY; s++)
        for (int k = 0; k < N_KEYS; k++)
            publish(keys[k], s, k == 0 && s == 1 ? 2 : 0, false);
    start_host();
    cr_assert(harness_wait_until((bool (*)(void *))drained, NULL, 60000), "not drained");
    calls_t c = read_calls(ko_file);
    expect_per_key_order(&c, keys, N_KEYS, PER_KEY);
    for (int k = 0; k < N_KEYS; k++)
        cr_expect_eq(count_ok(&c, keys[k]), PER_KEY, "key %s: every event succeeded once",
                     keys[k]);
    /* A waited: A-2.. were never called before A-1 succeeded, and were
     * called once each (waiting spends no attempt) */
    const call_t *a1 = first_ok(&c, "A", 1);
    cr_assert_not_null(a1);
    cr_expect_eq(a1->attempt, 3);
    for (int s = 2; s <= PER_KEY; s++) {
        const call_t *f = first_call(&c, "A", s);
        cr_assert_not_null(f);
        cr_expect_eq(f->attempt, 1, "A-%d waited with its attempt kept", s);
        cr_expect_geq(f->start, a1->end);
    }
    /* ... while the other keys went on: all of them were done before
     * A-1's retries were over */
    for (int k = 1; k < N_KEYS; k++) {
        const call_t *last = first_ok(&c, keys[k], PER_KEY);
        cr_assert_not_null(last);
        cr_expect_lt(last->end, a1->start, "key %s waited for A", keys[k]);
    }
    cr_expect_geq(metric("evbus_keyorder_events_held_total"), PER_KEY - 1);
    cr_expect_eq(metric("evbus_keyorder_keys_held"), 0);
    free(c.v);
    stop_host();
}

Test(keyorder, a_handler_without_the_option_is_not_held_back)
{
    write_config(5, 400);
    publish("A", 1, 2, false);
    for (int s = 2; s <= 5; s++)
        publish("A", s, 0, false);
    start_host();
    cr_assert(harness_wait_until((bool (*)(void *))drained, NULL, 60000), "not drained");
    calls_t ko = read_calls(ko_file), plain = read_calls(plain_file);
    const call_t *a1 = first_ok(&ko, "A", 1);
    cr_assert_not_null(a1);
    /* "plain" sees the same events, retries A-1 too, and handles A-2..A-5
     * while A-1 waits for its retry: today's behaviour */
    for (int s = 2; s <= 5; s++) {
        const call_t *p = first_ok(&plain, "A", s);
        cr_assert_not_null(p, "plain never handled A-%d", s);
        cr_expect_lt(p->end, first_ok(&plain, "A", 1)->start, "plain waited for A-1");
        cr_expect_lt(p->end, a1->start);
    }
    free(ko.v);
    free(plain.v);
    stop_host();
}

Test(keyorder, a_dead_lettered_event_releases_its_key)
{
    write_config(3, 200); /* A-1 fails every time: dead-lettered after attempt 3 */
    publish("A", 1, 100, false);
    for (int s = 2; s <= 4; s++)
        publish("A", s, 0, false);
    start_host();
    cr_assert(harness_wait_until((bool (*)(void *))drained, NULL, 60000), "not drained");
    calls_t c = read_calls(ko_file);
    cr_expect_eq(count_ok(&c, "A"), 3, "A-2..A-4 ran once A-1 was dead-lettered");
    long long last_a1 = 0;
    for (size_t i = 0; i < c.n; i++)
        if (!strcmp(c.v[i].key, "A") && c.v[i].seq == 1) {
            cr_expect_str_eq(c.v[i].result, "retry");
            if (c.v[i].end > last_a1)
                last_a1 = c.v[i].end;
        }
    for (int s = 2; s <= 4; s++) {
        const call_t *f = first_call(&c, "A", s);
        cr_assert_not_null(f);
        cr_expect_geq(f->start, last_a1, "A-%d ran before A-1 was dead-lettered", s);
        cr_expect_eq(f->attempt, 1);
    }
    static const char *const a[] = {"A"};
    expect_per_key_order(&c, a, 1, 1);
    /* the dead letter is A-1's, for "ko" */
    redisReply *r = redisCommand(rc, "XRANGE " STREAM ":dlq - +");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    size_t ko_letters = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *fv = r->element[i]->element[1];
        const char *eid = NULL, *handlers = NULL;
        for (size_t k = 0; k + 1 < fv->elements; k += 2) {
            if (!strcmp(fv->element[k]->str, "event_id"))
                eid = fv->element[k + 1]->str;
            if (!strcmp(fv->element[k]->str, "handlers"))
                handlers = fv->element[k + 1]->str;
        }
        if (handlers && strstr(handlers, "ko/record")) {
            ko_letters++;
            cr_expect_str_eq(eid, "A-1");
        }
    }
    cr_expect_eq(ko_letters, 1);
    freeReplyObject(r);
    free(c.v);
    stop_host();
}

static bool key_a_held(void *ud)
{
    (void)ud;
    redisReply *r = redisCommand(rc, "HGET " STREAM ":keyhold %b", "ko/record\nA", (size_t)11);
    bool held = r && r->type == REDIS_REPLY_STRING && atoi(r->str) >= 3;
    if (r)
        freeReplyObject(r);
    return held;
}

Test(keyorder, a_kill_9_and_restart_mid_stream_keeps_the_order)
{
    write_config(5, 1500); /* A-1's retries are due after 1.5 s and 3 s */
    static const char *const keys[] = {"A", "B"};
    publish("A", 1, 2, false);
    for (int s = 2; s <= 8; s++)
        publish("A", s, 0, false);
    start_host();
    /* A-1 is waiting for its retry with followers queued behind it */
    cr_assert(harness_wait_until(key_a_held, NULL, 20000), "A was never held");
    cr_assert_geq(harness_kill(&host, SIGKILL, 5000), 0);
    host.pid = 0;
    /* more of A and of B arrive while no host runs */
    for (int s = 9; s <= 12; s++)
        publish("A", s, 0, false);
    for (int s = 1; s <= 12; s++)
        publish("B", s, 0, false);
    start_host();
    cr_assert(harness_wait_until((bool (*)(void *))drained, NULL, 60000), "not drained");
    calls_t c = read_calls(ko_file);
    expect_per_key_order(&c, keys, 2, 12);
    const call_t *a1 = first_ok(&c, "A", 1);
    cr_assert_not_null(a1);
    for (int s = 2; s <= 12; s++) {
        const call_t *f = first_call(&c, "A", s);
        cr_assert_not_null(f);
        cr_expect_geq(f->start, a1->end, "A-%d overtook A-1 across the restart", s);
    }
    for (int k = 0; k < 2; k++)
        cr_expect_geq(count_ok(&c, keys[k]), 12);
    free(c.v);
    stop_host();
}

static bool four_queued_behind_a(void *ud)
{
    (void)ud;
    redisReply *r = redisCommand(rc, "LLEN %b", STREAM ":keyq:ko/record:A",
                                 strlen(STREAM ":keyq:ko/record:A"));
    bool yes = r && r->type == REDIS_REPLY_INTEGER && r->integer == 4;
    if (r)
        freeReplyObject(r);
    return yes;
}

/* /health says this host treats "ko" as paused. */
static bool ko_paused(void *ud)
{
    (void)ud;
    char *body = harness_http_get(admin_port, "/health", NULL);
    json_t *h = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    bool yes = json_object_get(json_object_get(h, "paused"), "ko") != NULL;
    json_decref(h);
    return yes;
}

Test(keyorder, a_paused_handler_keeps_its_keys_in_order_until_resumed)
{
    write_config(5, 200);
    start_host();
    /* pause "ko" the way evbusctl does (the hash every host polls) */
    redisReply *r = redisCommand(rc, "HSET " STREAM ":paused ko {}");
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    freeReplyObject(r);
    /* until this host enforces it (a slow start, a sanitizer build) */
    cr_assert(harness_wait_until(ko_paused, NULL, 20000), "the pause was never seen");
    for (int s = 1; s <= 5; s++)
        publish("A", s, 0, false);
    /* A-1 is deferred as the key's owner; A-2..A-5 wait behind it, in order */
    cr_assert(harness_wait_until(four_queued_behind_a, NULL, 20000),
              "A-2..A-5 were not queued behind the paused A-1");
    calls_t before = read_calls(ko_file);
    cr_expect_eq(before.n, 0, "a paused handler was called");
    free(before.v);
    r = redisCommand(rc, "HDEL " STREAM ":paused ko");
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    freeReplyObject(r);
    cr_assert(harness_wait_until((bool (*)(void *))drained, NULL, 30000), "not drained");
    calls_t c = read_calls(ko_file), plain = read_calls(plain_file);
    static const char *const a[] = {"A"};
    expect_per_key_order(&c, a, 1, 5);
    for (int s = 1; s <= 5; s++) {
        const call_t *f = first_call(&c, "A", s);
        cr_assert_not_null(f);
        cr_expect_eq(f->attempt, 1, "A-%d spent an attempt while paused or waiting", s);
        cr_expect_not_null(first_ok(&plain, "A", s), "plain was held back by ko's pause");
    }
    free(c.v);
    free(plain.v);
    stop_host();
}

static long long reloads_ok(void)
{
    char *body = harness_http_get(admin_port, "/health", NULL);
    json_t *h = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    long long n = json_integer_value(json_object_get(json_object_get(h, "reload"), "ok_total"));
    json_decref(h);
    return n;
}

Test(keyorder, a_reload_that_turns_ordering_off_still_hands_the_waiting_events_on)
{
    write_config(5, 1500); /* A-1's retry is due after 1.5 s */
    publish("A", 1, 1, false);
    for (int s = 2; s <= 4; s++)
        publish("A", s, 0, false);
    start_host();
    cr_assert(harness_wait_until(key_a_held, NULL, 20000), "A-2..A-4 never waited behind A-1");
    long long before = reloads_ok();
    ko_ordering = "none";
    write_config(5, 1500);
    kill(host.pid, SIGHUP);
    for (int i = 0; i < 500 && reloads_ok() == before; i++)
        usleep(10000);
    cr_assert_gt(reloads_ok(), before, "the reload did not happen");
    cr_assert(harness_wait_until((bool (*)(void *))drained, NULL, 30000),
              "the events queued before the reload were stranded");
    calls_t c = read_calls(ko_file);
    static const char *const a[] = {"A"};
    expect_per_key_order(&c, a, 1, 4);
    for (int s = 2; s <= 4; s++) {
        const call_t *f = first_call(&c, "A", s);
        cr_assert_not_null(f, "A-%d was never delivered", s);
        cr_expect_eq(f->attempt, 1);
    }
    free(c.v);
    stop_host();
}

Test(keyorder, an_isolated_handler_keeps_per_key_order_too)
{
    ko_isolation = "process"; /* calls go to an evbus-plugin-runner child */
    /* "ko" alone on the events: the calls of a chunk could be made ahead in
     * one exchange, which an ordered handler must not get */
    plain_pattern = "other.**";
    write_config(5, 300);
    static const char *const keys[] = {"A", "B"};
    publish("A", 1, 1, false);
    for (int s = 2; s <= 6; s++)
        publish("A", s, 0, false);
    for (int s = 1; s <= 6; s++)
        publish("B", s, 0, false);
    start_host();
    cr_assert(harness_wait_until((bool (*)(void *))drained, NULL, 60000), "not drained");
    calls_t c = read_calls(ko_file);
    expect_per_key_order(&c, keys, 2, 6);
    const call_t *a1 = first_ok(&c, "A", 1);
    cr_assert_not_null(a1);
    for (int s = 2; s <= 6; s++) {
        const call_t *f = first_call(&c, "A", s);
        cr_assert_not_null(f);
        cr_expect_eq(f->attempt, 1, "A-%d was called ahead, or spent an attempt", s);
        cr_expect_geq(f->start, a1->end);
    }
    free(c.v);
    stop_host();
}
