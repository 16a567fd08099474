/*
 * At-least-once under failure: real redis-server, real evbusd processes,
 * the real chaos and testkit plugins (see rel.h for the fixture).  Each
 * test names one guarantee and breaks something on purpose: handlers that
 * fail, hosts killed with SIGKILL, Redis restarted or flushed, entries
 * deleted under the group.  Call counts come from the plugins' own files,
 * so they are counted across host restarts.
 *
 * Set EVBUS_TEST_KEEP=1 to keep the temp folders (daemon logs) of a run.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rel.h"

static rel_t R;
static rel_host_t H1, H2;

static void setup_plain(void) { cr_assert_eq(rel_setup(&R, false), 0, "redis did not start"); }
static void setup_aof(void) { cr_assert_eq(rel_setup(&R, true), 0, "redis did not start"); }
static void teardown(void)
{
    rel_host_t *const hosts[] = {&H1, &H2, NULL};
    rel_teardown(&R, hosts);
}

TestSuite(reliability, .init = setup_plain, .fini = teardown, .timeout = 90);

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Start h on its config and wait for it to exit by --exit-idle. */
static void run_until_idle(rel_host_t *h, int idle_ms)
{
    cr_assert_eq(rel_host_start(h, idle_ms), 0);
    int st = harness_wait(&h->proc, 60000);
    cr_assert_eq(st, 0, "evbusd exited with %d (log %s)", st, h->log_path);
}

static bool pred_drained(rel_t *r, const void *arg)
{
    (void)arg;
    return rel_drained(r);
}

typedef struct {
    const char *id;
    const char *result;
    size_t n;
} calls_arg_t;

static bool pred_chaos_calls(rel_t *r, const void *arg)
{
    const calls_arg_t *a = arg;
    return rel_chaos_calls(r, a->id, a->result) >= a->n;
}

static bool pred_rec_calls(rel_t *r, const void *arg)
{
    const calls_arg_t *a = arg;
    return rel_rec_calls(r, a->id) >= a->n;
}

/* Every id "<prefix><i>" for i in [0, n) recorded by rec at least once. */
typedef struct {
    const char *prefix;
    int n;
} ids_arg_t;

static bool pred_all_recorded(rel_t *r, const void *arg)
{
    const ids_arg_t *a = arg;
    char *s = harness_read_file(r->rec_file);
    if (!s)
        return false;
    bool all = true;
    for (int i = 0; i < a->n && all; i++) {
        char needle[128];
        snprintf(needle, sizeof needle, "\t%s%d\t", a->prefix, i);
        all = strstr(s, needle) != NULL;
    }
    free(s);
    return all;
}

typedef struct {
    int port;
    const char *name;
    long long at_least;
} metric_arg_t;

static bool pred_metric(rel_t *r, const void *arg)
{
    (void)r;
    const metric_arg_t *a = arg;
    return rel_metric(a->port, a->name) >= a->at_least;
}

typedef struct {
    int port;
    const char *level;
} level_arg_t;

static bool pred_dlq_level(rel_t *r, const void *arg)
{
    (void)r;
    const level_arg_t *a = arg;
    char lvl[16];
    return rel_dlq_level(a->port, lvl) && strcmp(lvl, a->level) == 0;
}

typedef struct {
    const char *key;
    long long n;
} len_arg_t;

static bool pred_xlen(rel_t *r, const void *arg)
{
    const len_arg_t *a = arg;
    return rel_xlen(r, a->key) == a->n;
}

static bool pred_zcard(rel_t *r, const void *arg)
{
    const len_arg_t *a = arg;
    return rel_zcard_retry(r) == a->n;
}

/* The only DLQ entry (asserts there is exactly one).  Caller frees. */
static redisReply *only_dead_letter(void)
{
    redisReply *rep = redisCommand(rel_redis(&R), "XRANGE " REL_DLQ " - +");
    cr_assert(rep && rep->type == REDIS_REPLY_ARRAY);
    cr_assert_eq(rep->elements, 1, "DLQ holds %zu entries, expected 1", rep->elements);
    return rep;
}

static void assert_field(const redisReply *entry, const char *name, const char *want)
{
    const char *v = rel_field(entry, name, NULL);
    cr_assert(v, "DLQ entry has no field %s", name);
    cr_assert_str_eq(v, want, "DLQ field %s", name);
}

/* "2026-11-26T22:20:18.424Z" */
static bool looks_like_rfc3339_ms(const char *s)
{
    return s && strlen(s) == 24 && s[4] == '-' && s[7] == '-' && s[10] == 'T' && s[13] == ':' &&
           s[19] == '.' && s[23] == 'Z';
}

/* ---- 1. per-handler retries -------------------------------------------- */

Test(reliability, handler_failing_twice_is_called_three_times_and_the_others_once)
{
    cr_assert_eq(rel_host_config(&R, &H1, "h1", NULL), 0);
    cr_assert_eq(rel_publish(&R, "plain-1", NULL, NULL), 0);
    cr_assert_eq(rel_publish(&R, "flaky-1", "retry:2", NULL), 0);
    run_until_idle(&H1, 1000);

    cr_assert(rel_drained(&R));
    cr_expect_eq(rel_chaos_calls(&R, "flaky-1", NULL), 3);
    cr_expect_eq(rel_chaos_calls(&R, "flaky-1", "RETRY"), 2);
    cr_expect_eq(rel_chaos_calls(&R, "flaky-1", "OK"), 1);
    cr_expect_eq(rel_rec_calls(&R, "flaky-1"), 1, "the handler that succeeded ran again");
    cr_expect_eq(rel_chaos_calls(&R, "plain-1", NULL), 1);
    cr_expect_eq(rel_rec_calls(&R, "plain-1"), 1);
    cr_expect_eq(rel_xlen(&R, REL_DLQ), 0);
}

/* ---- 2. REJECT goes to the DLQ with provenance ---------------------------- */

Test(reliability, rejected_event_is_dead_lettered_with_provenance)
{
    cr_assert_eq(rel_host_config(&R, &H1, "h1", NULL), 0);
    char *raw = rel_event_json("rejected-1", "reject", "tenant-r");
    char sid[64];
    cr_assert_eq(rel_publish_raw(&R, raw, sid), 0);
    run_until_idle(&H1, 1000);

    redisReply *rep = only_dead_letter();
    redisReply *e = rep->element[0];
    size_t len = 0;
    const char *ev = rel_field(e, "event", &len);
    cr_assert(ev);
    cr_expect(len == strlen(raw) && memcmp(ev, raw, len) == 0,
              "DLQ event bytes differ from the original:\n%.*s\n%s", (int)len, ev, raw);
    assert_field(e, "stream", REL_STREAM);
    assert_field(e, "id", sid);
    assert_field(e, "event_id", "rejected-1");
    assert_field(e, "type", "test.rel.happened");
    assert_field(e, "tenant", "tenant-r");
    assert_field(e, "reason", "reject");
    assert_field(e, "attempts", "1");
    const char *handlers = rel_field(e, "handlers", NULL);
    cr_expect(handlers && strstr(handlers, "\"chaos/main\""), "handlers: %s", handlers);
    cr_expect(handlers && !strstr(handlers, "rec/record"), "handlers: %s", handlers);
    const char *err = rel_field(e, "error", NULL);
    cr_expect(err && strstr(err, "chaos/main"), "error: %s", err);
    const char *first = rel_field(e, "first_failure", NULL), *last = rel_field(e, "last_failure", NULL);
    cr_expect(looks_like_rfc3339_ms(first), "first_failure: %s", first);
    cr_expect(looks_like_rfc3339_ms(last), "last_failure: %s", last);
    cr_expect(first && last && strcmp(first, last) <= 0);
    cr_expect_eq(rel_chaos_calls(&R, "rejected-1", NULL), 1, "a REJECT must not be retried");
    cr_expect_eq(rel_rec_calls(&R, "rejected-1"), 1);
    cr_expect_eq(rel_pending(&R, NULL), 0);
    cr_expect_eq(rel_zcard_retry(&R), 0);
    freeReplyObject(rep);
    free(raw);
}

/* ---- 3. exhausted retries ------------------------------------------------ */

Test(reliability, exhausted_retries_are_dead_lettered_after_max_attempts)
{
    rel_host_opts_t o = {.chaos_sub_extra = ", retry: { max_attempts: 3 }"};
    cr_assert_eq(rel_host_config(&R, &H1, "h1", &o), 0);
    char sid[64];
    cr_assert_eq(rel_publish(&R, "hopeless-1", "retry:100", sid), 0);
    run_until_idle(&H1, 1000);

    redisReply *rep = only_dead_letter();
    redisReply *e = rep->element[0];
    assert_field(e, "reason", "retries_exhausted");
    assert_field(e, "attempts", "3");
    assert_field(e, "event_id", "hopeless-1");
    assert_field(e, "id", sid);
    const char *handlers = rel_field(e, "handlers", NULL);
    cr_expect(handlers && strcmp(handlers, "[\"chaos/main\"]") == 0, "handlers: %s", handlers);
    const char *err = rel_field(e, "error", NULL);
    cr_expect(err && strstr(err, "attempt 3 of 3"), "error: %s", err);
    const char *first = rel_field(e, "first_failure", NULL), *last = rel_field(e, "last_failure", NULL);
    cr_expect(looks_like_rfc3339_ms(first) && looks_like_rfc3339_ms(last));
    cr_expect(strcmp(first, last) < 0, "first %s, last %s: three attempts cannot share a ms",
              first, last);
    cr_expect_eq(rel_chaos_calls(&R, "hopeless-1", "RETRY"), 3);
    cr_expect_eq(rel_chaos_calls(&R, "hopeless-1", NULL), 3);
    cr_expect_eq(rel_rec_calls(&R, "hopeless-1"), 1);
    cr_expect(rel_drained(&R));
    freeReplyObject(rep);
}

/* ---- 4. DLQ retry round trip --------------------------------------------- */

/*
 * Design: the retry attempt number restarts at 1 for a re-published event,
 * so "retry:1" fails its first attempt whatever we do.  Phase 1 runs chaos
 * with max_attempts 1: that first failure exhausts it and the event is
 * dead-lettered.  Then the operator "fixes the cause" by giving chaos two
 * attempts (config rewritten, host restarted) and runs `evbusctl dlq retry`:
 * the new entry fails attempt 1, succeeds on attempt 2, and the DLQ stays
 * empty.  rec (no fault) sees the event once per publication: twice.
 */
Test(reliability, dlq_retry_republishes_and_the_event_is_handled_again)
{
    rel_host_opts_t o = {.chaos_sub_extra = ", retry: { max_attempts: 1 }"};
    cr_assert_eq(rel_host_config(&R, &H1, "h1", &o), 0);
    char *raw = rel_event_json("second-chance-1", "retry:1", NULL);
    char sid[64];
    cr_assert_eq(rel_publish_raw(&R, raw, sid), 0);
    run_until_idle(&H1, 1000);

    redisReply *rep = only_dead_letter();
    char dlq_id[64];
    snprintf(dlq_id, sizeof dlq_id, "%s", rep->element[0]->element[0]->str);
    assert_field(rep->element[0], "reason", "retries_exhausted");
    freeReplyObject(rep);
    cr_assert_eq(rel_chaos_calls(&R, "second-chance-1", "RETRY"), 1);

    o.chaos_sub_extra = ", retry: { max_attempts: 2 }";
    cr_assert_eq(rel_host_config(&R, &H1, "h1", &o), 0);
    char *ctl = harness_build_path("host/ctl/evbusctl");
    char *argv[] = {ctl, "-c", H1.conf_dir, "dlq", "retry", dlq_id, NULL};
    char *out = NULL, *err = NULL;
    int st = harness_run(argv, NULL, NULL, &out, &err, 20000);
    cr_assert_eq(st, 0, "evbusctl dlq retry: %d\n%s%s", st, out, err);
    char new_sid[64] = "";
    sscanf(out, "%63s", new_sid);
    cr_assert(new_sid[0], "evbusctl printed no stream id: %s", out);
    cr_expect_eq(rel_xlen(&R, REL_DLQ), 0, "the dead letter is still there");

    rep = redisCommand(rel_redis(&R), "XRANGE " REL_STREAM " %s %s", new_sid, new_sid);
    cr_assert(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1,
              "no stream entry %s", new_sid);
    const char *from = rel_field(rep->element[0], "retried_from", NULL);
    cr_expect(from && strcmp(from, dlq_id) == 0, "retried_from %s, expected %s", from, dlq_id);
    size_t len = 0;
    const char *ev = rel_field(rep->element[0], "event", &len);
    cr_expect(ev && len == strlen(raw) && memcmp(ev, raw, len) == 0, "re-published bytes differ");
    freeReplyObject(rep);

    run_until_idle(&H1, 1000);
    cr_expect_eq(rel_chaos_calls(&R, "second-chance-1", "RETRY"), 2);
    cr_expect_eq(rel_chaos_calls(&R, "second-chance-1", "OK"), 1);
    cr_expect_eq(rel_rec_calls(&R, "second-chance-1"), 2);
    cr_expect_eq(rel_xlen(&R, REL_DLQ), 0, "the retried event was dead-lettered again");
    cr_expect(rel_drained(&R));
    free(ctl);
    free(out);
    free(err);
    free(raw);
}

/* ---- 5. DLQ thresholds and overflow ---------------------------------------- */

static void publish_rejects(int from, int to)
{
    for (int i = from; i < to; i++) {
        char id[32];
        snprintf(id, sizeof id, "dead-%d", i);
        cr_assert_eq(rel_publish(&R, id, "reject", NULL), 0);
    }
}

Test(reliability, dlq_warns_at_80_percent_errors_at_95_and_archives_overflow)
{
    rel_host_opts_t o = {.dlq_capacity = 10};
    cr_assert_eq(rel_host_config(&R, &H1, "h1", &o), 0);
    cr_assert_eq(rel_host_start(&H1, 0), 0);
    int port = H1.admin_port;

    publish_rejects(0, 8);
    level_arg_t warn = {port, "warning"};
    cr_assert(rel_wait(&R, pred_dlq_level, &warn, 10000), "health dlq.level never became warning");
    cr_expect_eq(rel_xlen(&R, REL_DLQ), 8);
    cr_expect_eq(rel_metric(port, "evbus_dlq_capacity_warnings_total"), 1);
    cr_expect_eq(rel_metric(port, "evbus_dlq_capacity_errors_total"), 0);
    cr_expect_eq(rel_file_count(H1.log_path, "at or above 80% of its capacity 10"), 1);

    publish_rejects(8, 10);
    level_arg_t error = {port, "error"};
    cr_assert(rel_wait(&R, pred_dlq_level, &error, 10000), "health dlq.level never became error");
    cr_expect_eq(rel_xlen(&R, REL_DLQ), 10);
    cr_expect_eq(rel_metric(port, "evbus_dlq_capacity_warnings_total"), 1);
    cr_expect_eq(rel_metric(port, "evbus_dlq_capacity_errors_total"), 1);
    cr_expect_eq(rel_file_count(H1.log_path, "at or above 95% of its capacity 10"), 1);
    cr_expect_eq(rel_file_count(H1.log_path, "ERROR [dlq]"), 1);

    publish_rejects(10, 15);
    metric_arg_t archived = {port, "evbus_dlq_archived_total", 5};
    cr_assert(rel_wait(&R, pred_metric, &archived, 10000), "overflow was never archived");
    len_arg_t cap = {REL_DLQ, 10};
    cr_assert(rel_wait(&R, pred_xlen, &cap, 5000));
    cr_expect_eq(rel_metric(port, "evbus_dlq_archived_total"), 5);
    cr_expect_eq(rel_file_count(H1.log_path, "oldest dead letters to"), 1);

    /* nothing lost: every dead letter is either archived or still in the
     * stream, and the archived ones are the oldest */
    size_t lines = harness_count_lines(R.archive);
    cr_expect_eq(lines + (size_t)rel_xlen(&R, REL_DLQ), 15, "archive %zu + XLEN != 15", lines);
    char *arch = harness_read_file(R.archive);
    cr_assert(arch, "no archive file %s", R.archive);
    redisReply *rep = redisCommand(rel_redis(&R), "XRANGE " REL_DLQ " - +");
    cr_assert(rep && rep->type == REDIS_REPLY_ARRAY);
    for (int i = 0; i < 15; i++) {
        char id[32], needle[64];
        snprintf(id, sizeof id, "dead-%d", i);
        snprintf(needle, sizeof needle, "\"event_id\":\"%s\"", id);
        bool in_archive = strstr(arch, needle) != NULL;
        bool in_stream = false;
        for (size_t k = 0; k < rep->elements; k++) {
            const char *eid = rel_field(rep->element[k], "event_id", NULL);
            in_stream |= eid && strcmp(eid, id) == 0;
        }
        cr_expect(in_archive != in_stream, "%s: archived %d, in DLQ %d", id, in_archive,
                  in_stream);
        cr_expect_eq(in_archive, i < 5, "%s archived=%d: the oldest must go first", id,
                     in_archive);
    }
    /* each archive line is a JSON object with the original event and its
     * provenance */
    cr_expect(strstr(arch, "\"reason\":\"reject\"") && strstr(arch, "\"dlq_id\":"),
              "archive lines lack provenance: %s", arch);
    freeReplyObject(rep);
    free(arch);
    cr_expect_eq(rel_host_stop(&H1), 0);
}

/* ---- 6. poison pill --------------------------------------------------------- */

Test(reliability, poison_pill_is_dead_lettered_after_max_deliveries_and_the_rest_handled)
{
    cr_assert_eq(rel_host_config(&R, &H1, "h1", NULL), 0);
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "around-%d", i);
        cr_assert_eq(rel_publish(&R, id, NULL, NULL), 0);
    }
    char sid[64];
    cr_assert_eq(rel_publish(&R, "poison-1", "crash", sid), 0);
    for (int i = 5; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof id, "around-%d", i);
        cr_assert_eq(rel_publish(&R, id, NULL, NULL), 0);
    }

    /* the operator's supervisor: restart evbusd each time it dies */
    int crashes = 0, st = -1;
    for (int runs = 0; runs < 6; runs++) {
        cr_assert_eq(rel_host_start(&H1, 1000), 0);
        st = harness_wait(&H1.proc, 30000);
        if (st == 0)
            break;
        cr_assert_eq(st, 128 + SIGABRT, "evbusd exited with %d (log %s)", st, H1.log_path);
        crashes++;
        /* keep publishing around the crashes */
        char id[32];
        snprintf(id, sizeof id, "after-crash-%d", crashes);
        cr_assert_eq(rel_publish(&R, id, NULL, NULL), 0);
    }
    cr_assert_eq(st, 0, "evbusd never got past the poison pill (log %s)", H1.log_path);
    cr_expect(crashes >= 1 && crashes <= 3, "%d crashes with max_deliveries 3", crashes);
    cr_expect_eq(rel_chaos_calls(&R, "poison-1", "CRASH"), (size_t)crashes);

    redisReply *rep = only_dead_letter();
    redisReply *e = rep->element[0];
    assert_field(e, "reason", "poison");
    assert_field(e, "event_id", "poison-1");
    assert_field(e, "id", sid);
    const char *err = rel_field(e, "error", NULL);
    cr_expect(err && strstr(err, "max_deliveries 3"), "error: %s", err);
    freeReplyObject(rep);

    for (int i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof id, "around-%d", i);
        cr_expect_geq(rel_chaos_calls(&R, id, "OK"), 1, "%s was not handled", id);
        cr_expect_geq(rel_rec_calls(&R, id), 1, "%s was not recorded", id);
    }
    for (int i = 1; i <= crashes; i++) {
        char id[32];
        snprintf(id, sizeof id, "after-crash-%d", i);
        cr_expect_geq(rel_chaos_calls(&R, id, "OK"), 1, "%s was not handled", id);
    }
    cr_expect(rel_drained(&R));
}

/* ---- 7. scheduled retries survive kill -9 ------------------------------------ */

Test(reliability, scheduled_retries_survive_kill_9_of_the_host)
{
    /* a long first delay keeps the retries in the schedule while we kill */
    rel_host_opts_t o = {.retry_base_ms = 1500};
    cr_assert_eq(rel_host_config(&R, &H1, "h1", &o), 0);
    cr_assert_eq(rel_host_start(&H1, 0), 0);
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "later-%d", i);
        cr_assert_eq(rel_publish(&R, id, "retry:1", NULL), 0);
    }
    len_arg_t five = {REL_RETRY, 5};
    cr_assert(rel_wait(&R, pred_zcard, &five, 10000), "retries never scheduled");
    cr_assert_eq(harness_kill(&H1.proc, SIGKILL, 5000), 128 + SIGKILL);
    cr_assert_eq(rel_zcard_retry(&R), 5, "the schedule lost retries when the host died");

    run_until_idle(&H1, 1000);
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "later-%d", i);
        cr_expect_eq(rel_chaos_calls(&R, id, "RETRY"), 1, "%s", id);
        cr_expect_eq(rel_chaos_calls(&R, id, "OK"), 1, "%s: the retry did not happen", id);
        cr_expect_eq(rel_rec_calls(&R, id), 1, "%s", id);
    }
    cr_expect(rel_drained(&R));
    cr_expect_eq(rel_xlen(&R, REL_DLQ), 0);
}

/* ---- 8. Redis restart with AOF ------------------------------------------------ */

TestSuite(reliability_aof, .init = setup_aof, .fini = teardown, .timeout = 90);

Test(reliability_aof, redis_restart_with_aof_loses_nothing)
{
    cr_assert_eq(rel_host_config(&R, &H1, "h1", NULL), 0);
    cr_assert_eq(rel_host_start(&H1, 0), 0);
    const int n = 200;
    for (int i = 0; i < n / 2; i++) {
        char id[32];
        snprintf(id, sizeof id, "aof-%d", i);
        cr_assert_eq(rel_publish(&R, id, i % 2 ? "sleep:20" : NULL, NULL), 0);
    }
    calls_arg_t some = {"aof-10", NULL, 1};
    cr_assert(rel_wait(&R, pred_rec_calls, &some, 10000));
    cr_assert_eq(rel_redis_restart(&R), 0, "redis did not come back");
    for (int i = n / 2; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "aof-%d", i);
        cr_assert_eq(rel_publish(&R, id, i % 2 ? "sleep:20" : NULL, NULL), 0);
    }
    ids_arg_t all = {"aof-", n};
    cr_assert(rel_wait(&R, pred_all_recorded, &all, 30000), "events lost across the restart");
    cr_assert(rel_wait(&R, pred_drained, NULL, 10000), "still %lld pending",
              rel_pending(&R, NULL));
    cr_expect_geq(rel_metric(H1.admin_port, "evbus_redis_reconnects_total"), 1,
                  "the host never noticed the restart");
    cr_expect_eq(rel_xlen(&R, REL_DLQ), 0);
    cr_expect_eq(rel_host_stop(&H1), 0);
}

/* ---- 9. FLUSHALL ------------------------------------------------------------------ */

Test(reliability, flushall_recreates_the_group_and_later_events_are_handled)
{
    cr_assert_eq(rel_host_config(&R, &H1, "h1", NULL), 0);
    cr_assert_eq(rel_host_start(&H1, 0), 0);
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "before-%d", i);
        cr_assert_eq(rel_publish(&R, id, NULL, NULL), 0);
    }
    ids_arg_t before = {"before-", 5};
    cr_assert(rel_wait(&R, pred_all_recorded, &before, 10000));
    redisReply *rep = redisCommand(rel_redis(&R), "FLUSHALL");
    cr_assert(rep && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    sleep_ms(300);
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "after-%d", i);
        cr_assert_eq(rel_publish(&R, id, NULL, NULL), 0);
    }
    ids_arg_t after = {"after-", 5};
    cr_assert(rel_wait(&R, pred_all_recorded, &after, 10000),
              "events after FLUSHALL were not handled (log %s)", H1.log_path);
    cr_expect_geq(rel_metric(H1.admin_port, "evbus_group_recreated_total"), 1);
    cr_expect_eq(rel_file_count(H1.log_path, "vanished"), 1, "one log line per occurrence");
    cr_assert(rel_wait(&R, pred_drained, NULL, 10000));
    cr_expect_eq(rel_host_stop(&H1), 0);
}

/* ---- 10. a survivor reclaims a dead host's pending entries ----------------------- */

Test(reliability, survivor_reclaims_pending_entries_of_a_killed_host)
{
    rel_host_opts_t oa = {.consumer = "host-a"}, ob = {.consumer = "host-b"};
    cr_assert_eq(rel_host_config(&R, &H1, "a", &oa), 0);
    cr_assert_eq(rel_host_config(&R, &H2, "b", &ob), 0);
    const int n = 20;
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "held-%d", i);
        cr_assert_eq(rel_publish(&R, id, "sleep:100", NULL), 0);
    }
    /* A takes everything (one batch, handled one by one, acked at the end) */
    cr_assert_eq(rel_host_start(&H1, 0), 0);
    long long deadline = harness_now_ms() + 10000;
    while (rel_pending(&R, "host-a") < n && harness_now_ms() < deadline)
        sleep_ms(20);
    cr_assert_eq(rel_pending(&R, "host-a"), n);
    cr_assert_eq(rel_host_start(&H2, 0), 0);
    metric_arg_t up = {H2.admin_port, "evbus_generation", 1};
    cr_assert(rel_wait(&R, pred_metric, &up, 10000), "host B did not start");
    cr_assert_eq(harness_kill(&H1.proc, SIGKILL, 5000), 128 + SIGKILL);
    cr_assert_gt(rel_pending(&R, "host-a"), 0, "host A held nothing when it died");

    ids_arg_t all = {"held-", n};
    cr_assert(rel_wait(&R, pred_all_recorded, &all, 30000), "events of the dead host were lost");
    cr_assert(rel_wait(&R, pred_drained, NULL, 10000), "still %lld pending",
              rel_pending(&R, NULL));
    cr_expect_eq(rel_pending(&R, "host-a"), 0);
    cr_expect_geq(rel_metric(H2.admin_port, "evbus_pending_reclaimed_total"), 1);
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "held-%d", i);
        cr_expect_geq(rel_chaos_calls(&R, id, "OK"), 1, "%s", id);
    }
    cr_expect_eq(rel_xlen(&R, REL_DLQ), 0);
    cr_expect_eq(rel_host_stop(&H2), 0);
}

/* ---- 11. ghost entries ---------------------------------------------------------------- */

Test(reliability, pending_entries_deleted_from_the_stream_are_acked_away_and_counted)
{
    redisContext *c = rel_redis(&R);
    redisReply *rep = redisCommand(c, "XGROUP CREATE " REL_STREAM " " REL_GROUP " 0 MKSTREAM");
    cr_assert(rep && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    /* per consumer: two entries that will vanish, one that stays */
    const char *ids[] = {"ghost-1", "ghost-2", "keep-1", "ghost-3", "ghost-4", "keep-2"};
    char sids[6][64];
    for (int i = 0; i < 6; i++)
        cr_assert_eq(rel_publish(&R, ids[i], NULL, sids[i]), 0);
    /* a dead consumer holds the first three, this host's own name (from a
     * previous life) the last three */
    rep = redisCommand(c, "XREADGROUP GROUP " REL_GROUP " gone COUNT 3 STREAMS " REL_STREAM " >");
    cr_assert(rep && rep->type == REDIS_REPLY_ARRAY);
    freeReplyObject(rep);
    rep = redisCommand(c, "XREADGROUP GROUP " REL_GROUP " c1 COUNT 3 STREAMS " REL_STREAM " >");
    cr_assert(rep && rep->type == REDIS_REPLY_ARRAY);
    freeReplyObject(rep);
    cr_assert_eq(rel_pending(&R, NULL), 6);
    cr_assert_eq(harness_redis_int(c, "XDEL " REL_STREAM " %s %s %s %s", sids[0], sids[1],
                                   sids[3], sids[4]),
                 4);

    cr_assert_eq(rel_host_config(&R, &H1, "h1", NULL), 0);
    cr_assert_eq(rel_host_start(&H1, 0), 0);
    metric_arg_t ghosts = {H1.admin_port, "evbus_pending_ghosts_total", 4};
    cr_assert(rel_wait(&R, pred_metric, &ghosts, 10000), "ghosts counted: %lld",
              rel_metric(H1.admin_port, "evbus_pending_ghosts_total"));
    cr_assert(rel_wait(&R, pred_drained, NULL, 10000), "still %lld pending",
              rel_pending(&R, NULL));
    sleep_ms(1500); /* several reclaim rounds: ghosts must not come back */
    cr_expect_eq(rel_metric(H1.admin_port, "evbus_pending_ghosts_total"), 4);
    cr_expect_eq(rel_pending(&R, NULL), 0);
    for (int i = 0; i < 6; i++) {
        bool ghost = strncmp(ids[i], "ghost", 5) == 0;
        cr_expect_eq(rel_chaos_calls(&R, ids[i], NULL), ghost ? 0u : 1u, "%s", ids[i]);
        cr_expect_eq(rel_rec_calls(&R, ids[i]), ghost ? 0u : 1u, "%s", ids[i]);
    }
    cr_expect_eq(rel_xlen(&R, REL_DLQ), 0, "a ghost is nothing to dead-letter");
    cr_expect_eq(rel_host_stop(&H1), 0);
}

/* ---- 12. idempotency ---------------------------------------------------------------- */

Test(reliability, subscription_with_dedup_ttl_sees_a_duplicated_event_id_once)
{
    rel_host_opts_t o = {.rec_sub_extra = ", dedup_ttl_s: 60"};
    cr_assert_eq(rel_host_config(&R, &H1, "h1", &o), 0);
    char *raw = rel_event_json("twice-1", NULL, NULL);
    cr_assert_eq(rel_publish_raw(&R, raw, NULL), 0);
    cr_assert_eq(rel_publish_raw(&R, raw, NULL), 0);
    cr_assert_eq(rel_publish(&R, "once-1", NULL, NULL), 0);
    free(raw);
    cr_assert_eq(rel_host_start(&H1, 0), 0);
    /* chaos has no dedup: its two calls prove both entries were delivered */
    calls_arg_t both = {"twice-1", "OK", 2};
    cr_assert(rel_wait(&R, pred_chaos_calls, &both, 10000));
    cr_assert(rel_wait(&R, pred_drained, NULL, 10000));
    cr_expect_eq(rel_rec_calls(&R, "twice-1"), 1, "dedup let the duplicate through");
    cr_expect_eq(rel_rec_calls(&R, "once-1"), 1);
    cr_expect_eq(rel_metric(H1.admin_port, "evbus_events_dedup_skipped_total"), 1);
    long long ttl = harness_redis_int(rel_redis(&R), "TTL evbus:dedup:" REL_GROUP ":rec/record:twice-1");
    cr_expect(ttl > 0 && ttl <= 60, "dedup key TTL %lld", ttl);
    cr_expect_eq(rel_host_stop(&H1), 0);
}

/* ---- 6b. the poison count survives a Redis restart ------------------------------ */

/*
 * max_deliveries bounds the crashes one entry can cause, so the delivery
 * count must be as durable as the entry: a Redis restart (AOF, nothing
 * lost) between two crashes must not reset it.
 */
Test(reliability_aof, poison_pill_delivery_count_survives_a_redis_restart)
{
    cr_assert_eq(rel_host_config(&R, &H1, "h1", NULL), 0);
    cr_assert_eq(rel_publish(&R, "poison-aof", "crash", NULL), 0);
    int crashes = 0, st = -1;
    for (int runs = 0; runs < 8; runs++) {
        cr_assert_eq(rel_host_start(&H1, 1000), 0);
        st = harness_wait(&H1.proc, 30000);
        if (st == 0)
            break;
        cr_assert_eq(st, 128 + SIGABRT, "evbusd exited with %d (log %s)", st, H1.log_path);
        crashes++;
        if (crashes == 2)
            cr_assert_eq(rel_redis_restart(&R), 0, "redis did not come back");
    }
    cr_assert_eq(st, 0, "evbusd never got past the poison pill (log %s)", H1.log_path);
    redisReply *rep = only_dead_letter();
    assert_field(rep->element[0], "reason", "poison");
    freeReplyObject(rep);
    cr_expect_leq(crashes, 3, "%d crashes with max_deliveries 3: the restart reset the count",
                  crashes);
}
