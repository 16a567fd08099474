/*
 * pause — the Redis side of a handler pause, shared by evbusd (the engine
 * and the admin API) and evbusctl: the pause hash and the unpark sweep.
 * See "Handler pause" in evbus_client.h for the layout.
 *
 * It deliberately does not decide anything about deliveries: evbusd's
 * dispatch defers a paused instance's calls and its retry mover parks
 * their schedule entries (host/core/).  This file only writes the state
 * they read and gives parked entries back once the state says so.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client_internal.h"
#include "pause_lua.h"

/* Unpark up to ARGV[3] members of the parked range from offset ARGV[2]
 * whose instance is not paused.  Returns {examined, unparked, kept}: the
 * kept ones stay in the range, so the next batch starts `kept` further on.
 * Scores go back as integer text: Lua's tostring would print 15 digits
 * and round a parked score. */
static const char *UNPARK_LUA =
    EVBUS_PAUSE_LUA_FUNCS
    "local items = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'WITHSCORES', "
    "'LIMIT', ARGV[2], ARGV[3])\n"
    "local base = tonumber(ARGV[1])\n"
    "local unparked, kept = 0, 0\n"
    "for i = 1, #items, 2 do\n"
    "  local m = items[i]\n"
    "  if is_paused(m, KEYS[2]) then\n"
    "    kept = kept + 1\n"
    "  else\n"
    "    local due = tonumber(items[i + 1]) - base\n"
    "    redis.call('ZADD', KEYS[1], string.format('%.0f', due), m)\n"
    "    unparked = unparked + 1\n"
    "  end\n"
    "end\n"
    "return {#items / 2, unparked, kept}\n";

#define UNPARK_BATCH 500

int evbus_handler_name_check(const char *instance)
{
    size_t len = instance ? strlen(instance) : 0;
    if (len == 0 || len > 64)
        return -1;
    for (const char *s = instance; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
            return -1;
    return 0;
}

static int check_args(const char *stream, const char *instance, char *err, size_t errlen)
{
    if (!stream || !*stream)
        return evbus__fail(NULL, err, errlen, EVBUS_CLIENT_EINVAL, "no stream given");
    if (instance && evbus_handler_name_check(instance) != 0)
        return evbus__fail(NULL, err, errlen, EVBUS_CLIENT_EINVAL,
                           "'%.80s' is not an instance name (1 to 64 characters of a-z A-Z 0-9 "
                           "_ - .)", instance);
    return 0;
}

/* The reply r as an error code (consumes r when it is an error). */
static int reply_failed(redisContext *c, redisReply *r, const char *what, char *err,
                        size_t errlen)
{
    if (!r)
        return evbus__fail(NULL, err, errlen, EVBUS_CLIENT_EREDIS, "%s: %s", what,
                           c->errstr[0] ? c->errstr : "no reply");
    if (r->type == REDIS_REPLY_ERROR) {
        int rc = evbus__fail(NULL, err, errlen, EVBUS_CLIENT_EREDIS, "%s: %s", what, r->str);
        freeReplyObject(r);
        return rc;
    }
    return 0;
}

int evbus_handler_pause(redisContext *c, const char *stream, const char *instance,
                        const char *by, const char *reason, char *err, size_t errlen)
{
    int rc = check_args(stream, instance, err, errlen);
    if (rc != 0)
        return rc;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char since[32];
    evbus_time_now_rfc3339(since);
    json_t *rec = json_pack("{s:s, s:I, s:s, s:s}", "since", since, "since_ms",
                            (json_int_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, "by",
                            by ? by : "", "reason", reason ? reason : "");
    char *text = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
    json_decref(rec);
    if (!text)
        return evbus__fail(NULL, err, errlen, EVBUS_CLIENT_EINVAL, "out of memory");
    /* HSETNX: pausing twice keeps the first record, so `since` stays the
     * start of the pause */
    redisReply *r = redisCommand(c, "HSETNX %s:paused %s %s", stream, instance, text);
    free(text);
    if ((rc = reply_failed(c, r, "HSETNX", err, errlen)) != 0)
        return rc;
    rc = r->type == REDIS_REPLY_INTEGER && r->integer == 1 ? 1 : 0;
    freeReplyObject(r);
    return rc;
}

long long evbus_retry_unpark(redisContext *c, const char *stream, char *err, size_t errlen)
{
    int rc = check_args(stream, NULL, err, errlen);
    if (rc != 0)
        return rc;
    char retry_key[512], paused_key[512], base[32], offset[32], count[16];
    snprintf(retry_key, sizeof retry_key, "%s:retry", stream);
    snprintf(paused_key, sizeof paused_key, "%s:paused", stream);
    snprintf(base, sizeof base, "%lld", EVBUS_RETRY_PARKED_MS);
    snprintf(count, sizeof count, "%d", UNPARK_BATCH);
    long long skip = 0, total = 0;
    for (;;) {
        snprintf(offset, sizeof offset, "%lld", skip);
        const char *argv[] = {"EVAL", UNPARK_LUA, "2", retry_key, paused_key, base, offset, count};
        redisReply *r = redisCommandArgv(c, 8, argv, NULL);
        if ((rc = reply_failed(c, r, "unparking the retry schedule", err, errlen)) != 0)
            return rc;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
            freeReplyObject(r);
            return evbus__fail(NULL, err, errlen, EVBUS_CLIENT_EREDIS,
                               "unparking the retry schedule: unexpected reply");
        }
        long long examined = r->element[0]->integer;
        total += r->element[1]->integer;
        skip += r->element[2]->integer;
        freeReplyObject(r);
        if (examined < UNPARK_BATCH)
            return total;
    }
}

int evbus_handler_resume(redisContext *c, const char *stream, const char *instance,
                         long long *released, char *err, size_t errlen)
{
    if (released)
        *released = 0;
    int rc = check_args(stream, instance, err, errlen);
    if (rc != 0)
        return rc;
    redisReply *r = redisCommand(c, "HDEL %s:paused %s", stream, instance);
    if ((rc = reply_failed(c, r, "HDEL", err, errlen)) != 0)
        return rc;
    int was = r->type == REDIS_REPLY_INTEGER && r->integer == 1 ? 1 : 0;
    freeReplyObject(r);
    /* Once the field is gone no mover parks this instance again (it checks
     * the hash in the same script), so one sweep now finds every parked
     * entry of it.  Sweeping when it was not paused too heals a resume that
     * died between the two steps. */
    long long n = evbus_retry_unpark(c, stream, err, errlen);
    if (n < 0)
        return (int)n;
    if (released)
        *released = n;
    return was;
}

json_t *evbus_handler_pauses(redisContext *c, const char *stream, char *err, size_t errlen)
{
    if (check_args(stream, NULL, err, errlen) != 0)
        return NULL;
    redisReply *r = redisCommand(c, "HGETALL %s:paused", stream);
    if (reply_failed(c, r, "HGETALL", err, errlen) != 0)
        return NULL;
    json_t *out = json_object();
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        json_t *rec = json_loadb(v->str, v->len, 0, NULL);
        if (!json_is_object(rec)) {
            json_decref(rec);
            rec = json_pack("{s:s%}", "raw", v->str, v->len);
        }
        json_object_set_new(out, k->str, rec);
    }
    freeReplyObject(r);
    return out;
}

json_t *evbus_retry_parked_counts(redisContext *c, const char *stream, char *err,
                                  size_t errlen)
{
    if (check_args(stream, NULL, err, errlen) != 0)
        return NULL;
    json_t *out = json_object();
    char base[32];
    snprintf(base, sizeof base, "%lld", EVBUS_RETRY_PARKED_MS);
    for (long long off = 0;; off += 1000) {
        redisReply *r = redisCommand(c, "ZRANGEBYSCORE %s:retry %s +inf LIMIT %lld 1000", stream,
                                     base, off);
        if (reply_failed(c, r, "ZRANGEBYSCORE", err, errlen) != 0) {
            json_decref(out);
            return NULL;
        }
        size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
        for (size_t i = 0; i < n; i++) {
            const redisReply *m = r->element[i];
            const char *nl = m->type == REDIS_REPLY_STRING ? memchr(m->str, '\n', m->len) : NULL;
            json_t *meta = nl ? json_loadb(m->str, (size_t)(nl - m->str), 0, NULL) : NULL;
            const char *h = json_string_value(json_object_get(meta, "h"));
            char inst[80] = "?";
            if (h)
                snprintf(inst, sizeof inst, "%.*s", (int)strcspn(h, "/"), h);
            json_int_t was = json_integer_value(json_object_get(out, inst));
            json_object_set_new(out, inst, json_integer(was + 1));
            json_decref(meta);
        }
        freeReplyObject(r);
        if (n < 1000)
            return out;
    }
}
