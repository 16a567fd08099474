/*
 * Event status lifecycle in PostgreSQL, written by the real daemon and read
 * back through `evbusctl events`.  Each test gets its own redis-server and
 * PostgreSQL cluster; evbusd migrates the database itself
 * (postgres.migrate_on_start).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e.h"

static e2e_t E;

static void setup(void) { e2e_start(&E, false, true); }
static void teardown(void) { e2e_stop(&E); }

TestSuite(e2e_metadata, .init = setup, .fini = teardown, .timeout = 120);

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void publish(const char *id, const char *type, const char *tenant, const char *fault)
{
    char data[128];
    if (fault)
        snprintf(data, sizeof data, "{\"fault\":\"%s\"}", fault);
    else
        snprintf(data, sizeof data, "{}");
    char *ev = e2e_event(id, type, tenant, data, NULL);
    cr_assert_eq(e2e_xadd(&E, "*", ev, NULL), 0);
    free(ev);
}

/* The ids of a `events list --json` array, as one "id,id,..." string. */
static char *ids_of(const json_t *arr)
{
    size_t cap = 1, i;
    json_t *row;
    json_array_foreach(arr, i, row) cap += strlen(jstr(row, "id") ? jstr(row, "id") : "") + 1;
    char *s = calloc(1, cap + 1);
    json_array_foreach(arr, i, row)
    {
        strcat(s, jstr(row, "id") ? jstr(row, "id") : "?");
        strcat(s, ",");
    }
    return s;
}

Test(e2e_metadata, each_outcome_reaches_its_terminal_status_in_postgres)
{
    e2e_host_conf(&E, NULL);
    e2e_plugins(&E, "{ pattern: \"test.**\" }",
                "{ pattern: \"test.**\", handler: record, priority: 10 }");
    publish("ok-1", "test.e2e.happened", "acme", NULL);
    publish("flaky-1", "test.e2e.happened", "acme", "retry:2");
    publish("bad-1", "test.e2e.happened", "acme", "reject");
    publish("nobody-1", "other.e2e.happened", "acme", NULL);
    e2e_run_until_idle(&E, 1500);

    json_t *row = NULL;
    cr_assert(e2e_wait_event_status(&E, "ok-1", "COMPLETED", 5000, &row), "ok-1: %s",
              json_dumps(row, JSON_COMPACT));
    json_t *outcomes = json_object_get(row, "handler_outcomes");
    cr_expect_str_eq(jstr(outcomes, "chaos/main"), "ok");
    cr_expect_str_eq(jstr(outcomes, "rec/record"), "ok");
    cr_expect(jstr(row, "completed_at"), "a COMPLETED row has completed_at");
    cr_expect_eq(json_integer_value(json_object_get(row, "attempts")), 1);
    cr_expect_str_eq(jstr(row, "tenant"), "acme");
    cr_expect_str_eq(jstr(row, "type"), "test.e2e.happened");
    json_decref(row);

    cr_assert(e2e_wait_event_status(&E, "flaky-1", "COMPLETED", 5000, &row), "flaky-1: %s",
              json_dumps(row, JSON_COMPACT));
    cr_expect_eq(json_integer_value(json_object_get(row, "attempts")), 3, "%s",
                 json_dumps(row, JSON_COMPACT));
    cr_expect_str_eq(jstr(json_object_get(row, "handler_outcomes"), "chaos/main"), "ok");
    cr_expect(jstr(row, "completed_at"));
    cr_expect_eq(e2e_chaos_calls(&E, "flaky-1", NULL), 3);
    /* the last failure's reason (api->set_reason) stays after the success */
    cr_expect_str_eq(jstr(row, "last_error"),
                     "chaos/main: data.fault asks for 2 retries; this was attempt 2");
    json_decref(row);

    cr_assert(e2e_wait_event_status(&E, "bad-1", "DEAD_LETTERED", 5000, &row), "bad-1: %s",
              json_dumps(row, JSON_COMPACT));
    cr_expect_str_eq(jstr(row, "last_error"), "chaos/main: data.fault asks for a rejection");
    cr_expect_str_eq(jstr(json_object_get(row, "handler_outcomes"), "chaos/main"), "reject");
    cr_expect(jstr(row, "completed_at"));
    json_decref(row);

    cr_assert(e2e_wait_event_status(&E, "nobody-1", "IGNORED", 5000, &row), "nobody-1: %s",
              json_dumps(row, JSON_COMPACT));
    cr_expect(jstr(row, "completed_at"));
    json_decref(row);

    /* the list filters by status */
    json_t *list = NULL;
    cr_assert_eq(e2e_ctl_json(&E, &list, "events", "list", "--status", "COMPLETED", "--json", NULL),
                 0);
    cr_assert(json_is_array(list));
    char *ids = ids_of(list);
    cr_expect_eq(json_array_size(list), 2, "COMPLETED: %s", ids);
    cr_expect(strstr(ids, "ok-1,") && strstr(ids, "flaky-1,"), "COMPLETED: %s", ids);
    free(ids);
    json_decref(list);
    const char *st[][2] = {{"DEAD_LETTERED", "bad-1,"}, {"IGNORED", "nobody-1,"}};
    for (size_t i = 0; i < 2; i++) {
        cr_assert_eq(
            e2e_ctl_json(&E, &list, "events", "list", "--status", st[i][0], "--json", NULL), 0);
        ids = ids_of(list);
        cr_expect_str_eq(ids, st[i][1], "%s", st[i][0]);
        free(ids);
        json_decref(list);
    }
    cr_assert_eq(e2e_ctl_json(&E, &list, "events", "list", "--status", "PENDING", "--json", NULL),
                 0);
    cr_expect_eq(json_array_size(list), 0);
    json_decref(list);
}

Test(e2e_metadata, published_while_the_daemon_is_down_is_pending_then_completed)
{
    e2e_host_conf(&E, NULL);
    e2e_plugins(&E, NULL, "{ pattern: \"test.**\", handler: record }");
    char *err = NULL;
    cr_assert_eq(e2e_ctl(&E, NULL, &err, "migrate", "up", NULL), 0, "migrate: %s", err);
    free(err);
    char *out = NULL;
    cr_assert_eq(e2e_ctl(&E, &out, &err, "publish", "--type", "test.e2e.published", "--tenant",
                         "acme", "--data", "{\"n\":1}", "--id", "pub-1", NULL),
                 0, "publish: %s", err);
    free(out);
    free(err);

    json_t *row = NULL;
    cr_assert(e2e_wait_event_status(&E, "pub-1", "PENDING", 5000, &row), "pub-1: %s",
              json_dumps(row, JSON_COMPACT));
    cr_expect(!jstr(row, "completed_at"), "PENDING is not terminal");
    cr_expect_str_eq(jstr(row, "tenant"), "acme");
    json_decref(row);
    json_t *list = NULL;
    cr_assert_eq(e2e_ctl_json(&E, &list, "events", "list", "--status", "PENDING", "--json", NULL),
                 0);
    char *ids = ids_of(list);
    cr_expect_str_eq(ids, "pub-1,");
    free(ids);
    json_decref(list);

    e2e_run_until_idle(&E, 1000);
    cr_assert(e2e_wait_event_status(&E, "pub-1", "COMPLETED", 5000, &row), "pub-1: %s",
              json_dumps(row, JSON_COMPACT));
    cr_expect(jstr(row, "completed_at"));
    cr_expect_str_eq(jstr(json_object_get(row, "handler_outcomes"), "rec/record"), "ok");
    json_decref(row);
    cr_expect_eq(e2e_rec_calls(&E, "pub-1", 0), 1);
}

/* evbusctl publish --file records every published event as PENDING, a
 * thousand rows at a time as replies arrive, on one connection and with
 * --parallel (where the threads share the recording connection). */
Test(e2e_metadata, publish_file_records_every_event_as_pending)
{
    e2e_host_conf(&E, NULL);
    e2e_plugins(&E, NULL, "{ pattern: \"test.**\", handler: record }");
    char *err = NULL, *out = NULL;
    cr_assert_eq(e2e_ctl(&E, NULL, &err, "migrate", "up", NULL), 0, "migrate: %s", err);
    free(err);
    enum { N = 2500 };
    char path[700];
    snprintf(path, sizeof path, "%s/events.ndjson", E.fx.dir);
    for (int pass = 0; pass < 2; pass++) {
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        for (int i = 0; i < N; i++)
            fprintf(f, "{\"id\":\"file-%d-%d\",\"type\":\"test.file\",\"tenantid\":\"t%d\","
                       "\"data\":{\"i\":%d}}\n", pass, i, i % 5, i);
        cr_assert_eq(fclose(f), 0);
        if (pass == 0)
            cr_assert_eq(e2e_ctl(&E, &out, &err, "publish", "--file", path, NULL), 0,
                         "publish: %s", err);
        else
            cr_assert_eq(e2e_ctl(&E, &out, &err, "publish", "--file", path, "--parallel", "3",
                                 NULL),
                         0, "publish --parallel 3: %s", err);
        free(out);
        free(err);
        out = err = NULL;
    }
    json_t *row = NULL;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < N; i += 1249) {
            char id[32];
            snprintf(id, sizeof id, "file-%d-%d", pass, i);
            cr_assert(e2e_wait_event_status(&E, id, "PENDING", 5000, &row), "%s: no PENDING row",
                      id);
            char tenant[8];
            snprintf(tenant, sizeof tenant, "t%d", i % 5);
            cr_expect_str_eq(jstr(row, "tenant"), tenant);
            cr_expect_str_eq(jstr(row, "type"), "test.file");
            cr_expect(jstr(row, "stream_id") != NULL, "%s: no stream id", id);
            json_decref(row);
            row = NULL;
        }
    }
    /* every one of them, not just the samples */
    size_t pending = 0;
    for (int off = 0; off <= 2 * N; off += 1000) {
        char offs[16];
        snprintf(offs, sizeof offs, "%d", off);
        json_t *list = NULL;
        cr_assert_eq(e2e_ctl_json(&E, &list, "events", "list", "--status", "PENDING", "--limit",
                                  "1000", "--offset", offs, "--json", NULL),
                     0);
        pending += json_array_size(list);
        json_decref(list);
    }
    cr_expect_eq(pending, 2 * N);
    cr_expect_eq(e2e_redis_int(&E, "XLEN %s", "t:events"), 2 * N);
}

Test(e2e_metadata, a_dead_letter_retried_by_hand_keeps_one_metadata_row)
{
    e2e_host_conf(&E, NULL);
    e2e_plugins(&E, "{ pattern: \"test.**\" }", NULL);
    publish("bad-2", "test.e2e.happened", "acme", "reject");
    e2e_run_until_idle(&E, 1500);
    json_t *row = NULL;
    cr_assert(e2e_wait_event_status(&E, "bad-2", "DEAD_LETTERED", 5000, &row));
    json_decref(row);
    json_t *list = NULL;
    cr_assert_eq(e2e_ctl_json(&E, &list, "dlq", "list", "--json", NULL), 0);
    char dlq_id[64], orig[64];
    json_t *it = json_array_get(json_object_get(list, "items"), 0);
    snprintf(dlq_id, sizeof dlq_id, "%s", jstr(it, "dlq_id"));
    snprintf(orig, sizeof orig, "%s", jstr(it, "orig_id"));
    json_decref(list);
    /* retried by hand, it fails again (reject): still one row, the original's */
    cr_assert_eq(e2e_ctl(&E, NULL, NULL, "dlq", "retry", dlq_id, NULL), 0);
    e2e_run_until_idle(&E, 1500);
    cr_assert(e2e_wait_event_status(&E, "bad-2", "DEAD_LETTERED", 5000, &row));
    json_decref(row);
    cr_assert_eq(e2e_ctl_json(&E, &list, "events", "list", "--json", NULL), 0);
    char *ids = ids_of(list);
    cr_expect_str_eq(ids, "bad-2,", "one metadata row per event: %s", ids);
    cr_expect_str_eq(jstr(json_array_get(list, 0), "stream_id"), orig);
    free(ids);
    json_decref(list);
    /* and the new dead letter names the original entry */
    cr_assert_eq(e2e_ctl_json(&E, &list, "dlq", "list", "--json", NULL), 0);
    cr_expect_str_eq(jstr(json_array_get(json_object_get(list, "items"), 0), "orig_id"), orig);
    json_decref(list);
}
