/*
 * event_outcomes_json: the handler outcomes written to PostgreSQL with
 * every event's metadata.  It must always be one valid JSON object whatever
 * the handler names hold, and when the buffer is too small it keeps the
 * outcomes that fit whole rather than cutting one in half.  And the host
 * API's set_reason, which writes a handler's reason into dispatch's buffer.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "core/event.h"

static struct evbus_event ev;

static void note(const char *handler, const char *outcome)
{
    event_note_outcome(&ev, handler, outcome);
}

/* Parses buf (asserting it is a JSON object) and returns it. */
static json_t *parsed(const char *buf)
{
    json_error_t e;
    json_t *o = json_loads(buf, 0, &e);
    cr_assert(json_is_object(o), "not a JSON object: '%s' (%s)", buf, e.text);
    return o;
}

Test(event_outcomes, none_is_an_empty_object)
{
    memset(&ev, 0, sizeof ev);
    char buf[64];
    event_outcomes_json(&ev, buf, sizeof buf);
    cr_expect_str_eq(buf, "{}");
}

Test(event_outcomes, in_order_as_compact_json)
{
    memset(&ev, 0, sizeof ev);
    note("audit/main", "ok");
    note("chaos/main", "retry");
    char buf[256];
    event_outcomes_json(&ev, buf, sizeof buf);
    cr_expect_str_eq(buf, "{\"audit/main\":\"ok\",\"chaos/main\":\"retry\"}");
}

Test(event_outcomes, quotes_backslashes_and_controls_are_escaped)
{
    memset(&ev, 0, sizeof ev);
    note("we\"ird\\name\n\x01", "ok");
    char buf[256];
    event_outcomes_json(&ev, buf, sizeof buf);
    cr_expect_str_eq(buf, "{\"we\\\"ird\\\\name\\u000a\\u0001\":\"ok\"}");
    json_t *o = parsed(buf);
    cr_expect_str_eq(json_string_value(json_object_get(o, "we\"ird\\name\n\x01")), "ok");
    json_decref(o);
}

Test(event_outcomes, a_small_buffer_keeps_whole_outcomes_only)
{
    memset(&ev, 0, sizeof ev);
    note("a", "ok");         /* {"a":"ok"} is 10 characters, 11 bytes with the NUL */
    note("bbbb", "reject");  /* {"a":"ok","bbbb":"reject"}: 26, 27 bytes */
    note("c", "ok");         /* all three: 35, 36 bytes */
    for (size_t len = 1; len <= 40; len++) {
        char buf[64];
        memset(buf, 'X', sizeof buf);
        event_outcomes_json(&ev, buf, len);
        cr_assert_lt(strlen(buf), len, "len %zu: wrote past the buffer", len);
        if (len < 3) {
            cr_expect_str_eq(buf, "", "len %zu", len);
            continue;
        }
        json_t *o = parsed(buf);
        size_t want = len >= 36 ? 3 : len >= 27 ? 2 : len >= 11 ? 1 : 0;
        cr_expect_eq(json_object_size(o), want, "len %zu: '%s'", len, buf);
        json_decref(o);
    }
}

/* api->set_reason: it writes where dispatch points ev->reason during a
 * handler call, as one line, and nowhere outside a call. */
Test(event_reason, set_reason_writes_one_line_into_the_calls_buffer_only)
{
    memset(&ev, 0, sizeof ev);
    const evbus_host_api_t *api = event_host_api();
    cr_assert_eq(api->set_reason(&ev, "no call, no %s", "buffer"), -1);
    char why[16];
    ev.reason = why;
    ev.reason_len = sizeof why;
    cr_assert_eq(api->set_reason(&ev, "line\none\t%d", 2), 0);
    cr_assert_str_eq(why, "line one 2");
    cr_assert_eq(api->set_reason(&ev, "%s", "longer than sixteen bytes"), 0);
    cr_assert_str_eq(why, "longer than six", "cut to the buffer, terminated");
}

/* ---- event_parse: JSON read as RFC 8259 allows, ambiguity refused ---- */

#define ENV_HEAD "{\"specversion\":\"1.0\",\"source\":\"t\",\"type\":\"a.b\",\"time\":" \
                 "\"2026-12-07T00:00:00Z\",\"tenantid\":\"acme\","

static int parse_raw(const char *raw)
{
    event_reset(&ev);
    ev.raw = raw;
    ev.raw_len = strlen(raw);
    return event_parse(&ev);
}

Test(event_parse, a_nul_in_the_payload_is_valid_json)
{
    cr_assert_eq(parse_raw(ENV_HEAD "\"id\":\"1\",\"data\":{\"s\":\"a\\u0000b\"}}"), 0, "%s",
                 ev.error);
    json_t *s = json_object_get(ev.data, "s");
    cr_expect_eq(json_string_length(s), 3);
    cr_expect_eq(memcmp(json_string_value(s), "a\0b", 3), 0);
    event_reset(&ev);
}

Test(event_parse, a_nul_in_an_attribute_is_an_invalid_envelope)
{
    cr_assert_eq(parse_raw(ENV_HEAD "\"id\":\"1\\u00002\",\"data\":{}}"), -1);
    cr_expect_eq(ev.dlq_reason, EVBUS_DLQ_INVALID_ENVELOPE);
    cr_expect(strstr(ev.error, "id:"), "%s", ev.error);
    event_reset(&ev);
}

Test(event_parse, a_duplicate_member_is_an_invalid_envelope_not_a_guess)
{
    cr_assert_eq(parse_raw(ENV_HEAD "\"id\":\"1\",\"id\":\"2\",\"data\":{}}"), -1);
    cr_expect_eq(ev.dlq_reason, EVBUS_DLQ_INVALID_ENVELOPE);
    cr_expect(strstr(ev.error, "appears twice"), "%s", ev.error);
    event_reset(&ev);
    /* inside the payload too: a consumer could read either value */
    cr_assert_eq(parse_raw(ENV_HEAD "\"id\":\"1\",\"data\":{\"x\":1,\"x\":2}}"), -1);
    cr_expect_eq(ev.dlq_reason, EVBUS_DLQ_INVALID_ENVELOPE);
    event_reset(&ev);
    /* not JSON at all stays unparseable */
    cr_assert_eq(parse_raw("{\"id\":"), -1);
    cr_expect_eq(ev.dlq_reason, EVBUS_DLQ_UNPARSEABLE);
    event_reset(&ev);
}

Test(event_parse, each_attribute_comes_from_its_own_member_in_any_order)
{
    /* members in an unusual order, and extensions whose names look alike */
    cr_assert_eq(parse_raw("{\"data\":{\"n\":1},\"tenantid\":\"t7\",\"tyep\":\"x\",\"datA\":2,"
                           "\"time\":\"2026-11-26T10:00:00Z\",\"correlationid\":\"c9\","
                           "\"type\":\"a.b\",\"timezone\":\"utc\",\"source\":\"/s\",\"id\":\"i5\","
                           "\"idx\":\"no\",\"schemaversion\":2,\"specversion\":\"1.0\","
                           "\"dataschema\":\"https://x/a.b/2.json\"}"),
                 0, "%s", ev.error);
    cr_expect_str_eq(ev.id, "i5");
    cr_expect_str_eq(ev.source, "/s");
    cr_expect_str_eq(ev.type, "a.b");
    cr_expect_str_eq(ev.time, "2026-11-26T10:00:00Z");
    cr_expect_str_eq(ev.tenant, "t7");
    cr_expect_str_eq(ev.correlation_id, "c9");
    cr_expect_eq(json_integer_value(json_object_get(ev.data, "n")), 1);
    cr_expect_eq(json_integer_value(ev.schemaversion), 2);
    cr_expect_str_eq(json_string_value(ev.dataschema), "https://x/a.b/2.json");
    event_reset(&ev);
    /* no correlationid, data or version claim: absent, not an error */
    cr_assert_eq(parse_raw(ENV_HEAD "\"id\":\"1\"}"), 0, "%s", ev.error);
    cr_expect_null(ev.correlation_id);
    cr_expect_null(ev.data);
    cr_expect_null(ev.schemaversion);
    cr_expect_null(ev.dataschema);
    event_reset(&ev);
}

Test(event_parse, a_missing_or_wrong_attribute_is_named_in_the_error)
{
    static const struct {
        const char *raw, *named;
    } cases[] = {
        {"{\"id\":\"1\",\"source\":\"/s\",\"type\":\"a.b\",\"time\":\"2026-11-26T10:00:00Z\","
         "\"tenantid\":\"t\"}", "specversion:"},
        {"{\"specversion\":\"1.0\",\"source\":\"/s\",\"type\":\"a.b\","
         "\"time\":\"2026-11-26T10:00:00Z\",\"tenantid\":\"t\"}", "id:"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"type\":\"a.b\","
         "\"time\":\"2026-11-26T10:00:00Z\",\"tenantid\":\"t\"}", "source:"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":7,"
         "\"time\":\"2026-11-26T10:00:00Z\",\"tenantid\":\"t\"}", "type:"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"a.b\","
         "\"tenantid\":\"t\"}", "time:"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"a.b\","
         "\"time\":\"2026-11-26T10:00:00Z\",\"tenantid\":\"\"}", "tenantid:"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(parse_raw(cases[i].raw), -1, "case %zu was accepted", i);
        cr_expect_eq(ev.dlq_reason, EVBUS_DLQ_INVALID_ENVELOPE);
        cr_expect(strncmp(ev.error, cases[i].named, strlen(cases[i].named)) == 0,
                  "case %zu: '%s' does not start with '%s'", i, ev.error, cases[i].named);
        event_reset(&ev);
    }
}
