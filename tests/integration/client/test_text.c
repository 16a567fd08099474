/*
 * libevbus fast publish paths against a real redis-server: events given
 * as JSON text (kept byte for byte, completed by insertion, same verdicts
 * and messages as the json_t rules), the compact writer behind
 * evbus_publish_batch (same bytes as json_dumps), reply errors inside a
 * pipelined batch, and ids that stay unique across fork().
 */
#include <criterion/criterion.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/evbus_client.h"
#include "harness.h"

#define STREAM "evbus:text"

static harness_redis_t R;
static redisContext *rc_;

static void setup(void)
{
    cr_assert_eq(harness_redis_start(&R, false), 0, "redis-server did not start");
    rc_ = harness_redis_connect(&R);
    cr_assert_not_null(rc_);
}

static void teardown(void)
{
    redisFree(rc_);
    harness_redis_stop(&R);
}

TestSuite(text, .init = setup, .fini = teardown, .timeout = 60);

static evbus_client_t *client(void)
{
    char err[256];
    evbus_client_t *c = evbus_client_new(R.url, STREAM, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    return c;
}

static bool matches(const char *re, const char *s)
{
    regex_t rx;
    cr_assert_eq(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0);
    bool ok = regexec(&rx, s, 0, NULL, 0) == 0;
    regfree(&rx);
    return ok;
}

#define UUID4_RE "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
#define TIME_RE "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$"

/* The raw "event" bytes of the entry with this stream id (caller frees). */
static char *stored_raw(const char *id, size_t *len)
{
    redisReply *r = redisCommand(rc_, "XRANGE %s %s %s", STREAM, id, id);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1);
    redisReply *kv = r->element[0]->element[1];
    cr_assert_str_eq(kv->element[0]->str, "event");
    char *s = malloc(kv->element[1]->len + 1);
    memcpy(s, kv->element[1]->str, kv->element[1]->len + 1);
    *len = kv->element[1]->len;
    freeReplyObject(r);
    return s;
}

/* Publishes one text event; returns its stream id in sid. */
static void publish_text(evbus_client_t *c, evbus_text_event_t *ev, char sid[EVBUS_STREAM_ID_LEN])
{
    char ids[1][EVBUS_STREAM_ID_LEN], err[256];
    int rc;
    cr_assert_eq(evbus_publish_batch_text(c, ev, 1, ids, &rc, err, sizeof err), 1, "%s", err);
    cr_assert_eq(rc, 0);
    memcpy(sid, ids[0], EVBUS_STREAM_ID_LEN);
}

#define FULL                                                                                    \
    "{\"specversion\":\"1.0\", \"id\":\"e-1\",\"source\":\"/s\",\"type\":\"a.b\","             \
    "\"time\":\"2025-03-14T09:26:53.123Z\",\"tenantid\":\"t1\",\"correlationid\":\"c-1\","     \
    "\"data\":{\"x\":[1,2.5,-3e2,true,null,\"\\u00e9\\n\"]}}"

Test(text, complete_event_is_published_as_its_own_bytes)
{
    evbus_client_t *c = client();
    const char *line = "  " FULL " \r\n";
    evbus_text_event_t ev;
    char err[256], sid[EVBUS_STREAM_ID_LEN];
    cr_assert_eq(evbus_event_text_complete(c, line, strlen(line), &ev, err, sizeof err), 0, "%s",
                 err);
    cr_assert_str_eq(ev.id, "e-1");
    cr_assert_str_eq(ev.type, "a.b");
    cr_assert_str_eq(ev.tenantid, "t1");
    cr_assert_str_eq(ev.source, "/s");
    cr_assert_str_eq(ev.correlationid, "c-1");
    cr_assert_str_eq(ev.time, "2025-03-14T09:26:53.123Z");
    publish_text(c, &ev, sid);
    size_t n;
    char *raw = stored_raw(sid, &n);
    cr_assert_str_eq(raw, FULL, "stored %s", raw);
    free(raw);
    evbus_text_event_clear(&ev);
    cr_assert_null(ev.mem);
    evbus_client_free(c);
}

Test(text, missing_attributes_are_inserted_and_the_rest_kept)
{
    evbus_client_t *c = client();
    evbus_client_set_source(c, "/src \"q\"");
    const char *line = "{\"type\":\"a.b\",\"tenantid\":\"t\",\"data\":{\"k\": \"v\"}}\n";
    evbus_text_event_t ev;
    char err[256], sid[EVBUS_STREAM_ID_LEN];
    cr_assert_eq(evbus_event_text_complete(c, line, strlen(line), &ev, err, sizeof err), 0, "%s",
                 err);
    cr_assert(matches(UUID4_RE, ev.id), "id %s", ev.id);
    cr_assert(matches(UUID4_RE, ev.correlationid), "correlationid %s", ev.correlationid);
    cr_assert(matches(TIME_RE, ev.time), "time %s", ev.time);
    cr_assert_str_eq(ev.source, "/src \"q\"");
    publish_text(c, &ev, sid);
    size_t n;
    char *raw = stored_raw(sid, &n);
    /* The caller's bytes follow the inserted attributes unchanged. */
    const char *rest = "\"type\":\"a.b\",\"tenantid\":\"t\",\"data\":{\"k\": \"v\"}}";
    cr_assert(n > strlen(rest) && strcmp(raw + n - strlen(rest), rest) == 0, "stored %s", raw);
    json_t *j = json_loads(raw, 0, NULL);
    cr_assert_not_null(j, "stored text is not JSON: %s", raw);
    cr_assert_str_eq(json_string_value(json_object_get(j, "specversion")), "1.0");
    cr_assert_str_eq(json_string_value(json_object_get(j, "id")), ev.id);
    cr_assert_str_eq(json_string_value(json_object_get(j, "source")), "/src \"q\"");
    cr_assert_str_eq(json_string_value(json_object_get(j, "time")), ev.time);
    cr_assert_str_eq(json_string_value(json_object_get(j, "correlationid")), ev.correlationid);
    json_decref(j);
    free(raw);
    evbus_text_event_clear(&ev);
    evbus_client_free(c);
}

/* Every line gets the verdict and message evbus_event_complete gives the
 * parsed object ("invalid JSON: ..." when jansson refuses the text). */
/* Tricky inputs: every rule of evbus_event_complete, the slow path's
 * triggers (escapes, duplicates, huge numbers) and JSON jansson refuses. */
static const char *const tricky[] = {
        "{\"type\":\"a.b\",\"tenantid\":\"t\"}",
        /* U+0000 is JSON in a payload, not in an attribute; a member
         * twice (envelope or payload) is refused, not guessed */
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"data\":{\"s\":\"x\\u0000y\"}}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\\u0000u\"}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"id\":\"1\\u00002\"}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"id\":\"1\",\"id\":\"2\"}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"data\":1,\"data\":2}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"data\":{\"k\":1,\"k\":2}}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"data\":{\"k\":1,\"\\u006b\":2}}",
        "{\"type\":\"A.B\",\"tenantid\":\"t\"}",
        "{\"type\":\"a..b\",\"tenantid\":\"t\"}",
        "{\"tenantid\":\"t\"}",
        "{\"type\":\"a.b\"}",
        "{\"type\":\"a.b\",\"tenantid\":\"\"}",
        "{\"type\":\"a.b\",\"tenantid\":5}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"id\":\"\"}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"specversion\":\"0.3\"}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"time\":\"yesterday\"}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"time\":\"2025-02-30T00:00:00Z\"}",
        "{\"type\":\"a\\u002eb\",\"tenantid\":\"t\"}",            /* escaped: slow path */
        "{\"type\":\"X\",\"tenantid\":\"t\",\"type\":\"a.b\"}",   /* later one wins */
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"type\":\"X\"}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"data\":\"\\u0000\"}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"data\":99999999999999999999}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"data\":1e400}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"data\":1.5e-7}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"data\":012}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"data\":\"\\ud800\"}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"data\":\"\\ud83d\\ude00\"}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"data\":\"\xc3\xa9\"}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"data\":\"\xc3\"}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"data\":\"\xed\xa0\x80\"}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"data\":\"tab\there\"}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"data\":[1,]}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\"} x",
        "{\"type\":\"a.b\",\"tenantid\":\"t\"",
        "[{\"type\":\"a.b\",\"tenantid\":\"t\"}]",
        "\"just a string\"",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"data\":{\"a\":tru}}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"data\":-}",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"\\u0074ype\":\"b.c\"}",
};

Test(text, verdicts_and_messages_match_the_json_rules)
{
    const char *const *lines = tricky;
    evbus_client_t *c = client();
    for (size_t i = 0; i < sizeof tricky / sizeof tricky[0]; i++) {
        const char *line = lines[i];
        char want[256] = "", got[256] = "", chk[256] = "";
        json_error_t jerr;
        /* the reference: jansson as evbus reads JSON everywhere */
        json_t *j = json_loadb(line, strlen(line), JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
        int want_rc = EVBUS_CLIENT_EINVAL;
        if (!j)
            snprintf(want, sizeof want, "invalid JSON: %s (column %d)", jerr.text, jerr.column);
        else
            want_rc = evbus_event_complete(c, j, want, sizeof want);
        evbus_text_event_t ev;
        int got_rc = evbus_event_text_complete(c, line, strlen(line), &ev, got, sizeof got);
        int chk_rc = evbus_event_text_check(c, line, strlen(line), chk, sizeof chk);
        cr_assert_eq(got_rc, want_rc, "line %zu %s: rc %d, want %d (%s)", i, line, got_rc,
                     want_rc, got);
        cr_assert_eq(chk_rc, want_rc, "line %zu: check rc %d, want %d", i, chk_rc, want_rc);
        if (want_rc != 0) {
            cr_assert_str_eq(got, want, "line %zu", i);
            cr_assert_str_eq(chk, want, "line %zu", i);
            cr_assert_null(ev.mem);
        } else {
            /* Accepted: the published text means what jansson read. */
            char sid[EVBUS_STREAM_ID_LEN];
            publish_text(c, &ev, sid);
            size_t n;
            char *raw = stored_raw(sid, &n);
            json_t *st = json_loadb(raw, n, JSON_ALLOW_NUL, NULL);
            cr_assert_not_null(st, "line %zu stored %s", i, raw);
            json_object_del(st, "id");
            json_object_del(st, "time");
            json_object_del(st, "correlationid");
            json_object_del(j, "id");
            json_object_del(j, "time");
            json_object_del(j, "correlationid");
            cr_assert(json_equal(st, j), "line %zu: stored %s", i, raw);
            cr_assert_str_eq(ev.type, json_string_value(json_object_get(j, "type")));
            json_decref(st);
            free(raw);
            evbus_text_event_clear(&ev);
        }
        json_decref(j);
    }
    evbus_client_free(c);
}

/* evbus_publish_batch writes exactly what json_dumps(JSON_COMPACT) does. */
Test(text, batch_bytes_equal_json_dumps)
{
    evbus_client_t *c = client();
    json_t *evs[4];
    evs[0] = json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:s}}", "type", "w.x", "tenantid", "t",
                       "data", "esc", "q\" b\\ s/ \b\f\n\r\t \x01\x1f\x7f", "utf8",
                       "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "empty", "", "long",
                       "0123456789abcdef0123456789abcdef0123456789\"");
    evs[1] = json_pack("{s:s, s:s, s:[i, I, I, f, f, f, b, b, n, {}, [], [[[]]]]}", "type", "w.x",
                       "tenantid", "t", "data", 0, (json_int_t)-9223372036854775807LL - 1,
                       (json_int_t)9223372036854775807LL, 0.1, -1e300, 3.0, 1, 0);
    evs[2] = json_pack("{s:s, s:s}", "type", "w.x", "tenantid", "t");
    json_object_set_new(evs[2], "data", json_stringn("a\0b", 3));
    evs[3] = json_pack("{s:s, s:s}", "type", "w.x", "tenantid", "t");
    json_t *deep = json_array();
    json_object_set_new(evs[3], "data", deep);
    for (int i = 0; i < 300; i++) { /* deeper than the writer goes: jansson's turn */
        json_t *a = json_array();
        json_array_append_new(deep, a);
        deep = a;
    }
    char ids[4][EVBUS_STREAM_ID_LEN], err[256];
    int rcs[4];
    cr_assert_eq(evbus_publish_batch(c, evs, 4, ids, rcs, err, sizeof err), 4, "%s", err);
    for (int i = 0; i < 4; i++) {
        char *want = json_dumps(evs[i], JSON_COMPACT);
        size_t n;
        char *raw = stored_raw(ids[i], &n);
        cr_assert_eq(n, strlen(want), "event %d: %s vs %s", i, raw, want);
        cr_assert_eq(memcmp(raw, want, n), 0, "event %d: %s vs %s", i, raw, want);
        free(raw);
        free(want);
        json_decref(evs[i]);
    }
    evbus_client_free(c);
}

Test(text, batch_text_skips_uncompleted_items_and_reports_reply_errors)
{
    evbus_client_t *c = client();
    enum { N = 5000 };
    evbus_text_event_t *evs = calloc(N, sizeof *evs);
    char (*ids)[EVBUS_STREAM_ID_LEN] = calloc(N, sizeof *ids);
    int *rcs = calloc(N, sizeof *rcs);
    char (*lines)[96] = calloc(N, sizeof *lines);
    char err[256];
    for (int i = 0; i < N; i++) {
        snprintf(lines[i], sizeof lines[i],
                 "{\"type\":\"n.i\",\"tenantid\":\"t\",\"data\":{\"i\":%d}}", i);
        if (i != 7)
            cr_assert_eq(evbus_event_text_complete(c, lines[i], strlen(lines[i]), &evs[i], err,
                                                   sizeof err),
                         0);
    }
    ssize_t n = evbus_publish_batch_text(c, evs, N, ids, rcs, err, sizeof err);
    cr_assert_eq(n, N - 1, "%zd: %s", n, err);
    cr_assert_eq(rcs[7], EVBUS_CLIENT_EINVAL);
    cr_assert(strstr(err, "event 7:") != NULL, "err: %s", err);
    for (int i = 0; i < N; i += 499) {
        if (i == 7)
            continue;
        size_t len;
        char *raw = stored_raw(ids[i], &len);
        json_t *j = json_loads(raw, 0, NULL);
        cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "data"), "i")), i);
        cr_assert_str_eq(json_string_value(json_object_get(j, "id")), evs[i].id);
        json_decref(j);
        free(raw);
    }
    /* The stream key turned into a string: every XADD gets WRONGTYPE. */
    freeReplyObject(redisCommand(rc_, "DEL %s", STREAM));
    freeReplyObject(redisCommand(rc_, "SET %s x", STREAM));
    n = evbus_publish_batch_text(c, evs, 10, ids, rcs, err, sizeof err);
    cr_assert_eq(n, 0);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(rcs[i], i == 7 ? EVBUS_CLIENT_EINVAL : EVBUS_CLIENT_EREDIS);
        cr_assert_str_eq(ids[i], "");
    }
    cr_assert(strstr(err, "event 7:") != NULL, "err: %s", err);
    /* The connection is still in step: a later publish works. */
    freeReplyObject(redisCommand(rc_, "DEL %s", STREAM));
    cr_assert_eq(evbus_publish_batch_text(c, evs, 3, ids, rcs, err, sizeof err), 3, "%s", err);
    for (int i = 0; i < N; i++)
        evbus_text_event_clear(&evs[i]);
    free(evs);
    free(ids);
    free(rcs);
    free(lines);
    evbus_client_free(c);
}

/* evbus_publish_texts publishes what complete + batch_text would: the same
 * verdicts (first refusal named in err), the caller's bytes after the same
 * head, and stream order = index order. */
Test(text, publish_texts_matches_complete_then_batch_text)
{
    evbus_client_t *c = client();
    enum { K = sizeof tricky / sizeof tricky[0] };
    evbus_text_t texts[K + 1];
    for (size_t i = 0; i < K; i++)
        texts[i] = (evbus_text_t){tricky[i], strlen(tricky[i])};
    /* Not NUL-terminated: the length is what counts. */
    const char *full = FULL "garbage";
    texts[K] = (evbus_text_t){full, strlen(FULL)};
    char ids[K + 1][EVBUS_STREAM_ID_LEN], err[256], first[300] = "";
    int rcs[K + 1];
    ssize_t want_n = 0;
    for (size_t i = 0; i <= K; i++) {
        evbus_text_event_t ev;
        char msg[256];
        if (evbus_event_text_complete(c, texts[i].text, texts[i].len, &ev, msg, sizeof msg) == 0)
            want_n++;
        else if (!first[0])
            snprintf(first, sizeof first, "event %zu: %s", i, msg);
        evbus_text_event_clear(&ev);
    }
    cr_assert(want_n > 5 && first[0]);
    ssize_t n = evbus_publish_texts(c, texts, K + 1, ids, rcs, err, sizeof err);
    cr_assert_eq(n, want_n, "%zd: %s", n, err);
    cr_assert_eq(strncmp(err, first, sizeof err - 1), 0, "err %s, want %s", err, first);
    char prev[EVBUS_STREAM_ID_LEN] = "0-0";
    for (size_t i = 0; i <= K; i++) {
        evbus_text_event_t ev;
        char msg[256];
        int want = evbus_event_text_complete(c, texts[i].text, texts[i].len, &ev, msg, sizeof msg);
        cr_assert_eq(rcs[i], want, "text %zu: rc %d, want %d", i, rcs[i], want);
        if (want != 0) {
            cr_assert_str_eq(ids[i], "", "text %zu", i);
            continue;
        }
        unsigned long long pm, ps, im, is;
        cr_assert_eq(sscanf(prev, "%llu-%llu", &pm, &ps), 2);
        cr_assert_eq(sscanf(ids[i], "%llu-%llu", &im, &is), 2, "text %zu: id %s", i, ids[i]);
        cr_assert(im > pm || (im == pm && is > ps), "text %zu: %s after %s", i, ids[i], prev);
        memcpy(prev, ids[i], sizeof prev);
        size_t len;
        char *raw = stored_raw(ids[i], &len);
        /* Same length (generated values have fixed lengths), same tail,
         * same meaning apart from the generated values. */
        cr_assert_eq(len, ev.head_len + ev.tail_len, "text %zu: %s", i, raw);
        cr_assert(ev.tail_len == 0 || memcmp(raw + len - ev.tail_len, ev.tail, ev.tail_len) == 0,
                  "text %zu", i);
        char *joined = malloc(ev.head_len + ev.tail_len);
        memcpy(joined, ev.head, ev.head_len);
        if (ev.tail_len)
            memcpy(joined + ev.head_len, ev.tail, ev.tail_len);
        json_t *got = json_loadb(raw, len, JSON_ALLOW_NUL, NULL);
        json_t *exp = json_loadb(joined, ev.head_len + ev.tail_len, JSON_ALLOW_NUL, NULL);
        free(joined);
        cr_assert(got && exp, "text %zu: %s", i, raw);
        json_t *in = json_loadb(texts[i].text, texts[i].len, JSON_ALLOW_NUL, NULL);
        cr_assert_not_null(in, "text %zu", i);
        const char *gen[] = {"id", "time", "correlationid"};
        for (size_t k = 0; k < 3; k++) {
            if (!json_object_get(in, gen[k])) { /* generated: differs per call */
                json_object_del(got, gen[k]);
                json_object_del(exp, gen[k]);
            }
        }
        json_decref(in);
        cr_assert(json_equal(got, exp), "text %zu: stored %s", i, raw);
        if (i == K)
            cr_assert_str_eq(raw, FULL);
        json_decref(got);
        json_decref(exp);
        free(raw);
        evbus_text_event_clear(&ev);
    }
    evbus_client_free(c);
}

/* With Redis down: -1, the connection failure in err, refused texts still
 * EVBUS_CLIENT_EINVAL and the rest EVBUS_CLIENT_EREDIS. */
Test(text, publish_texts_with_redis_down_is_minus_one)
{
    char err[256];
    evbus_client_t *c = evbus_client_new("redis://127.0.0.1:1/0", STREAM, err, sizeof err);
    cr_assert_not_null(c);
    evbus_text_t texts[3] = {{tricky[0], strlen(tricky[0])},
                             {tricky[3], strlen(tricky[3])}, /* no type */
                             {tricky[0], strlen(tricky[0])}};
    char ids[3][EVBUS_STREAM_ID_LEN];
    int rcs[3];
    cr_assert_eq(evbus_publish_texts(c, texts, 3, ids, rcs, err, sizeof err), -1);
    cr_assert(strstr(err, "redis") != NULL, "err: %s", err);
    cr_assert_eq(rcs[0], EVBUS_CLIENT_EREDIS);
    cr_assert_eq(rcs[1], EVBUS_CLIENT_EINVAL);
    cr_assert_eq(rcs[2], EVBUS_CLIENT_EREDIS);
    evbus_client_free(c);
}

Test(text, batch_text_with_redis_down_is_minus_one)
{
    char err[256];
    evbus_client_t *c = evbus_client_new("redis://127.0.0.1:1/0", STREAM, err, sizeof err);
    cr_assert_not_null(c);
    const char *line = "{\"type\":\"a.b\",\"tenantid\":\"t\"}";
    evbus_text_event_t ev;
    cr_assert_eq(evbus_event_text_complete(c, line, strlen(line), &ev, err, sizeof err), 0);
    char ids[1][EVBUS_STREAM_ID_LEN];
    int rc;
    cr_assert_eq(evbus_publish_batch_text(c, &ev, 1, ids, &rc, err, sizeof err), -1);
    cr_assert_eq(rc, EVBUS_CLIENT_EREDIS);
    cr_assert(strstr(err, "redis") != NULL, "err: %s", err);
    evbus_text_event_clear(&ev);
    evbus_client_free(c);
}

/* Random bytes are pooled per thread: a forked child must not replay the
 * parent's pool. */
Test(text, ids_differ_between_parent_and_forked_child)
{
    char warm[37], parent[37], child[37];
    evbus_uuid4(warm); /* fills the pool */
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        evbus_uuid4(child);
        ssize_t w = write(fds[1], child, sizeof child);
        _exit(w == (ssize_t)sizeof child ? 0 : 1);
    }
    evbus_uuid4(parent);
    cr_assert_eq(read(fds[0], child, sizeof child), (ssize_t)sizeof child);
    int st;
    waitpid(pid, &st, 0);
    close(fds[0]);
    close(fds[1]);
    cr_assert_str_neq(parent, child);
}

/* The key hash of one line, asserting that the line is valid. */
static uint64_t key_of(const char *line)
{
    uint64_t h = 0;
    char err[256];
    int rc = evbus_event_text_check_key(NULL, line, strlen(line), &h, err, sizeof err);
    cr_assert_eq(rc, 0, "%s: %s", line, err);
    return h;
}

Test(text, check_key_hashes_partitionkey_else_tenantid)
{
    uint64_t acme = key_of("{\"type\":\"a.b\",\"tenantid\":\"acme\"}");
    uint64_t other = key_of("{\"type\":\"a.b\",\"tenantid\":\"other\"}");
    cr_assert_neq(acme, other);
    /* FNV-1a 64 of "acme": stable across runs and builds. */
    uint64_t fnv = 14695981039346656037u;
    for (const char *p = "acme"; *p; p++)
        fnv = (fnv ^ (unsigned char)*p) * 1099511628211u;
    cr_assert_eq(acme, fnv);
    /* partitionkey wins over tenantid, wherever it appears. */
    cr_assert_eq(key_of("{\"partitionkey\":\"acme\",\"type\":\"a.b\",\"tenantid\":\"other\"}"),
                 acme);
    cr_assert_eq(key_of("{\"type\":\"a.b\",\"tenantid\":\"other\",\"data\":{},"
                        "\"partitionkey\":\"acme\"}"),
                 acme);
    /* A nested partitionkey is data, not the attribute. */
    cr_assert_eq(key_of("{\"type\":\"a.b\",\"tenantid\":\"other\",\"data\":{\"partitionkey\":"
                        "\"acme\"}}"),
                 other);
    /* A partitionkey that is not a string does not count. */
    cr_assert_eq(key_of("{\"type\":\"a.b\",\"tenantid\":\"other\",\"partitionkey\":7}"), other);
    /* The decoded key counts, not its spelling (escapes take jansson's path). */
    cr_assert_eq(key_of("{\"type\":\"a.b\",\"tenantid\":\"\\u0061cme\"}"), acme);
    cr_assert_eq(key_of("{\"type\":\"a.b\",\"tenantid\":\"x\",\"partitionkey\":\"ac\\u006de\"}"),
                 acme);
}

Test(text, check_key_gives_the_check_verdict)
{
    const char *bad[] = {"{\"type\":\"a.b\"}", "not json", "{\"type\":\"A\",\"tenantid\":\"t\"}",
                         "{\"type\":\"a.b\",\"tenantid\":\"t\",\"partitionkey\":\"k\",\"time\":1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char e1[256], e2[256];
        uint64_t h;
        int r1 = evbus_event_text_check(NULL, bad[i], strlen(bad[i]), e1, sizeof e1);
        int r2 = evbus_event_text_check_key(NULL, bad[i], strlen(bad[i]), &h, e2, sizeof e2);
        cr_assert_eq(r1, EVBUS_CLIENT_EINVAL, "%s", bad[i]);
        cr_assert_eq(r2, EVBUS_CLIENT_EINVAL, "%s", bad[i]);
        cr_assert_str_eq(e1, e2);
    }
}

/* s with its first `from` replaced by `to` (caller frees). */
static char *replace_once(const char *s, const char *from, const char *to)
{
    const char *at = strstr(s, from);
    cr_assert_not_null(at, "%s not in %s", from, s);
    size_t a = (size_t)(at - s), fl = strlen(from), tl = strlen(to);
    char *r = malloc(strlen(s) - fl + tl + 1);
    memcpy(r, s, a);
    memcpy(r + a, to, tl);
    strcpy(r + a + tl, at + fl);
    return r;
}

/* The bytes the stream got for ev, with the attributes generated for it
 * replaced by those generated for ref (ids and times differ per call). */
static char *published_as(evbus_client_t *c, evbus_text_event_t *ev, const evbus_text_event_t *ref,
                          const char *line)
{
    char sid[EVBUS_STREAM_ID_LEN];
    publish_text(c, ev, sid);
    size_t n;
    char *raw = stored_raw(sid, &n);
    cr_assert_eq(n, ev->head_len + ev->tail_len);
    cr_assert_eq(memcmp(raw, ev->head, ev->head_len), 0);
    /* a re-serialized (slow path) event has no tail */
    cr_assert(ev->tail_len == 0 || memcmp(raw + ev->head_len, ev->tail, ev->tail_len) == 0);
    const char *gen[][2] = {{ev->id, ref->id},
                            {ev->time, ref->time},
                            {ev->correlationid, ref->correlationid}};
    for (size_t k = 0; k < 3; k++) {
        if (strstr(line, gen[k][1]))
            continue; /* given by the line, not generated */
        char *r = replace_once(raw, gen[k][0], gen[k][1]);
        free(raw);
        raw = r;
    }
    return raw;
}

/* evbus_event_text_complete_checked gives what evbus_event_text_complete
 * gives: codes, messages, fields and the bytes that reach the stream, for
 * the tricky corpus and for lines that carry every attribute, surrounding
 * whitespace or attributes after nested data. */
Test(text, complete_checked_publishes_what_complete_publishes)
{
    static const char *const more[] = {
        "  {\"data\":{\"type\":\"no\",\"id\":[1,{\"x\":\"}\"}]},\"type\":\"a.b\",\"tenantid\":\"t\"} \r\n",
        "{\"specversion\":\"1.0\",\"id\":\"i-1\",\"source\":\"s\",\"type\":\"a.b\","
        "\"time\":\"2025-01-02T03:04:05.678Z\",\"tenantid\":\"t\",\"correlationid\":\"k\","
        "\"partitionkey\":\"p\",\"data\":{\"n\":-1.5e+10,\"u\":\"\xc3\xa9\\n\"}}\n",
        "{\"type\":\"a.b\",\"tenantid\":\"t\",\"source\":\"\\/s\"}",
        "\t{ \"tenantid\" : \"t\" , \"type\" : \"a.b\" , \"data\" : [ ] }\n",
    };
    size_t nt = sizeof tricky / sizeof tricky[0], nm = sizeof more / sizeof more[0];
    evbus_client_t *c = client();
    for (size_t i = 0; i < nt + nm; i++) {
        const char *line = i < nt ? tricky[i] : more[i - nt];
        size_t len = strlen(line);
        char cerr[256] = "", oerr[256] = "", nerr[256] = "";
        evbus_text_checked_t chk;
        uint64_t h1, h2;
        int crc = evbus_event_text_check_keep(c, line, len, &h1, &chk, cerr, sizeof cerr);
        int krc = evbus_event_text_check_key(c, line, len, &h2, oerr, sizeof oerr);
        cr_assert_eq(crc, krc, "line %zu", i);
        cr_assert_str_eq(cerr, oerr, "line %zu", i);
        if (crc != 0)
            continue;
        cr_assert_eq(h1, h2, "line %zu", i);
        /* The checked text copied elsewhere, as evbusctl's chunks do. */
        char *copy = strdup(line);
        evbus_text_event_t old_ev, new_ev;
        int orc = evbus_event_text_complete(c, line, len, &old_ev, oerr, sizeof oerr);
        int nrc = evbus_event_text_complete_checked(c, copy, len, &chk, &new_ev, nerr, sizeof nerr);
        cr_assert_eq(nrc, orc, "line %zu: %s / %s", i, nerr, oerr);
        cr_assert_eq(orc, 0, "line %zu: %s", i, oerr);
        cr_assert_str_eq(new_ev.type, old_ev.type);
        cr_assert_str_eq(new_ev.tenantid, old_ev.tenantid);
        cr_assert_str_eq(new_ev.source, old_ev.source);
        char *ob = published_as(c, &old_ev, &new_ev, line);
        char *nb = published_as(c, &new_ev, &new_ev, line);
        cr_assert_str_eq(nb, ob, "line %zu", i);
        free(ob);
        free(nb);
        evbus_text_event_clear(&old_ev);
        evbus_text_event_clear(&new_ev);
        free(copy);
    }
    evbus_client_free(c);
}

/* Text that changed after the check is judged afresh, as
 * evbus_event_text_complete judges it. */
Test(text, complete_checked_rechecks_changed_text)
{
    const char *checked = "{\"type\":\"a.b\",\"tenantid\":\"t\",\"id\":\"x\"}";
    const char *bad = "{\"type\":\"a.b\",\"tenantid\":\"t\",\"id\":\"\"}X";
    const char *same_len_bad = "{\"type\":\"a.b\",\"tenantid\":\"\",\"id\":\"x\"}";
    const char *moved = "{\"tenantid\":\"u\",\"type\":\"c.d\",\"id\":\"y\"}";
    evbus_client_t *c = client();
    evbus_text_checked_t chk;
    char err[256], want[256];
    cr_assert_eq(evbus_event_text_check_keep(c, checked, strlen(checked), NULL, &chk, err,
                                             sizeof err), 0, "%s", err);
    const char *changed[] = {bad, same_len_bad};
    for (size_t k = 0; k < 2; k++) {
        evbus_text_event_t ev, old_ev;
        int rc = evbus_event_text_complete_checked(c, changed[k], strlen(changed[k]), &chk, &ev,
                                                   err, sizeof err);
        int orc = evbus_event_text_complete(c, changed[k], strlen(changed[k]), &old_ev, want,
                                            sizeof want);
        cr_assert_eq(rc, EVBUS_CLIENT_EINVAL, "%s", changed[k]);
        cr_assert_eq(orc, rc);
        cr_assert_str_eq(err, want);
        cr_assert_null(ev.mem);
    }
    evbus_text_event_t ev;
    cr_assert_eq(strlen(moved), strlen(checked));
    cr_assert_eq(evbus_event_text_complete_checked(c, moved, strlen(moved), &chk, &ev, err,
                                                   sizeof err), 0, "%s", err);
    cr_assert_str_eq(ev.type, "c.d");
    cr_assert_str_eq(ev.tenantid, "u");
    cr_assert_str_eq(ev.id, "y");
    evbus_text_event_clear(&ev);
    evbus_client_free(c);
}

/* ------------------------------------------------------------ pipelines */

static void redis_ok(const char *cmd)
{
    redisReply *r = redisCommand(rc_, cmd);
    cr_assert(r && r->type != REDIS_REPLY_ERROR, "%s: %s", cmd, r ? r->str : rc_->errstr);
    freeReplyObject(r);
}

struct answers {
    size_t n, ok, failed;
    uint64_t next_seq; /* the seq the next answer must have */
    bool out_of_order;
    char last_id[EVBUS_STREAM_ID_LEN];
    bool ids_not_increasing;
    char first_error[256];
};

static void on_answer(void *ud, uint64_t seq, int rc, const char *text)
{
    struct answers *a = ud;
    if (seq != a->next_seq)
        a->out_of_order = true;
    a->next_seq = seq + 1;
    a->n++;
    if (rc == 0) {
        a->ok++;
        /* "ms-seq" ids of one stream only grow */
        unsigned long long ms1 = 0, s1 = 0, ms2, s2;
        if (a->last_id[0])
            sscanf(a->last_id, "%llu-%llu", &ms1, &s1);
        cr_assert_eq(sscanf(text, "%llu-%llu", &ms2, &s2), 2, "not a stream id: %s", text);
        if (a->last_id[0] && (ms2 < ms1 || (ms2 == ms1 && s2 <= s1)))
            a->ids_not_increasing = true;
        snprintf(a->last_id, sizeof a->last_id, "%s", text);
    } else {
        cr_assert_eq(rc, EVBUS_CLIENT_EREDIS);
        if (!a->failed++)
            snprintf(a->first_error, sizeof a->first_error, "%s", text);
    }
}

/* The completed event's tail points into text, which must outlive it. */
static void complete_n(evbus_client_t *c, int i, evbus_text_event_t *ev, char text[128])
{
    char err[256];
    int len = snprintf(text, 128, "{\"type\":\"p.q\",\"tenantid\":\"t\",\"data\":{\"i\":%d}}",
                       i);
    cr_assert_eq(evbus_event_text_complete(c, text, (size_t)len, ev, err, sizeof err), 0, "%s",
                 err);
}

/* A pipeline on c whose answers go to a (asserts). */
static evbus_pipeline_t *open_pipeline(evbus_client_t *c, struct answers *a)
{
    char err[256];
    evbus_pipeline_t *pl = evbus_pipeline_new(c, on_answer, a, err, sizeof err);
    cr_assert_not_null(pl, "%s", err);
    return pl;
}

/* Adds events first..first+n-1 (each completed, copied, cleared); every
 * add must succeed. */
static void add_n(evbus_client_t *c, evbus_pipeline_t *pl, int first, int n)
{
    char text[128], err[256];
    for (int i = first; i < first + n; i++) {
        evbus_text_event_t ev;
        complete_n(c, i, &ev, text);
        cr_assert_eq(evbus_pipeline_add_text(pl, &ev, err, sizeof err), 0, "%s", err);
        evbus_text_event_clear(&ev); /* the pipeline copied the bytes */
    }
}

Test(text, pipeline_streams_in_order_and_answers_each_event_once)
{
    enum { N = 12000 }; /* three times the in-flight bound */
    char text[128];
    evbus_client_t *c = client();
    struct answers a = {0};
    char err[256];
    evbus_pipeline_t *pl = open_pipeline(c, &a);
    for (int i = 0; i < N; i++) {
        evbus_text_event_t ev;
        complete_n(c, i, &ev, text);
        cr_assert_eq(evbus_pipeline_add_text(pl, &ev, err, sizeof err), 0, "%s", err);
        evbus_text_event_clear(&ev); /* the pipeline copied the bytes */
        cr_assert_leq(evbus_pipeline_unanswered(pl), EVBUS_PIPELINE_MAX_INFLIGHT);
    }
    cr_assert_eq(evbus_pipeline_wait(pl, err, sizeof err), 0, "%s", err);
    cr_assert_eq(evbus_pipeline_unanswered(pl), 0);
    evbus_pipeline_free(pl);
    cr_assert_eq(a.n, N);
    cr_assert_eq(a.ok, N);
    cr_assert(!a.out_of_order && !a.ids_not_increasing);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), N);
    /* the last answer is the stream's last entry, whose data is the last added */
    redisReply *r = redisCommand(rc_, "XREVRANGE %s + - COUNT 1", STREAM);
    cr_assert(r && r->elements == 1);
    cr_assert_str_eq(r->element[0]->element[0]->str, a.last_id);
    cr_assert(strstr(r->element[0]->element[1]->element[1]->str, "\"i\":11999") != NULL);
    freeReplyObject(r);
    /* the connection is usable for ordinary commands afterwards */
    evbus_text_event_t ev;
    complete_n(c, N, &ev, text);
    char sid[EVBUS_STREAM_ID_LEN];
    publish_text(c, &ev, sid);
    evbus_text_event_clear(&ev);
    evbus_client_free(c);
}

/* The pipeline guesses how long the next replies are from the last id it
 * got, so that it sleeps until they are all in.  Replies shorter than the
 * guess (the stream was recreated under it with fewer millisecond digits)
 * must still be read: without the fallback the wait below runs into the
 * 5 s command timeout and fails. */
Test(text, pipeline_waits_out_replies_shorter_than_guessed)
{
    char text[128], err[256];
    evbus_client_t *c = client();
    freeReplyObject(redisCommand(rc_, "XADD %s 1-1 k v", STREAM));
    freeReplyObject(redisCommand(rc_, "XSETID %s 9999999999999999-0", STREAM));
    struct answers a = {0};
    evbus_pipeline_t *pl = open_pipeline(c, &a);
    evbus_text_event_t ev;
    complete_n(c, 0, &ev, text);
    cr_assert_eq(evbus_pipeline_add_text(pl, &ev, err, sizeof err), 0, "%s", err);
    evbus_text_event_clear(&ev);
    cr_assert_eq(evbus_pipeline_wait(pl, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(a.last_id, "9999999999999999-1");
    freeReplyObject(redisCommand(rc_, "DEL %s", STREAM));
    /* Held for a moment, so the pipeline sleeps for its replies. */
    freeReplyObject(redisCommand(rc_, "CLIENT PAUSE 200 WRITE"));
    for (int i = 1; i <= 10; i++) {
        complete_n(c, i, &ev, text);
        cr_assert_eq(evbus_pipeline_add_text(pl, &ev, err, sizeof err), 0, "%s", err);
        evbus_text_event_clear(&ev);
    }
    cr_assert_eq(evbus_pipeline_wait(pl, err, sizeof err), 0, "%s", err);
    evbus_pipeline_free(pl);
    cr_assert_eq(a.ok, 11);
    cr_assert_eq(strlen(a.last_id), 15, "%s", a.last_id); /* 13 ms digits, "-0" */
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 10);
    evbus_client_free(c);
}

Test(text, pipeline_reply_errors_are_reported_per_event)
{
    redis_ok("SET " STREAM " not-a-stream");
    evbus_client_t *c = client();
    struct answers a = {0};
    char err[256];
    evbus_pipeline_t *pl = open_pipeline(c, &a);
    add_n(c, pl, 0, 100);
    cr_assert_eq(evbus_pipeline_wait(pl, err, sizeof err), 0, "a reply error is not a failure");
    evbus_pipeline_free(pl);
    cr_assert_eq(a.n, 100);
    cr_assert_eq(a.failed, 100);
    cr_assert(!a.out_of_order);
    cr_assert(strstr(a.first_error, "WRONGTYPE") != NULL, "error: %s", a.first_error);
    evbus_client_free(c);
}

Test(text, pipeline_connection_loss_reports_every_unanswered_event_once)
{
    char text[128];
    evbus_client_t *c = client();
    struct answers a = {0};
    char err[256];
    evbus_pipeline_t *pl = open_pipeline(c, &a);
    size_t added = 0;
    int rc = 0;
    for (int i = 0; i < 200000 && rc == 0; i++) {
        if (i == 1000)
            redis_ok("CLIENT KILL TYPE normal SKIPME yes");
        evbus_text_event_t ev;
        complete_n(c, i, &ev, text);
        rc = evbus_pipeline_add_text(pl, &ev, err, sizeof err);
        evbus_text_event_clear(&ev);
        if (rc == 0 || rc == EVBUS_CLIENT_EREDIS)
            added++;
    }
    if (rc == 0)
        rc = evbus_pipeline_wait(pl, err, sizeof err);
    cr_assert_eq(rc, EVBUS_CLIENT_EREDIS, "the killed connection went unnoticed");
    cr_assert(strstr(err, "redis: XADD") != NULL, "err: %s", err);
    cr_assert_eq(evbus_pipeline_unanswered(pl), 0);
    /* after the failure nothing more is taken */
    evbus_text_event_t ev;
    complete_n(c, 0, &ev, text);
    cr_assert_eq(evbus_pipeline_add_text(pl, &ev, err, sizeof err), EVBUS_CLIENT_EREDIS);
    evbus_text_event_clear(&ev);
    evbus_pipeline_free(pl);
    cr_assert_eq(a.n, added, "%zu answers for %zu events", a.n, added);
    cr_assert(!a.out_of_order);
    cr_assert_gt(a.failed, 0);
    /* what was answered OK is in the stream; Redis may also have appended
     * some whose replies the kill cut off */
    long long len = harness_redis_int(rc_, "XLEN %s", STREAM);
    cr_assert(len >= (long long)a.ok && len <= (long long)added, "XLEN %lld, %zu ok of %zu", len,
              a.ok, added);
    evbus_client_free(c);
}

Test(text, pipeline_freed_early_reports_what_it_never_read)
{
    char text[128];
    evbus_client_t *c = client();
    struct answers a = {0};
    evbus_pipeline_t *pl = open_pipeline(c, &a);
    add_n(c, pl, 0, 50);
    evbus_pipeline_free(pl);
    cr_assert_eq(a.n, 50);
    cr_assert(!a.out_of_order);
    /* the client reconnects for the next call */
    evbus_text_event_t ev;
    complete_n(c, 50, &ev, text);
    char sid[EVBUS_STREAM_ID_LEN];
    publish_text(c, &ev, sid);
    evbus_text_event_clear(&ev);
    evbus_client_free(c);
}

Test(text, pipeline_takes_json_events_completing_them_in_place)
{
    evbus_client_t *c = client();
    struct answers a = {0};
    char err[256];
    evbus_pipeline_t *pl = open_pipeline(c, &a);
    enum { N = 5000 };
    char first_id[64] = "";
    for (int i = 0; i < N; i++) {
        json_t *ev = i == 77 ? json_pack("{s:s, s:{}}", "type", "p.q", "data")
                             : json_pack("{s:s, s:s, s:{s:i}}", "type", "p.q", "tenantid", "t",
                                         "data", "i", i);
        int rc = evbus_pipeline_add(pl, ev, err, sizeof err);
        if (i == 77) {
            cr_expect_eq(rc, EVBUS_CLIENT_EINVAL);
            cr_expect(strstr(err, "tenantid") != NULL, "err: %s", err);
        } else {
            cr_assert_eq(rc, 0, "%s", err);
            /* completed in place: a retry would publish the same id */
            const char *id = json_string_value(json_object_get(ev, "id"));
            cr_assert(id && matches(UUID4_RE, id), "id: %s", id ? id : "(none)");
            if (i == 0)
                snprintf(first_id, sizeof first_id, "%s", id);
        }
        json_decref(ev); /* the pipeline keeps no reference */
    }
    cr_assert_eq(evbus_pipeline_wait(pl, err, sizeof err), 0, "%s", err);
    evbus_pipeline_free(pl);
    cr_expect_eq(a.n, N - 1, "the bad event gets no answer");
    cr_expect_eq(a.ok, N - 1);
    cr_expect(!a.out_of_order && !a.ids_not_increasing);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), N - 1);
    redisReply *r = redisCommand(rc_, "XRANGE %s - + COUNT 1", STREAM);
    cr_assert(r && r->elements == 1);
    cr_expect(strstr(r->element[0]->element[1]->element[1]->str, first_id) != NULL);
    freeReplyObject(r);
    evbus_client_free(c);
}
