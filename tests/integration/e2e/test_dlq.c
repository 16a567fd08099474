/*
 * The dead-letter stream as an operator sees it after real failures: the
 * daemon dead-letters rejected events of two tenants, then `evbusctl dlq`
 * lists, shows and purges them, never letting one tenant see the other's.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e.h"

static e2e_t E;

static void setup(void) { e2e_start(&E, false, false); }
static void teardown(void) { e2e_stop(&E); }

TestSuite(e2e_dlq, .init = setup, .fini = teardown, .timeout = 120);

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void publish(const char *id, const char *tenant, const char *fault)
{
    char data[128] = "{}";
    if (fault)
        snprintf(data, sizeof data, "{\"fault\":\"%s\"}", fault);
    char *ev = e2e_event(id, "test.e2e.happened", tenant, data, NULL);
    cr_assert_eq(e2e_xadd(&E, "*", ev, NULL), 0);
    free(ev);
}

/* The event ids of a `dlq list --json`, in list order, as "id,id,".  Malloc'd. */
static char *event_ids(const json_t *list)
{
    json_t *items = json_object_get(list, "items"), *it;
    size_t i;
    char *s = calloc(1, 1024);
    json_array_foreach(items, i, it)
    {
        strncat(s, jstr(it, "event_id") ? jstr(it, "event_id") : "?", 1000 - strlen(s));
        strcat(s, ",");
    }
    return s;
}

/* Dead letters of tenants a (a-1, a-2) and b (b-1), from a real run. */
static void dead_letter_two_tenants(void)
{
    e2e_host_conf(&E, NULL);
    e2e_plugins(&E, "{ pattern: \"test.**\" }", NULL);
    publish("a-1", "a", "reject");
    publish("a-ok", "a", NULL);
    publish("b-1", "b", "reject");
    publish("a-2", "a", "retry:100");
    e2e_run_until_idle(&E, 1000);
    cr_assert_eq(fx_xlen(&E.fx, "t:events:dlq"), 3);
}

Test(e2e_dlq, list_and_show_never_cross_tenants)
{
    dead_letter_two_tenants();
    json_t *list = NULL;
    cr_assert_eq(e2e_ctl_json(&E, &list, "dlq", "list", "--tenant", "a", "--json", NULL), 0);
    char *ids = event_ids(list);
    cr_expect_eq(json_integer_value(json_object_get(list, "count")), 2, "tenant a: %s", ids);
    cr_expect(strstr(ids, "a-1,") && strstr(ids, "a-2,") && !strstr(ids, "b-1"), "tenant a: %s",
              ids);
    json_t *items = json_object_get(list, "items"), *it;
    size_t i;
    char a_dlq_id[64] = "";
    json_array_foreach(items, i, it)
    {
        cr_expect_str_eq(jstr(it, "tenant"), "a");
        if (strcmp(jstr(it, "event_id"), "a-1") == 0) {
            snprintf(a_dlq_id, sizeof a_dlq_id, "%s", jstr(it, "dlq_id"));
            cr_expect_str_eq(jstr(it, "reason"), "reject");
        } else {
            cr_expect_str_eq(jstr(it, "reason"), "retries_exhausted");
        }
    }
    free(ids);
    json_decref(list);
    cr_assert(a_dlq_id[0]);

    cr_assert_eq(e2e_ctl_json(&E, &list, "dlq", "list", "--tenant", "b", "--json", NULL), 0);
    ids = event_ids(list);
    cr_expect_str_eq(ids, "b-1,");
    free(ids);
    json_decref(list);

    /* another tenant's entry reads as "not found" */
    char *out = NULL, *err = NULL;
    cr_expect_eq(e2e_ctl(&E, &out, &err, "dlq", "show", a_dlq_id, "--tenant", "b", NULL), 1,
                 "stdout: %s", out);
    cr_expect(err && strstr(err, "not found"), "stderr: %s", err);
    cr_expect(!out || !strstr(out, "a-1"), "tenant b saw a's event: %s", out);
    free(out);
    free(err);
    json_t *one = NULL;
    cr_assert_eq(e2e_ctl_json(&E, &one, "dlq", "show", a_dlq_id, "--tenant", "a", "--json", NULL),
                 0);
    cr_expect_str_eq(jstr(one, "event_id"), "a-1");
    cr_expect_str_eq(jstr(json_object_get(one, "event"), "tenantid"), "a");
    json_decref(one);
    /* neither can b retry or delete it */
    cr_expect_eq(e2e_ctl(&E, NULL, NULL, "dlq", "retry", a_dlq_id, "--tenant", "b", NULL), 1);
    cr_expect_eq(e2e_ctl(&E, NULL, NULL, "dlq", "delete", a_dlq_id, "--tenant", "b", NULL), 1);
    cr_expect_eq(fx_xlen(&E.fx, "t:events:dlq"), 3);
}

Test(e2e_dlq, purge_by_tenant_removes_only_that_tenants_entries)
{
    dead_letter_two_tenants();
    /* without --yes and without a terminal nothing is removed */
    cr_expect_eq(e2e_ctl(&E, NULL, NULL, "dlq", "purge", "--tenant", "a", NULL), 2);
    cr_expect_eq(fx_xlen(&E.fx, "t:events:dlq"), 3);

    json_t *res = NULL;
    cr_assert_eq(e2e_ctl_json(&E, &res, "dlq", "purge", "--tenant", "a", "--yes", "--json", NULL),
                 0);
    cr_expect_eq(json_integer_value(json_object_get(res, "purged")), 2, "%s",
                 json_dumps(res, JSON_COMPACT));
    json_decref(res);

    json_t *list = NULL;
    cr_assert_eq(e2e_ctl_json(&E, &list, "dlq", "list", "--json", NULL), 0);
    char *ids = event_ids(list);
    cr_expect_str_eq(ids, "b-1,", "after purging tenant a");
    free(ids);
    json_decref(list);
    cr_assert_eq(e2e_ctl_json(&E, &list, "dlq", "list", "--tenant", "a", "--json", NULL), 0);
    cr_expect_eq(json_integer_value(json_object_get(list, "count")), 0);
    json_decref(list);
    cr_expect_eq(fx_xlen(&E.fx, "t:events:dlq"), 1);

    /* a purge matching nothing succeeds and says so */
    cr_assert_eq(e2e_ctl_json(&E, &res, "dlq", "purge", "--tenant", "a", "--yes", "--json", NULL),
                 0);
    cr_expect_eq(json_integer_value(json_object_get(res, "purged")), 0);
    json_decref(res);
    /* without a filter a purge needs --all */
    cr_expect_eq(e2e_ctl(&E, NULL, NULL, "dlq", "purge", "--yes", NULL), 2);
    cr_assert_eq(e2e_ctl_json(&E, &res, "dlq", "purge", "--all", "--yes", "--json", NULL), 0);
    cr_expect_eq(json_integer_value(json_object_get(res, "purged")), 1);
    json_decref(res);
    cr_expect_eq(fx_xlen(&E.fx, "t:events:dlq"), 0);

    /* everything purged is in dlq.archive (default <state_dir>/dlq-archive.jsonl) */
    char archive[700];
    snprintf(archive, sizeof archive, "%s/dlq-archive.jsonl", E.fx.state);
    cr_expect_eq(harness_count_lines(archive), 3);
    char *text = harness_read_file(archive);
    cr_expect(text && strstr(text, "\"event_id\":\"a-1\"") && strstr(text, "\"event_id\":\"b-1\""),
              "%s", text);
    free(text);
}

/* The error of the dead letter with this event id in a `dlq list --json`. */
static char *dlq_error_of(const json_t *list, const char *event_id)
{
    json_t *it;
    size_t i;
    json_array_foreach(json_object_get(list, "items"), i, it)
    {
        if (strcmp(jstr(it, "event_id"), event_id) == 0)
            return strdup(jstr(it, "error") ? jstr(it, "error") : "(no error field)");
    }
    return strdup("(no dead letter)");
}

/* A handler's api->set_reason text is what the dead letter, the log and,
 * while the event waits, the retry schedule say after the handler's name
 * (chaos gives one for each fault). */
Test(e2e_dlq, the_handlers_reason_reaches_the_dead_letter_and_the_log)
{
    dead_letter_two_tenants();
    json_t *list = NULL;
    cr_assert_eq(e2e_ctl_json(&E, &list, "dlq", "list", "--json", NULL), 0);
    char *rejected = dlq_error_of(list, "a-1"), *exhausted = dlq_error_of(list, "a-2");
    cr_expect_str_eq(rejected, "chaos/main: data.fault asks for a rejection");
    cr_expect_str_eq(exhausted, "chaos/main: data.fault asks for 100 retries; this was attempt 4 "
                                "(attempt 4 of 4)");
    free(rejected);
    free(exhausted);
    json_decref(list);
    cr_expect(fx_log_has(&E.fx, "(test.e2e.happened, entry ")
              && fx_log_has(&E.fx, " dead-lettered: reject: chaos/main: data.fault asks for a "
                                   "rejection"),
              "log: %s", E.fx.log);
    cr_expect(fx_log_has(&E.fx, "event a-2 (test.e2e.happened): chaos/main: data.fault asks for "
                                "100 retries; this was attempt 1; attempt 1 of 4, retried in "),
              "log: %s", E.fx.log);
}

Test(e2e_dlq, a_scheduled_retry_carries_the_handlers_reason)
{
    e2e_host_conf(&E, NULL);
    e2e_plugins(&E, "{ pattern: \"test.**\", retry: { base_ms: 600000, max_attempts: 3 } }",
                NULL);
    publish("later-1", "a", "retry:2");
    e2e_evbusd(&E, 0);
    cr_assert(fx_wait_log(&E.fx, "event later-1 (test.e2e.happened): chaos/main: ", 20000),
              "no retry logged: %s", E.fx.log);
    redisContext *c = harness_redis_connect(&E.fx.redis);
    cr_assert_not_null(c);
    /* the line is logged when the retry is decided, before the chunk's
     * writes reach Redis: wait for the member */
    redisReply *r = NULL;
    for (long long end = harness_now_ms() + 5000;;) {
        r = redisCommand(c, "ZRANGE t:events:retry 0 -1");
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements > 0 || harness_now_ms() > end)
            break;
        freeReplyObject(r);
        e2e_sleep_ms(20);
    }
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1, "retry schedule: %s",
              r && r->type == REDIS_REPLY_ERROR ? r->str : "not one member");
    /* a member is "<meta json>\n<raw event>" */
    char *nl = strchr(r->element[0]->str, '\n');
    cr_assert_not_null(nl);
    *nl = '\0';
    json_t *meta = json_loads(r->element[0]->str, 0, NULL);
    cr_expect_str_eq(jstr(meta, "err"),
                     "chaos/main: data.fault asks for 2 retries; this was attempt 1");
    cr_expect_str_eq(jstr(meta, "h"), "chaos/main");
    /* the failed attempt's error travels with the retry (to a dead letter's
     * attempt_errors) */
    json_t *ae = json_object_get(meta, "ae");
    cr_expect_eq(json_array_size(ae), 1);
    cr_expect_eq(json_integer_value(json_object_get(json_array_get(ae, 0), "attempt")), 1);
    cr_expect_str_eq(jstr(json_array_get(ae, 0), "error"),
                     "chaos/main: data.fault asks for 2 retries; this was attempt 1");
    json_decref(meta);
    freeReplyObject(r);
    redisFree(c);
}
