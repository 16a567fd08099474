/*
 * dispatch — see dispatch.h.
 *
 * The event's status is decided once per delivery, by the verdict, after
 * every handler returned (or earlier, when the envelope, the route or the
 * schema already settle it): COMPLETED, RETRYING (some handler scheduled
 * for retry), DEAD_LETTERED or IGNORED.  Handlers never set it.  This file
 * gathers the facts and performs the verdict; it decides nothing itself.
 *
 * Per-handler retries: a handler that returns RETRY gets its own entry in
 * the retry schedule, naming it as the only target; the handlers that
 * succeeded are not called again.  When the retry is due it comes back
 * through the stream like any event, so the consumer group's at-least-once
 * guarantee covers retries too.
 *
 * Paused instances (core/pause.h): a handler whose instance is paused is
 * not called; it gets a schedule entry like a retry, due now and with the
 * same attempt, so a pause never spends an attempt.  The retry mover parks
 * such entries while the pause lasts (engine.c), so they do not loop.
 *
 * Per-key ordering (core/keyorder.h): for a handler with ordering:
 * per_key, an event whose key is held by an earlier event of that handler
 * is not called (HELD) but queued behind it; a retry or a pause deferral
 * makes the event its key's owner; the owner's end (done or dead-lettered)
 * releases the key.  Those writes join the chunk's owed writes, so they
 * land with the ack or not at all.
 */
#include "core/dispatch.h"
#include "core/crash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/evbus_client.h"
#include "core/verdict.h"
#include "plugin/plugin.h"
#include "schema/schema.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/strcopy.h"

void dctx_init(dctx_t *d, const dlink_t *link, const char *name)
{
    memset(d, 0, sizeof *d);
    d->link = link;
    snprintf(d->name, sizeof d->name, "%s", name);
    d->cache = router_cache_new();
    d->rand_state = (unsigned)(time(NULL) ^ (uintptr_t)d);
    atomic_init(&d->cur_handler, NULL);
    d->crash_slot = crash_slot_claim(name);
    if (jarena_init(&d->arena) == 0)
        d->ev.arena = &d->arena;
    event_reset(&d->ev);
}

void dctx_release(dctx_t *d)
{
    for (size_t i = 0; i < d->n_cmds; i++)
        redisFreeCommand(d->cmds[i]);
    free(d->cmds);
    free(d->cmd_lens);
    free(d->acks);
    free(d->ack_resp);
    store_pending_free(&d->meta);
    free(d->ahead);
    free(d->planned); /* every record was reset when its chunk ended */
    for (size_t i = 0; i < DCTX_PLAN_ARENAS; i++)
        jarena_destroy(&d->plan_arenas[i]);
    router_cache_free(d->cache);
    evbus_rconn_free(d->rc);
    event_reset(&d->ev);
    jarena_destroy(&d->arena);
    js_errors_clear(&d->jerrs);
    free(d->jerrs.items);
    memset(d, 0, sizeof *d);
}

void dctx_begin(dctx_t *d, generation_t *g) { d->gen = g; }

void dctx_set_link(dctx_t *d, const dlink_t *link)
{
    d->link = link;
    if (d->rc && evbus_rconn_is_cluster(d->rc))
        d->wc = NULL; /* another partition may live on another node */
}

void dctx_set_fence(dctx_t *d, long long epoch) { d->fence_epoch = epoch; }

/* ---- owed writes ------------------------------------------------------- */

static void add_cmd(dctx_t *d, int argc, const char **argv, const size_t *lens)
{
    char *cmd = NULL;
    long long n = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (n < 0 || !cmd) {
        log_error(d->name, "out of memory formatting a command");
        return;
    }
    if (d->n_cmds == d->cap_cmds) {
        d->cap_cmds = d->cap_cmds ? d->cap_cmds * 2 : 16;
        d->cmds = realloc(d->cmds, d->cap_cmds * sizeof *d->cmds);
        d->cmd_lens = realloc(d->cmd_lens, d->cap_cmds * sizeof *d->cmd_lens);
    }
    d->cmds[d->n_cmds] = cmd;
    d->cmd_lens[d->n_cmds++] = (size_t)n;
}

/* Appends "$<n>\r\n" to buf (room checked by the caller: 24 bytes). */
static size_t resp_len_prefix(char *buf, size_t n)
{
    char digits[24];
    size_t k = 0;
    do {
        digits[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    size_t off = 0;
    buf[off++] = '$';
    while (k)
        buf[off++] = digits[--k];
    buf[off++] = '\r';
    buf[off++] = '\n';
    return off;
}

static void add_ack(dctx_t *d, const char *id)
{
    size_t len = strlen(id);
    if (d->n_acks == d->cap_acks) {
        size_t cap = d->cap_acks ? d->cap_acks * 2 : 256;
        const char **acks = realloc(d->acks, cap * sizeof *acks);
        if (!acks) {
            log_error(d->name, "out of memory queueing the ack of %s: it stays pending", id);
            return;
        }
        d->acks = acks;
        d->cap_acks = cap;
    }
    if (d->ack_len + len + 32 > d->ack_cap) {
        size_t cap = d->ack_cap ? d->ack_cap * 2 : 8192;
        while (d->ack_len + len + 32 > cap)
            cap *= 2;
        char *resp = realloc(d->ack_resp, cap);
        if (!resp) {
            log_error(d->name, "out of memory queueing the ack of %s: it stays pending", id);
            return;
        }
        d->ack_resp = resp;
        d->ack_cap = cap;
    }
    d->acks[d->n_acks++] = id;
    char *p = d->ack_resp + d->ack_len;
    size_t off = resp_len_prefix(p, len);
    memcpy(p + off, id, len);
    off += len;
    p[off++] = '\r';
    p[off++] = '\n';
    d->ack_len += off;
}

static bool stopping(const dctx_t *d) { return d->link->stopping(d->link->owner); }

/* The write connection for the link's partition: on one server kept until
 * a failure, on a cluster asked for every time (the map decides). */
static bool ensure_wc(dctx_t *d)
{
    const dlink_t *l = d->link;
    if (d->wc && !l->redis_cluster)
        return true;
    for (;;) {
        char err[256];
        if (!d->rc)
            d->rc = evbus_rconn_new(l->redis_url, l->redis_cluster, l->connect_ms(l->owner),
                                    l->command_ms, err, sizeof err);
        if (d->rc) {
            evbus_rconn_set_connect_ms(d->rc, l->connect_ms(l->owner));
            d->wc = evbus_rconn_get(d->rc, l->stream, err, sizeof err);
        }
        if (d->wc)
            break;
        l->redis_failed(l->owner, err);
        if (stopping(d))
            return false;
        int64_t end = clock_mono_ms() + l->backoff_ms(l->owner);
        while (clock_mono_ms() < end && !stopping(d)) {
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    return true;
}

static void drop_wc(dctx_t *d, const char *what)
{
    char msg[300];
    snprintf(msg, sizeof msg, "%s: %s", what,
             !d->wc            ? "not connected"
             : d->wc->errstr[0] ? d->wc->errstr
                                : "redirected by the cluster");
    log_warn(d->name, "%s; reconnecting", msg);
    d->link->redis_failed(d->link->owner, msg);
    if (d->rc)
        evbus_rconn_reset(d->rc);
    d->wc = NULL;
    METRIC_INC(reconnects);
}

static void clear_owed(dctx_t *d)
{
    for (size_t i = 0; i < d->n_cmds; i++)
        redisFreeCommand(d->cmds[i]);
    d->n_cmds = 0;
    d->n_acks = 0;
    d->ack_len = 0;
}

#define FLUSH_FENCED (-2)
#define FLUSH_RACED 2

/*
 * Fencing (core/ownership.h): WATCH the partition's epoch key, then read
 * it.  1 when it still holds the epoch the entries were read under (the
 * WATCH stays on: the MULTI/EXEC that follows applies nothing if another
 * host acquires the partition in between), FLUSH_FENCED when another host
 * has it, 0 on a connection failure.
 */
static int fence_check(dctx_t *d)
{
    redisContext *c = d->wc;
    const char *key = d->link->epoch_key;
    redisAppendCommand(c, "WATCH %s", key);
    redisAppendCommand(c, "GET %s", key);
    long long now = -1;
    int rc = 1;
    for (int i = 0; i < 2; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r)
            return 0;
        if (r->type == REDIS_REPLY_ERROR && evbus_rconn_is_redirect(r)) {
            log_warn(d->name, "checking the fencing epoch %s: %s", key, r->str);
            rc = 0; /* read the map, retry */
        } else if (r->type == REDIS_REPLY_ERROR) {
            log_error(d->name, "checking the fencing epoch %s: %s", key, r->str);
            rc = -1;
        } else if (i == 1) {
            now = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
        }
        freeReplyObject(r);
    }
    if (rc == 1 && now == d->fence_epoch)
        return 1;
    if (rc == 0)
        return 0;
    redisReply *u = redisCommand(c, "UNWATCH");
    if (!u)
        return 0;
    freeReplyObject(u);
    if (rc == -1)
        return -1;
    int64_t t = clock_mono_ms();
    if (t - d->fence_warned_ms >= 10000) { /* at most every 10 s: it says it per chunk */
        d->fence_warned_ms = t;
        log_warn(d->name, "%s was taken over (epoch %lld, ours %lld): %zu acknowledgement%s and "
                 "%zu other write%s not made; the new owner claims those entries "
                 "(evbus_fenced_writes_total)", d->link->stream, now, d->fence_epoch, d->n_acks,
                 d->n_acks == 1 ? "" : "s", d->n_cmds, d->n_cmds == 1 ? "" : "s");
    }
    return FLUSH_FENCED;
}

/* Send the owed writes once.  1 done, 0 connection failure (retry), -1
 * the server refused them (they will never apply: give up), FLUSH_FENCED
 * another host owns the partition now (give up), FLUSH_RACED the epoch
 * changed between the check and EXEC (check again). */
static int flush_once(dctx_t *d)
{
    redisContext *c = d->wc;
    bool fenced = d->link->epoch_key != NULL;
    if (fenced) {
        int f = fence_check(d);
        if (f != 1)
            return f;
    }
    /* XACK stream group id...: the head formatted here, the ids as
     * add_ack wrote them */
    const char *stream = d->link->stream, *group = d->link->group;
    char *xack = NULL;
    size_t xlen = 0;
    if (d->n_acks) {
        size_t sl = strlen(stream), gl = strlen(group);
        xack = malloc(96 + sl + gl + d->ack_len);
        if (!xack)
            return 0; /* out of memory: retried like a lost connection */
        xlen = (size_t)sprintf(xack, "*%zu\r\n$4\r\nXACK\r\n", d->n_acks + 3);
        xlen += resp_len_prefix(xack + xlen, sl);
        memcpy(xack + xlen, stream, sl);
        xlen += sl;
        xack[xlen++] = '\r';
        xack[xlen++] = '\n';
        xlen += resp_len_prefix(xack + xlen, gl);
        memcpy(xack + xlen, group, gl);
        xlen += gl;
        xack[xlen++] = '\r';
        xack[xlen++] = '\n';
        memcpy(xack + xlen, d->ack_resp, d->ack_len);
        xlen += d->ack_len;
    }
    bool multi = d->n_cmds > 0 || fenced;
    size_t expect = 0;
    if (multi) {
        redisAppendCommand(c, "MULTI");
        expect++;
        for (size_t i = 0; i < d->n_cmds; i++)
            redisAppendFormattedCommand(c, d->cmds[i], d->cmd_lens[i]);
        expect += d->n_cmds;
    }
    if (xack) {
        redisAppendFormattedCommand(c, xack, xlen);
        expect++;
    }
    if (multi) {
        redisAppendCommand(c, "EXEC");
        expect++;
    }
    free(xack);
    int rc = 1;
    for (size_t i = 0; i < expect; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r)
            return 0;
        bool last = i + 1 == expect;
        if (r->type == REDIS_REPLY_ERROR && evbus_rconn_is_redirect(r)) {
            /* the slot moved or the cluster is not ready: nothing (or,
             * in MULTI, nothing at all: EXECABORT) applied; the same
             * writes again after the map is read */
            log_warn(d->name, "owed writes redirected: %s", r->str);
            if (rc == 1)
                rc = 0;
        } else if (r->type == REDIS_REPLY_ERROR && rc == 0) {
            /* after a redirect in the same group: EXECABORT */
        } else if (r->type == REDIS_REPLY_ERROR) {
            log_error(d->name, "Redis refused owed writes: %s", r->str);
            rc = -1;
        } else if (fenced && last && r->type == REDIS_REPLY_NIL && rc == 1) {
            rc = FLUSH_RACED; /* the WATCHed epoch changed: nothing was applied */
        } else if (multi && last && r->type != REDIS_REPLY_ARRAY) {
            log_error(d->name, "MULTI/EXEC was aborted");
            rc = -1;
        }
        freeReplyObject(r);
    }
    return rc;
}

/* End-to-end latency of the entries just acknowledged (now minus the
 * time in their stream id), binned here so the chunk costs one atomic add
 * per bucket, and the time of this acknowledgement. */
static void observe_acked(const dctx_t *d)
{
    if (!d->n_acks)
        return;
    int64_t now = clock_wall_ms();
    uint64_t counts[METRICS_HIST_MAX_BOUNDS + 1] = {0}, sum = 0;
    for (size_t i = 0; i < d->n_acks; i++) {
        /* The id's milliseconds, digits up to '-': strtoll's locale and
         * overflow handling cost ten times this loop, once per event. */
        int64_t t = 0;
        for (const char *c = d->acks[i]; *c >= '0' && *c <= '9' && t < INT64_MAX / 10 - 9; c++)
            t = t * 10 + (*c - '0');
        int64_t ms = now - t;
        if (ms < 0)
            ms = 0; /* another host's clock ahead of ours */
        counts[metrics_latency_bucket(ms)]++;
        sum += (uint64_t)ms;
    }
    metrics_latency_add(counts, sum);
    SAMPLED_SET(last_processed_ms, now);
}

/*
 * redis.wait_replicas: after the owed writes landed, WAIT until that many
 * replicas have them, bounded by redis.wait_timeout_ms.  A shortfall is
 * counted and logged, never an error: the writes are on the master, and
 * sending them again would not make replication synchronous.  Nor is a
 * lost connection here a failed flush (the next flush reconnects).
 */
static void wait_replicas(dctx_t *d)
{
    if (!d->gen || !d->wc || !d->gen->cfg->core.redis_wait_replicas)
        return;
    const core_settings_t *core = &d->gen->cfg->core;
    METRIC_INC(redis_waits);
    redisReply *r = redisCommand(d->wc, "WAIT %u %u", core->redis_wait_replicas,
                                 core->redis_wait_timeout_ms);
    long long got = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r && r->type == REDIS_REPLY_ERROR)
        log_warn(d->name, "WAIT %u: %s", core->redis_wait_replicas, r->str);
    if (r)
        freeReplyObject(r);
    else
        drop_wc(d, "WAIT");
    if (got < (long long)core->redis_wait_replicas) {
        METRIC_INC(redis_wait_short);
        /* once a minute at most: a missing replica would say it per chunk */
        int64_t now = clock_mono_ms();
        if (now - d->wait_warned_ms >= 60000) {
            d->wait_warned_ms = now;
            log_warn(d->name, "only %lld of %u replicas confirmed the acks and dead letters "
                     "within %u ms (redis.wait_replicas; counted in "
                     "evbus_redis_wait_short_total)", got < 0 ? 0 : got,
                     core->redis_wait_replicas, core->redis_wait_timeout_ms);
        }
    }
}

void dctx_flush(dctx_t *d)
{
    /* One lock on the writer's queue per chunk instead of one per event. */
    store_writer_submit_pending(d->link->metadata(d->link->owner), &d->meta);
    if (!d->n_cmds && !d->n_acks)
        return;
    for (;;) {
        if (!ensure_wc(d)) {
            log_warn(d->name, "stopping: %zu entr%s left pending for redelivery", d->n_acks,
                     d->n_acks == 1 ? "y" : "ies");
            break;
        }
        int rc = flush_once(d);
        if (rc == 1) {
            METRIC_ADD(events_acked, d->n_acks);
            observe_acked(d);
            d->link->redis_recovered(d->link->owner);
            wait_replicas(d);
            break;
        }
        if (rc == -1)
            break; /* entries stay pending; reclaim redelivers them */
        if (rc == FLUSH_FENCED) {
            METRIC_ADD(fenced_writes, d->n_acks + d->n_cmds);
            d->link->redis_recovered(d->link->owner);
            break; /* entries stay pending; their new owner claims them */
        }
        if (rc == FLUSH_RACED)
            continue;
        drop_wc(d, "writing acks");
        if (stopping(d))
            continue; /* one more attempt through ensure_wc, which gives up */
    }
    clear_owed(d);
}

/* ---- helpers -------------------------------------------------------------- */

static const char *field(const redisReply *fv, const char *name, size_t *len)
{
    if (!fv || fv->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t k = 0; k + 1 < fv->elements; k += 2)
        if (fv->element[k]->type == REDIS_REPLY_STRING && strcmp(fv->element[k]->str, name) == 0) {
            if (len)
                *len = fv->element[k + 1]->len;
            return fv->element[k + 1]->str;
        }
    return NULL;
}

static double rnd01(dctx_t *d)
{
    return (double)(rand_r(&d->rand_state) % 1000000) / 1000000.0;
}

static void metadata(dctx_t *d, const struct evbus_event *ev)
{
    store_writer_t *w = d->link->metadata(d->link->owner);
    if (!w || ev->is_replay || !ev->id)
        return;
    store_status_t st = ev->status == EV_STATUS_COMPLETED       ? STORE_COMPLETED
                        : ev->status == EV_STATUS_RETRYING      ? STORE_RETRYING
                        : ev->status == EV_STATUS_DEAD_LETTERED ? STORE_DEAD_LETTERED
                        : ev->status == EV_STATUS_IGNORED       ? STORE_IGNORED
                                                                : STORE_PROCESSING;
    char outcomes[2048];
    event_outcomes_json(ev, outcomes, sizeof outcomes);
    store_update_t u = {
        .id = ev->id,
        .type = ev->type,
        .tenant = ev->tenant,
        .correlation_id = ev->correlation_id,
        .source = ev->source,
        .stream_id = ev->orig_sid[0] ? ev->orig_sid : ev->stream_id,
        .schema_version = ev->schema_version,
        .status = st,
        .attempts = ev->attempt,
        .last_error = ev->error[0] ? ev->error : NULL,
        .handler_outcomes_json = outcomes,
        .timestamp_ms = clock_wall_ms(),
    };
    store_pending_add(&d->meta, &u);
}

/* s cut to at most max bytes at a character boundary, as a JSON string;
 * text that is not UTF-8 (a handler's reason can be any bytes, and %.Ns
 * cuts mid-character) keeps its ASCII and shows '?' for the rest. */
static json_t *error_text(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    json_t *j = json_stringn(s, n);
    if (j)
        return j;
    char buf[EVBUS_DLQ_ERROR_MAX + 1];
    n = n < sizeof buf - 1 ? n : sizeof buf - 1;
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    return json_stringn(buf, n);
}

/*
 * The event's earlier attempts' errors (its retry metadata's "ae") and one
 * more, the newest EVBUS_DLQ_ERRORS_MAX kept: what the next retry member
 * and the dead letter carry.  Only a failing attempt calls it: a success
 * never builds the list.  New array; caller decrefs.
 */
static json_t *attempt_errors_plus(const struct evbus_event *ev, int attempt,
                                   const char *handler, const char *error)
{
    json_t *a = json_array();
    size_t n = json_array_size(ev->attempt_errors);
    size_t skip = n + 1 > EVBUS_DLQ_ERRORS_MAX ? n + 1 - EVBUS_DLQ_ERRORS_MAX : 0;
    for (size_t i = skip; i < n; i++)
        json_array_append(a, json_array_get(ev->attempt_errors, i));
    char at[CLOCK_RFC3339_LEN];
    json_array_append_new(a, json_pack("{s:i, s:o, s:s, s:o}", "attempt", attempt, "handler",
                                       handler ? json_string(handler) : json_null(), "at",
                                       clock_rfc3339(clock_wall_ms(), at), "error",
                                       error_text(error, EVBUS_DLQ_ERROR_MAX)));
    return a;
}

/* Queue the dead letter for ev: original bytes unchanged plus provenance. */
static void dead_letter(dctx_t *d, struct evbus_event *ev, evbus_dlq_reason_t why)
{
    const char *reason = evbus_dlq_reason_name(why);
    char handlers[2048] = "[";
    size_t hl = 1;
    for (size_t i = 0; i < ev->n_failed && hl < sizeof handlers - 4; i++) {
        int n = snprintf(handlers + hl, sizeof handlers - hl, "%s\"%s\"", i ? "," : "",
                         ev->failed[i]);
        if (n > 0)
            hl += (size_t)n;
    }
    snprintf(handlers + (hl < sizeof handlers - 2 ? hl : sizeof handlers - 2), 2, "]");
    char attempts[16], first[CLOCK_RFC3339_LEN], last[CLOCK_RFC3339_LEN];
    int64_t now = clock_wall_ms();
    snprintf(attempts, sizeof attempts, "%d", ev->attempt > 0 ? ev->attempt : 1);
    clock_rfc3339(ev->first_failure_ms ? ev->first_failure_ms : now, first);
    clock_rfc3339(now, last);
    const char *sid = ev->orig_sid[0] ? ev->orig_sid : (ev->stream_id ? ev->stream_id : "");
    json_t *errs = attempt_errors_plus(ev, ev->attempt > 0 ? ev->attempt : 1,
                                       ev->n_failed ? ev->failed[ev->n_failed - 1] : NULL,
                                       ev->error);
    char *errs_json = json_dumps(errs, JSON_COMPACT);
    json_decref(errs);
    const char *argv[40];
    size_t lens[40];
    int argc = 0;
#define ARG(s, l)                                                                              \
    do {                                                                                       \
        argv[argc] = (s);                                                                      \
        lens[argc++] = (l);                                                                    \
    } while (0)
#define SARG(s) ARG((s), strlen(s))
    SARG("XADD");
    SARG(d->link->dlq_stream);
    SARG("*");
    SARG("event");
    ARG(ev->raw ? ev->raw : "", ev->raw ? ev->raw_len : 0);
    SARG("stream");
    SARG(d->link->stream);
    SARG("id");
    SARG(sid);
    SARG("event_id");
    SARG(ev->id ? ev->id : "");
    SARG("type");
    SARG(ev->type ? ev->type : "");
    SARG("tenant");
    SARG(ev->tenant ? ev->tenant : "");
    SARG("reason");
    SARG(reason);
    SARG("handlers");
    SARG(handlers);
    SARG("attempts");
    SARG(attempts);
    SARG("error");
    SARG(ev->error);
    SARG("first_failure");
    SARG(first);
    SARG("last_failure");
    SARG(last);
    SARG("attempt_errors");
    SARG(errs_json ? errs_json : "[]");
    if (ev->replay_job) {
        SARG("replay_job");
        SARG(ev->replay_job);
    }
#undef SARG
#undef ARG
    add_cmd(d, argc, argv, lens);
    free(errs_json);
    METRIC_INC(dlq_written);
    ev->status = EV_STATUS_DEAD_LETTERED;
    ev->dlq_reason = why;
    log_event(LOG_WARN, d->name, ev->id, ev->type, ev->tenant, NULL,
              "event %s (%s, entry %s) dead-lettered: %s: %s", ev->id ? ev->id : "?",
              ev->type ? ev->type : "?", sid, reason, ev->error);
}

/* A schedule member delivering ev to h at `attempt`: "<meta json>\n<raw
 * event>" (malloc'd, *len its length).  key_owner: the delivery owns the
 * event's key for h (core/keyorder.h). */
static char *schedule_member(const struct evbus_event *ev, const gen_handler_t *h, int attempt,
                             int64_t first_failure_ms, const char *error, bool key_owner,
                             size_t *len)
{
    json_t *meta = json_pack("{s:s, s:i, s:I, s:s, s:s}", "h", h->name, "a", attempt, "ff",
                             (json_int_t)first_failure_ms, "sid",
                             ev->orig_sid[0] ? ev->orig_sid : ev->stream_id, "err",
                             error ? error : "");
    if (ev->replay_job)
        json_object_set_new(meta, "rj", json_string(ev->replay_job));
    /* every failed attempt's error travels with the retry to the dead
     * letter; a deferral (no error) carries the earlier ones as they are */
    if (error)
        json_object_set_new(meta, "ae", attempt_errors_plus(ev, ev->attempt, h->name, error));
    else if (ev->attempt_errors)
        json_object_set(meta, "ae", ev->attempt_errors);
    if (key_owner)
        json_object_set_new(meta, "ko", json_integer(1));
    char *m = json_dumps(meta, JSON_COMPACT);
    json_decref(meta);
    size_t ml = strlen(m);
    char *member = malloc(ml + 1 + ev->raw_len);
    memcpy(member, m, ml);
    member[ml] = '\n';
    memcpy(member + ml + 1, ev->raw, ev->raw_len);
    free(m);
    *len = ml + 1 + ev->raw_len;
    return member;
}

/* Queue a delivery of one handler at `attempt`, due delay_ms from now,
 * scored by its due time.  first_failure_ms 0: none yet (a deferral of a
 * paused handler that never failed). */
static void schedule(dctx_t *d, struct evbus_event *ev, const gen_handler_t *h, int attempt,
                     int64_t first_failure_ms, const char *error, int64_t delay_ms,
                     bool key_owner)
{
    int64_t now = clock_wall_ms();
    size_t len;
    char *member = schedule_member(ev, h, attempt, first_failure_ms, error, key_owner, &len);
    char due[32];
    snprintf(due, sizeof due, "%lld", (long long)(now + delay_ms));
    const char *argv[4] = {"ZADD", d->link->retry_key, due, member};
    size_t lens[4] = {4, strlen(argv[1]), strlen(due), len};
    add_cmd(d, 4, argv, lens);
    free(member);
}

/* A retry after this attempt failed: the next attempt, delay_ms from now. */
static void schedule_retry(dctx_t *d, struct evbus_event *ev, const gen_handler_t *h,
                           const char *error, int64_t delay_ms, bool key_owner)
{
    schedule(d, ev, h, ev->attempt + 1,
             ev->first_failure_ms ? ev->first_failure_ms : clock_wall_ms(), error, delay_ms,
             key_owner);
    METRIC_INC(retries_scheduled);
}

/* ---- per-key ordering (core/keyorder.h) -------------------------------- */

static void emit_cmd(void *d, int argc, const char **argv, const size_t *lens)
{
    add_cmd(d, argc, argv, lens);
}

/* The event's ordering key, read once per event; NULL when it has none. */
static const keyorder_key_t *event_key(dctx_t *d, const struct evbus_event *ev)
{
    if (d->key_state == 0)
        d->key_state = keyorder_key_of(ev->raw, ev->raw_len, &d->key) == 0 ? 1 : -1;
    return d->key_state == 1 ? &d->key : NULL;
}

/* This delivery owns its key for h: it was scheduled again as the owner. */
static bool owns_key(const dctx_t *d, const struct evbus_event *ev, const char *handler)
{
    return d->link->keys && !ev->is_replay && ev->key_owner && ev->retry_target &&
           strcmp(ev->retry_target, handler) == 0;
}

/* Whether h's delivery of ev keeps its key's order: h is per_key, or the
 * delivery owns the key (a reload that turned ordering off still hands
 * the key on to the events queued behind it). */
static bool keeps_order(const dctx_t *d, const struct evbus_event *ev, const gen_handler_t *h)
{
    return d->link->keys && !ev->is_replay && (h->per_key || owns_key(d, ev, h->name));
}

/* h must not run ev yet: an earlier event of its key holds the key. */
static bool held_back(dctx_t *d, const struct evbus_event *ev, const gen_handler_t *h)
{
    if (!d->link->keys || !h->per_key || ev->is_replay || owns_key(d, ev, h->name))
        return false;
    if (keyorder_held_total(d->link->keys) == 0)
        return false; /* nothing held anywhere: no need to read the key */
    const keyorder_key_t *k = event_key(d, ev);
    return k && keyorder_held(d->link->keys, h->name, k);
}

/* ev was scheduled again for h as its key's owner: hold the key. */
static void hold_key(dctx_t *d, const struct evbus_event *ev, const gen_handler_t *h)
{
    const keyorder_key_t *k = event_key(d, ev);
    if (k && keyorder_hold(d->link->keys, h->name, k, emit_cmd, d) != 0)
        log_warn(d->name, "event %s: the per-key table is full (%zu keys held); key '%.*s' of "
                 "%s is not held, its later events may overtake this retry",
                 ev->id ? ev->id : "?", keyorder_held_total(d->link->keys), (int)k->len, k->text,
                 h->name);
}

/* ev's owner delivery for `handler` is over: hand its key on. */
static void release_key(dctx_t *d, const struct evbus_event *ev, const char *handler)
{
    const keyorder_key_t *k = event_key(d, ev);
    if (k)
        keyorder_release(d->link->keys, handler, k, emit_cmd, d);
}

/* ev waits behind its key's owner for h: queue it, same attempt. */
static void queue_behind_key(dctx_t *d, struct evbus_event *ev, const gen_handler_t *h)
{
    const keyorder_key_t *k = event_key(d, ev);
    size_t len;
    char *member = schedule_member(ev, h, ev->attempt, ev->first_failure_ms, NULL, true, &len);
    keyorder_enqueue(d->link->keys, h->name, k, member, len, emit_cmd, d);
    free(member);
    log_debug(d->name, "event %s (%s): key '%.*s' of %s is held by an earlier event; queued "
              "behind it (attempt %d kept)", ev->id ? ev->id : "?", ev->type ? ev->type : "?",
              (int)k->len, k->text, h->name, ev->attempt);
}

/* Data at `target` version, upcasting through the generation's chain. */
static json_t *data_at_version(dctx_t *d, struct evbus_event *ev, int target, char *err,
                               size_t errlen)
{
    json_t *base = json_object_get(ev->env, "data");
    if (target <= ev->schema_version)
        return base;
    size_t idx = (size_t)(target - ev->schema_version - 1);
    if (idx >= sizeof ev->data_versions / sizeof ev->data_versions[0]) {
        snprintf(err, errlen, "cannot upcast %s over more than 8 versions", ev->type);
        return NULL;
    }
    if (ev->data_versions[idx])
        return ev->data_versions[idx];
    json_t *prev = data_at_version(d, ev, target - 1, err, errlen);
    if (!prev)
        return NULL;
    evbus_upcast_fn fn = generation_find_upcaster(d->gen, ev->type, target - 1);
    if (!fn) {
        snprintf(err, errlen, "no upcaster for %s version %d to %d", ev->type, target - 1, target);
        return NULL;
    }
    char *in = json_dumps(prev, JSON_COMPACT | JSON_ENCODE_ANY);
    struct evbus_buf out = {0};
    char uerr[256] = "";
    int rc = fn(event_host_api(), in ? in : "null", in ? strlen(in) : 4, &out, uerr, sizeof uerr);
    free(in);
    json_t *v = NULL;
    if (rc == 0 && out.data) {
        json_error_t jerr;
        v = json_loadb(out.data, out.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        if (!v)
            snprintf(err, errlen, "upcaster %s v%d->v%d produced invalid JSON: %s", ev->type,
                     target - 1, target, jerr.text);
    } else {
        snprintf(err, errlen, "upcaster %s v%d->v%d failed: %s", ev->type, target - 1, target,
                 uerr[0] ? uerr : "no output");
    }
    free(out.data);
    ev->data_versions[idx] = v;
    return v;
}

/* Which version handler h must see: the event's own when accepted, else
 * the smallest accepted newer one.  0 with err when none is reachable. */
static int target_version(const gen_handler_t *h, int v, char *err, size_t errlen)
{
    if (!h->n_versions || v == 0)
        return v;
    int best = 0;
    for (size_t i = 0; i < h->n_versions; i++) {
        if (h->versions[i] == v)
            return v;
        if (h->versions[i] > v && (!best || h->versions[i] < best))
            best = h->versions[i];
    }
    if (!best)
        snprintf(err, errlen, "handler %s accepts no version at or above %d", h->name, v);
    return best;
}

/* Redis SET NX EX for opt-in dedup.  1 = first time (call the handler),
 * 0 = seen within the TTL (skip), -1 = Redis failed (call: at-least-once
 * wins over dedup). */
static int dedup_claim(dctx_t *d, const struct evbus_event *ev, const gen_handler_t *h)
{
    if (!ensure_wc(d))
        return -1;
    redisReply *r = redisCommand(d->wc, "SET %s:%s:%s:%s 1 NX EX %u", d->link->dedup_prefix,
                                 d->link->group, h->name, ev->id, h->dedup_ttl_s);
    if (!r) {
        drop_wc(d, "dedup SET");
        return -1;
    }
    int rc = r->type == REDIS_REPLY_NIL ? 0 : r->type == REDIS_REPLY_STATUS ? 1 : -1;
    freeReplyObject(r);
    return rc;
}

static void dedup_release(dctx_t *d, const struct evbus_event *ev, const gen_handler_t *h)
{
    if (!d->wc)
        return;
    redisReply *r =
        redisCommand(d->wc, "DEL %s:%s:%s:%s", d->link->dedup_prefix, d->link->group, h->name,
                     ev->id);
    if (r)
        freeReplyObject(r);
    else
        drop_wc(d, "dedup DEL");
}

/* The call of h made ahead for the entry being dispatched, if any.  A
 * call made ahead whose handler dispatch then skips (paused meanwhile) is
 * passed over, never matched to another handler or entry. */
static struct dctx_ahead *find_ahead(dctx_t *d, const gen_handler_t *h)
{
    while (d->next_ahead < d->n_ahead && d->ahead[d->next_ahead].entry + 1 < d->cur_entry)
        d->next_ahead++;
    for (size_t j = d->next_ahead;
         d->cur_entry && j < d->n_ahead && d->ahead[j].entry + 1 == d->cur_entry; j++)
        if (d->ahead[j].h == h && !d->ahead[j].taken)
            return &d->ahead[j];
    return NULL;
}

/*
 * Call h.  The timeout never multiplies side effects: the call is never
 * interrupted and its entry stays leased while it runs, so no second call
 * of h on this event starts meanwhile; a late call that returns OK counts
 * as OK (logged and counted as late), and only a late RETRY becomes the
 * timeout's retry.  A late REJECT stays the handler's REJECT.
 */
static verdict_result_t call_handler(dctx_t *d, struct evbus_event *ev, const gen_handler_t *h,
                                     char *reason, size_t reason_len)
{
    int64_t start = clock_coarse_ms();
    atomic_store(&d->cur_timeout_ms, h->timeout_ms);
    atomic_store(&d->cur_reported, false);
    atomic_store(&d->cur_start_ms, start);
    ev->deadline_ms = h->timeout_ms ? start + h->timeout_ms : 0;
    crash_slot_enter(d->crash_slot, h->name, ev->id,
                     ev->orig_sid[0] ? ev->orig_sid : ev->stream_id);
    atomic_store(&d->cur_handler, h->name);
    evbus_result_t r;
    int64_t ran_ms = -1;
    struct dctx_ahead *ahead;
    if (h->kind == GEN_HANDLER_FOREIGN) {
        /* foreign parameters point into the envelope: show them the data at
         * the version this subscription takes, then put the original back */
        json_t *orig = json_object_get(ev->env, "data");
        bool swap = orig && ev->data && ev->data != orig;
        /* the envelope lives in the arena: so must anything jansson
         * allocates while it is edited (a rehash of its buckets) */
        if (swap) {
            json_incref(orig);
            jarena_enter(ev->arena);
            json_object_set(ev->env, "data", ev->data);
            jarena_leave();
        }
        r = ffih_call(h->ffi, ev->env, ev, reason, reason_len);
        if (swap) {
            jarena_enter(ev->arena);
            json_object_set(ev->env, "data", orig);
            jarena_leave();
            json_decref(orig);
        }
    } else if ((ahead = find_ahead(d, h)) != NULL) {
        /* made ahead with the chunk's other calls: its outcome, and how
         * long it ran in the child */
        const char *said = NULL;
        ahead->taken = true;
        r = plugin_call_outcome(h->inst, ahead->call, &said, &ran_ms);
        str_copy(reason, reason_len, said);
    } else if (plugin_instance_is_remote(h->inst)) {
        /* isolated, alone: the same steps with one call */
        bool own = ev->env && ev->data == json_object_get(ev->env, "data");
        void *call = plugin_call_prepare(h->inst, h->sub, ev, own ? PLUGIN_CALL_OWN_DATA : 0);
        plugin_call_run(h->inst, &call, 1);
        const char *said = NULL;
        r = plugin_call_outcome(h->inst, call, &said, NULL);
        str_copy(reason, reason_len, said);
        plugin_call_release(h->inst, call);
    } else {
        /* api->set_reason writes straight into why[] of this handler */
        ev->reason = reason;
        ev->reason_len = reason_len;
        r = plugin_instance_call(h->inst, h->sub, ev);
        ev->reason = NULL;
        ev->reason_len = 0;
    }
    int64_t took = ran_ms >= 0 ? ran_ms : clock_coarse_ms() - atomic_load(&d->cur_start_ms);
    metrics_handler_duration_ms(h->metrics_slot, took);
    crash_slot_leave(d->crash_slot);
    atomic_store(&d->cur_handler, NULL);
    ev->deadline_ms = 0;
    if (h->timeout_ms && took > (int64_t)h->timeout_ms) {
        METRIC_INC(handler_timeout);
        if (r == EVBUS_OK) {
            METRIC_INC(handler_late_ok);
            log_event(LOG_WARN, d->name, ev->id, ev->type, ev->tenant, h->name,
                      "handler %s took %lld ms on event %s (timeout %u ms): late, but it "
                      "succeeded: counted as OK, not retried", h->name, (long long)took, ev->id,
                      h->timeout_ms);
            return VERDICT_RESULT_OK;
        }
        if (r == EVBUS_REJECT) {
            log_event(LOG_WARN, d->name, ev->id, ev->type, ev->tenant, h->name,
                      "handler %s took %lld ms on event %s (timeout %u ms) and rejected "
                      "it", h->name, (long long)took, ev->id, h->timeout_ms);
            return VERDICT_RESULT_REJECT;
        }
        log_event(LOG_WARN, d->name, ev->id, ev->type, ev->tenant, h->name,
                  "handler %s took %lld ms on event %s (timeout %u ms) and failed: "
                  "counted as a timeout (retry)", h->name, (long long)took, ev->id,
                  h->timeout_ms);
        char said[320];
        snprintf(said, sizeof said, "%s", reason);
        snprintf(reason, reason_len, "timed out after %lld ms (limit %u ms)%s%.300s",
                 (long long)took, h->timeout_ms, said[0] ? ": " : "", said);
        return VERDICT_RESULT_TIMEOUT;
    }
    return r == EVBUS_OK       ? VERDICT_RESULT_OK
           : r == EVBUS_REJECT ? VERDICT_RESULT_REJECT
                               : VERDICT_RESULT_RETRY;
}

void dctx_check_overrun(dctx_t *d, int64_t now)
{
    const char *h = atomic_load(&d->cur_handler);
    unsigned limit = atomic_load(&d->cur_timeout_ms);
    if (!h || !limit || atomic_load(&d->cur_reported))
        return;
    int64_t ran = now - atomic_load(&d->cur_start_ms);
    if (ran > (int64_t)limit) {
        atomic_store(&d->cur_reported, true);
        log_warn("watchdog", "%s: handler %s has been running for %lld ms (timeout %u ms); its "
                 "entries stay leased", d->name, h, (long long)ran, limit);
    }
}

/* ---- facts ------------------------------------------------------------- */

/* The handlers matching ev (a retry: only its own), lowest priority number
 * first, into hs and their facts into hin.  Returns how many. */
static size_t route(dctx_t *d, const struct evbus_event *ev, const gen_handler_t **hs,
                    verdict_handler_in_t *hin)
{
    size_t n = 0;
    router_list_t lst = router_match(d->gen->router, d->cache, ev->type);
    if (lst.count > EVENT_MAX_HANDLERS && !d->warned_too_many) {
        d->warned_too_many = true; /* once per thread, not per event */
        log_warn(d->name, "%zu handlers match %s; only the first %d (by priority) run",
                 lst.count, ev->type, EVENT_MAX_HANDLERS);
    }
    for (size_t i = 0; i < lst.count && n < EVENT_MAX_HANDLERS; i++) {
        const gen_handler_t *h = lst.items[i].target;
        if (ev->retry_target && strcmp(h->name, ev->retry_target) != 0)
            continue;
        hin[n] = (verdict_handler_in_t){.schema_mode = h->schema_mode, .retry = &h->retry};
        hs[n++] = h;
    }
    return n;
}

/* The schema facts: the version claim, what the catalog has, and, when a
 * matching handler checks schemas, whether the payload is valid (the
 * validation errors go to ev->error).  Resolves ev->schema_version. */
static void learn_schema(dctx_t *d, struct evbus_event *ev, verdict_input_t *in)
{
    const generation_t *g = d->gen;
    in->known = VERDICT_KNOWN_SCHEMA;
    in->unknown_type_rejects = g->cfg->schema.unknown == SCHEMA_UNKNOWN_REJECT;
    in->claimed_version = schema_claimed_version(ev->schemaversion, ev->dataschema, ev->type);
    if (in->claimed_version < 0)
        return;
    const js_schema_t *schema;
    in->latest_version =
        schema_catalog_find(g->schemas, ev->type, in->claimed_version, &schema);
    if (in->latest_version == 0) {
        ev->schema_version = in->claimed_version;
        return;
    }
    ev->schema_version = in->claimed_version ? in->claimed_version : in->latest_version;
    in->schema_found = schema != NULL;
    bool any_check = false;
    for (size_t i = 0; i < in->n_handlers; i++)
        any_check |= in->handlers[i].schema_mode != SCHEMA_MODE_OFF;
    if (!schema || !any_check)
        return; /* validating costs: only for a handler that looks at the result */
    json_t *data = ev->data ? ev->data : json_null();
    if (js_validate(schema, data, NULL, 0)) {
        in->data = VERDICT_DATA_VALID;
        return;
    }
    in->data = VERDICT_DATA_INVALID;
    js_errors_clear(&d->jerrs);
    js_validate(schema, data, &d->jerrs, 1);
    char msg[sizeof ev->error];
    size_t off = 0;
    for (size_t i = 0; i < d->jerrs.count && off < sizeof msg - 1; i++) {
        int w = snprintf(msg + off, sizeof msg - off, "%s/data%s: %s", i ? "; " : "",
                         d->jerrs.items[i].instance_path, d->jerrs.items[i].message);
        if (w > 0)
            off += (size_t)w;
    }
    snprintf(ev->error, sizeof ev->error, "%s", d->jerrs.count ? msg : "invalid payload");
}

/* Call the handlers in order, each with the data at a version it accepts,
 * under its dedup claim when it has one.  Results go to hin[i].result, why
 * a handler did not succeed to d->why[i]. */
static void run_handlers(dctx_t *d, struct evbus_event *ev, const gen_handler_t *const *hs,
                         verdict_handler_in_t *hin, size_t n)
{
    json_t *own_data = ev->data;
    int own_version = ev->schema_version;
    for (size_t i = 0; i < n; i++) {
        const gen_handler_t *h = hs[i];
        char *why = d->why[i];
        size_t why_len = sizeof d->why[i];
        why[0] = '\0';
        if (held_back(d, ev, h)) {
            hin[i].result = VERDICT_RESULT_HELD; /* before pause and dedup: nothing taken */
            continue;
        }
        if (d->link->pauses && pause_table_has(d->link->pauses, h->name)) {
            hin[i].result = VERDICT_RESULT_PAUSED; /* before dedup: claim nothing */
            continue;
        }
        int want = target_version(h, own_version, why, why_len);
        json_t *data = own_data;
        if (!why[0] && want != own_version)
            data = data_at_version(d, ev, want, why, why_len);
        if (why[0]) {
            hin[i].result = VERDICT_RESULT_UPCAST_FAILED;
            continue;
        }
        if (data != ev->data) {
            free(ev->data_json);
            ev->data_json = NULL;
            ev->data = data;
        }
        ev->schema_version = want ? want : own_version;
        int dd = 1;
        if (h->dedup_ttl_s && ev->id)
            dd = dedup_claim(d, ev, h);
        if (dd == 0) {
            hin[i].result = VERDICT_RESULT_DEDUP_SKIPPED;
            continue;
        }
        verdict_result_t r = call_handler(d, ev, h, why, why_len);
        if (r != VERDICT_RESULT_OK && h->dedup_ttl_s && dd == 1)
            dedup_release(d, ev, h);
        if (r == VERDICT_RESULT_RETRY || r == VERDICT_RESULT_TIMEOUT) {
            if (!ev->first_failure_ms)
                ev->first_failure_ms = clock_wall_ms();
            hin[i].rnd = rnd01(d);
        }
        hin[i].result = r;
    }
    if (ev->data != own_data) {
        free(ev->data_json);
        ev->data_json = NULL;
        ev->data = own_data;
    }
    ev->schema_version = own_version;
}

/* ---- effects ----------------------------------------------------------- */

/* Record what the verdict made of handler h: counters, its outcome, the
 * event's error and failing handlers, its retry. */
static void record_handler(dctx_t *d, struct evbus_event *ev, const gen_handler_t *h,
                           const char *why, const verdict_handler_out_t *o,
                           verdict_result_t result, stats_cell_t *cell, unsigned tenant_label)
{
    event_note_outcome(ev, h->name, verdict_outcome_name(o->outcome));
    /* the key's owner is done with it (done, or failed for good) */
    if (o->outcome != VERDICT_OUTCOME_RETRY && o->outcome != VERDICT_OUTCOME_PAUSED &&
        o->outcome != VERDICT_OUTCOME_HELD && owns_key(d, ev, h->name))
        release_key(d, ev, h->name);
    /* the per-instance outcome (util/metrics.h); a dedup skip is no call */
    metrics_outcome_t mo = METRICS_N_OUTCOMES;
    switch (o->outcome) {
    case VERDICT_OUTCOME_OK:
        mo = METRICS_OUTCOME_OK;
        break;
    case VERDICT_OUTCOME_RETRY:
        mo = result == VERDICT_RESULT_TIMEOUT ? METRICS_OUTCOME_TIMEOUT : METRICS_OUTCOME_RETRY;
        break;
    case VERDICT_OUTCOME_REJECT:
        mo = METRICS_OUTCOME_REJECT;
        break;
    case VERDICT_OUTCOME_EXHAUSTED:
    case VERDICT_OUTCOME_UPCAST_FAILED:
        mo = METRICS_OUTCOME_DEAD;
        break;
    case VERDICT_OUTCOME_DEDUP:
    case VERDICT_OUTCOME_PAUSED: /* not a call: deferred until the resume */
    case VERDICT_OUTCOME_HELD:   /* not a call: queued behind its key */
        break;
    }
    if (mo != METRICS_N_OUTCOMES) {
        metrics_handler_outcome(h->metrics_slot, tenant_label, mo);
        stats_cell_outcome(cell, mo);
    }
    switch (o->outcome) {
    case VERDICT_OUTCOME_OK:
        METRIC_INC(handler_ok);
        break;
    case VERDICT_OUTCOME_DEDUP:
        METRIC_INC(events_dedup_skipped);
        break;
    case VERDICT_OUTCOME_UPCAST_FAILED:
        snprintf(ev->error, sizeof ev->error, "%s", why);
        ev->failed[ev->n_failed++] = h->name;
        break;
    case VERDICT_OUTCOME_REJECT:
        METRIC_INC(handler_reject);
        snprintf(ev->error, sizeof ev->error, "%.160s: %.300s", h->name,
                 why[0] ? why : "handler rejected the event");
        ev->failed[ev->n_failed++] = h->name;
        break;
    case VERDICT_OUTCOME_EXHAUSTED:
        METRIC_INC(handler_retry);
        snprintf(ev->error, sizeof ev->error, "%.160s: %.300s (attempt %d of %u)", h->name,
                 why[0] ? why : "handler asked for a retry", ev->attempt, h->retry.max_attempts);
        ev->failed[ev->n_failed++] = h->name;
        break;
    case VERDICT_OUTCOME_HELD:
        queue_behind_key(d, ev, h);
        break;
    case VERDICT_OUTCOME_PAUSED:
        /* due now, same attempt: the mover parks it until the resume */
        schedule(d, ev, h, ev->attempt, ev->first_failure_ms, NULL, 0, keeps_order(d, ev, h));
        if (keeps_order(d, ev, h))
            hold_key(d, ev, h);
        log_debug(d->name, "event %s (%s): %s is paused; deferred (attempt %d kept)",
                  ev->id ? ev->id : "?", ev->type ? ev->type : "?", h->name, ev->attempt);
        break;
    case VERDICT_OUTCOME_RETRY: {
        METRIC_INC(handler_retry);
        char text[600];
        snprintf(text, sizeof text, "%.160s: %.300s", h->name,
                 why[0] ? why : "handler asked for a retry");
        bool ordered = keeps_order(d, ev, h);
        schedule_retry(d, ev, h, text, o->delay_ms, ordered);
        if (ordered)
            hold_key(d, ev, h);
        log_event(LOG_INFO, d->name, ev->id, ev->type, ev->tenant, h->name,
                  "event %s (%s): %s; attempt %d of %u, retried in %lld ms",
                  ev->id ? ev->id : "?", ev->type ? ev->type : "?", text, ev->attempt,
                  h->retry.max_attempts, (long long)o->delay_ms);
        /* the event's last error while it waits, unless a handler failed
         * for good (its text is what the dead letter must say) */
        if (!ev->error[0])
            snprintf(ev->error, sizeof ev->error, "%.500s", text);
        break;
    }
    }
}

/* The error text and counters of a verdict reached before any handler ran
 * (the handlers' own are written by record_handler). */
static void record_early(struct evbus_event *ev, const verdict_input_t *in, const verdict_t *v)
{
    if (v->status == EV_STATUS_IGNORED)
        METRIC_INC(events_ignored);
    switch (v->reason) {
    case EVBUS_DLQ_POISON:
        METRIC_INC(poison);
        if (!ev->first_failure_ms)
            ev->first_failure_ms = clock_wall_ms();
    {
        /* name the handler that was running when the host crashed on it */
        const char *sid = ev->orig_sid[0] ? ev->orig_sid : ev->stream_id;
        const char *h = sid ? crash_handler_for(sid) : NULL;
        if (h) {
            event_set_error(ev, "delivered %llu times (max_deliveries %u): the host crashed "
                            "while handler %s was running on it",
                            (unsigned long long)in->deliveries, in->max_deliveries, h);
            if (ev->n_failed < EVENT_MAX_HANDLERS)
                ev->failed[ev->n_failed++] = h;
        } else {
            event_set_error(ev, "delivered %llu times (max_deliveries %u): the host crashed, "
                            "was killed or hung while handling it",
                            (unsigned long long)in->deliveries, in->max_deliveries);
        }
        break;
    }
    case EVBUS_DLQ_UNPARSEABLE:
    case EVBUS_DLQ_INVALID_ENVELOPE:
        METRIC_INC(events_invalid_envelope);
        break; /* event_parse wrote the error */
    case EVBUS_DLQ_HANDLER_GONE:
        /* the handler is gone (reload) or no longer subscribed to the
         * type: say so in the DLQ, never drop the retry */
        event_set_error(ev, "retry target %s is no longer subscribed to %s", ev->retry_target,
                        ev->type);
        ev->failed[ev->n_failed++] = ev->retry_target;
        break;
    case EVBUS_DLQ_UNKNOWN_VERSION:
        if (in->claimed_version < 0)
            event_set_error(ev, "malformed schema version (dataschema / schemaversion)");
        else
            event_set_error(ev, "%s has no schema version %d (latest is %d)", ev->type,
                            ev->schema_version, in->latest_version);
        break;
    case EVBUS_DLQ_NO_SCHEMA:
        event_set_error(ev, "no schema for type %s", ev->type);
        break;
    case EVBUS_DLQ_SCHEMA_INVALID:
        METRIC_INC(events_schema_invalid);
        break; /* learn_schema wrote the error */
    default:
        break;
    }
}

/* Perform a decided verdict: queue the ack, retries and dead letter with
 * the chunk's owed writes, and the metadata.  0 when the event completed
 * or nothing matched, 1 otherwise. */
static int perform(dctx_t *d, struct evbus_event *ev, const verdict_input_t *in,
                   const verdict_t *v, const gen_handler_t *const *hs)
{
    if (v->ack)
        add_ack(d, ev->stream_id);
    stats_cell_t *cell = stats_cell(d->link->stats, ev->tenant, ev->type);
    unsigned tenant_label = metrics_tenant_label(ev->tenant);
    for (size_t i = 0; i < v->n_handlers; i++)
        record_handler(d, ev, hs[i], d->why[i], &v->handlers[i], in->handlers[i].result, cell,
                       tenant_label);
    record_early(ev, in, v);
    /* settled before its handler ran (poison, handler gone): an owner
     * still hands its key on, or the events queued behind it would wait
     * forever */
    if (v->n_handlers == 0 && owns_key(d, ev, ev->retry_target))
        release_key(d, ev, ev->retry_target);
    if (v->status == EV_STATUS_DEAD_LETTERED)
        dead_letter(d, ev, v->reason);
    else
        ev->status = v->status;
    stats_cell_status(cell, ev->status);
    metadata(d, ev);
    return v->status == EV_STATUS_COMPLETED || v->status == EV_STATUS_IGNORED ? 0 : 1;
}

/* ---- the pipeline ------------------------------------------------------ */

/*
 * One entry: learn the facts a stage at a time, asking the verdict after
 * each, so a settled event costs no more work (a poison pill is never
 * routed, an event nobody subscribes to never validated); then perform
 * the verdict.  deliveries: the group's count for an entry claimed again,
 * else 0.  Returns as perform().
 */
static void learn_facts(dctx_t *d, struct evbus_event *ev, verdict_input_t *in_, verdict_t *v_,
                        const gen_handler_t **hs, verdict_handler_in_t *hin)
{
    verdict_input_t in = *in_;
    verdict_t v;
    if (event_parse(ev) != 0)
        in.envelope = ev->dlq_reason ? ev->dlq_reason : EVBUS_DLQ_INVALID_ENVELOPE;
    verdict_decide(&in, &v);
    if (!v.decided) {
        in.known = VERDICT_KNOWN_ROUTE;
        in.is_retry = ev->retry_target != NULL;
        in.n_handlers = route(d, ev, hs, hin);
        verdict_decide(&in, &v);
    }
    if (!v.decided) {
        learn_schema(d, ev, &in);
        verdict_decide(&in, &v);
    }
    *in_ = in;
    *v_ = v;
}

/* With the facts learnt: say that an advisory schema failed, run the
 * handlers unless the verdict is already known, then act on it. */
static int finish_event(dctx_t *d, struct evbus_event *ev, verdict_input_t *in, verdict_t *v,
                        const gen_handler_t **hs, verdict_handler_in_t *hin)
{
    if (v->schema_advisory) {
        METRIC_INC(events_schema_advisory);
        log_event(LOG_WARN, d->name, ev->id, ev->type, ev->tenant, NULL,
                  "event %s (%s v%d) fails its schema (advisory, delivered): %s", ev->id,
                  ev->type, ev->schema_version, ev->error);
        ev->error[0] = '\0';
    }
    if (!v->decided) {
        run_handlers(d, ev, hs, hin, in->n_handlers);
        in->known = VERDICT_KNOWN_RESULTS;
        in->attempt = ev->attempt;
        verdict_decide(in, v);
    }
    return perform(d, ev, in, v, hs);
}

static int process_event(dctx_t *d, struct evbus_event *ev, bool from_group, uint64_t deliveries)
{
    const gen_handler_t *hs[EVENT_MAX_HANDLERS];
    verdict_handler_in_t hin[EVENT_MAX_HANDLERS];
    verdict_input_t in = {
        .known = VERDICT_KNOWN_ENVELOPE,
        .from_group = from_group,
        .deliveries = deliveries,
        .max_deliveries = d->gen->cfg->core.max_deliveries,
        .handlers = hin,
    };
    verdict_t v;
    learn_facts(d, ev, &in, &v, hs, hin);
    return finish_event(d, ev, &in, &v, hs, hin);
}

static void load_entry(dctx_t *d, struct evbus_event *ev, redisReply *entry)
{
    event_reset(ev);
    d->key_state = 0;
    ev->stream_id = entry->element[0]->str;
    redisReply *fv = entry->element[1];
    ev->raw = field(fv, "event", &ev->raw_len);
    ev->retry_meta = field(fv, "retry", NULL);
    ev->retried_from = field(fv, "retried_from", NULL);
    /* a dead letter retried by hand (evbus_dlq_retry) is a new entry that
     * names the original: its metadata and any new dead letter keep the
     * original's stream id, so the event keeps one metadata row */
    size_t olen = 0;
    const char *orig = field(fv, "orig_id", &olen);
    if (orig && olen > 2 && olen < sizeof ev->orig_sid && strspn(orig, "0123456789-") == olen)
        snprintf(ev->orig_sid, sizeof ev->orig_sid, "%.*s", (int)olen, orig);
}

static void dispatch_entry(dctx_t *d, redisReply *entry, uint64_t deliveries)
{
    if (entry->element[1]->type != REDIS_REPLY_ARRAY) {
        /* pending entry whose stream entry is gone: ack it away, count it */
        const char *id = entry->element[0]->str;
        add_ack(d, id);
        METRIC_INC(ghosts);
        log_warn(d->name, "pending entry %s no longer exists in the stream; acked away", id);
        return;
    }
    load_entry(d, &d->ev, entry);
    process_event(d, &d->ev, true, deliveries);
}

void dctx_dispatch_entry(dctx_t *d, redisReply *entry) { dispatch_entry(d, entry, 0); }

void dctx_dispatch_recovered(dctx_t *d, redisReply *entry)
{
    uint64_t count = 1; /* unknown (Redis failed): never taken for a poison pill */
    if (entry->element[1]->type == REDIS_REPLY_ARRAY && ensure_wc(d)) {
        const char *id = entry->element[0]->str;
        redisReply *r = redisCommand(d->wc, "XPENDING %s %s %s %s 1", d->link->stream,
                                     d->link->group, id, id);
        if (!r) {
            drop_wc(d, "XPENDING");
        } else {
            if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
                r->element[0]->elements >= 4 && r->element[0]->element[3]->integer > 0)
                count = (uint64_t)r->element[0]->element[3]->integer;
            freeReplyObject(r);
        }
    }
    dispatch_entry(d, entry, count);
}

int dctx_dispatch_replay(dctx_t *d, const char *job_id, const char *stream_id, const char *raw,
                         size_t len)
{
    struct evbus_event *ev = &d->ev;
    event_reset(ev);
    d->key_state = 0;
    ev->stream_id = stream_id;
    ev->raw = raw;
    ev->raw_len = len;
    ev->is_replay = true;
    ev->replay_job = strdup(job_id);
    return process_event(d, ev, false, 0);
}

/* ---- isolated calls made ahead ------------------------------------------ */

/* Whether entry's calls can all be made ahead: its handlers (hs, n) are
 * all of one isolated instance, with no dedup, no pause, no per-key
 * ordering (whether a call happens depends on how the key's earlier events
 * end, core/keyorder.h) and the data at the event's own version.  Then
 * their calls are the only thing dispatch would do with the instance, in
 * this order. */
static bool ahead_eligible(const dctx_t *d, const struct evbus_event *ev,
                           const gen_handler_t *const *hs, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        const gen_handler_t *h = hs[i];
        char why[256] = "";
        if (h->kind != GEN_HANDLER_PLUGIN || h->inst != hs[0]->inst ||
            !plugin_instance_is_remote(h->inst) || h->dedup_ttl_s || h->per_key ||
            (d->link->pauses && pause_table_has(d->link->pauses, h->name)) ||
            target_version(h, ev->schema_version, why, sizeof why) != ev->schema_version)
            return false;
    }
    return true;
}

static void ahead_add(dctx_t *d, size_t entry, const gen_handler_t *h, void *call)
{
    if (d->n_ahead == d->cap_ahead) {
        d->cap_ahead = d->cap_ahead ? d->cap_ahead * 2 : 256;
        d->ahead = realloc(d->ahead, d->cap_ahead * sizeof *d->ahead);
        if (!d->ahead) {
            log_error(d->name, "out of memory");
            abort();
        }
    }
    d->ahead[d->n_ahead++] = (struct dctx_ahead){.entry = entry, .h = h, .call = call};
}

/* Where the next planned entry's tree goes: the current plan arena while
 * it has room for a large envelope, else the next one; NULL (the heap)
 * when all are full or cannot be had. */
static jarena_t *plan_arena(dctx_t *d)
{
    for (; d->cur_plan_arena < DCTX_PLAN_ARENAS; d->cur_plan_arena++) {
        jarena_t *a = &d->plan_arenas[d->cur_plan_arena];
        if (!a->base && jarena_init(a) != 0)
            return NULL;
        if (a->used <= JARENA_BLOCK / 4 * 3)
            return a;
    }
    return NULL;
}

/* Drop a planned entry: its own allocations, and its tree unless that is
 * dropped with the plan arenas (a tree that overflowed an arena has heap
 * parts: the walk frees them and ignores the arena's). */
static void planned_release(struct dctx_planned *p)
{
    jarena_t *a = p->ev.arena;
    p->ev.arena = NULL; /* shared by the chunk's trees: never reset one by one */
    if (a && !a->overflowed)
        p->ev.env = NULL;
    event_reset(&p->ev);
    p->used = false;
}

/* Parse each entry and learn its facts once (kept for the dispatch pass),
 * prepare the calls of the eligible ones, then run them: one exchange per
 * isolated instance.  Returns false when the generation has no isolated
 * instance: then nothing is planned and entries are dispatched one by
 * one as usual. */
static bool plan_ahead(dctx_t *d, redisReply **entries, size_t n)
{
    bool any_remote = false;
    for (size_t i = 0; i < d->gen->n_insts && !any_remote; i++)
        any_remote = plugin_instance_is_remote(d->gen->insts[i]);
    if (!any_remote || n == 0)
        return false;
    if (n > d->cap_planned) {
        /* every record is released (unused) between chunks: moving them is safe */
        struct dctx_planned *p = realloc(d->planned, n * sizeof *p);
        if (!p) {
            log_error(d->name, "out of memory");
            abort();
        }
        memset(p + d->cap_planned, 0, (n - d->cap_planned) * sizeof *p);
        d->planned = p;
        d->cap_planned = n;
    }
    d->cur_plan_arena = 0;
    for (size_t k = 0; k < n; k++) {
        redisReply *entry = entries[k];
        struct dctx_planned *p = &d->planned[k];
        if (entry->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        p->used = true;
        struct evbus_event *ev = &p->ev;
        load_entry(d, ev, entry); /* (its reset must not see the shared arena) */
        ev->arena = plan_arena(d);
        p->in = (verdict_input_t){.known = VERDICT_KNOWN_ENVELOPE,
                                  .from_group = true,
                                  .max_deliveries = d->gen->cfg->core.max_deliveries,
                                  .handlers = p->hin};
        learn_facts(d, ev, &p->in, &p->v, p->hs, p->hin);
        if (p->v.decided || !ahead_eligible(d, ev, p->hs, p->in.n_handlers))
            continue;
        for (size_t i = 0; i < p->in.n_handlers; i++) {
            /* what call_handler would set: the deadline the child counts */
            ev->deadline_ms = p->hs[i]->timeout_ms ? clock_coarse_ms() + p->hs[i]->timeout_ms : 0;
            ahead_add(d, k, p->hs[i],
                      plugin_call_prepare(p->hs[i]->inst, p->hs[i]->sub, ev,
                                          PLUGIN_CALL_OWN_DATA));
        }
        ev->deadline_ms = 0;
    }
    /* one run per instance, in the order the calls were made */
    void **calls = malloc((d->n_ahead + 1) * sizeof *calls);
    bool *done = calloc(d->n_ahead + 1, sizeof *done);
    if (!calls || !done) {
        log_error(d->name, "out of memory");
        abort();
    }
    for (size_t i = 0; i < d->n_ahead; i++) {
        if (done[i])
            continue;
        plugin_instance_t *inst = d->ahead[i].h->inst;
        size_t m = 0;
        for (size_t j = i; j < d->n_ahead; j++)
            if (!done[j] && d->ahead[j].h->inst == inst) {
                calls[m++] = d->ahead[j].call;
                done[j] = true;
            }
        plugin_call_run(inst, calls, m);
    }
    free(calls);
    free(done);
    return true;
}

void dctx_dispatch_chunk(dctx_t *d, redisReply **entries, size_t n)
{
    d->n_ahead = d->next_ahead = 0;
    bool planned = plan_ahead(d, entries, n);
    for (size_t k = 0; k < n; k++) {
        d->cur_entry = k + 1;
        struct dctx_planned *p = planned ? &d->planned[k] : NULL;
        if (p && p->used) {
            /* parsed and learnt by the planning pass: go on from there */
            d->key_state = 0;
            p->in.handlers = p->hin;
            finish_event(d, &p->ev, &p->in, &p->v, p->hs, p->hin);
            planned_release(p);
        } else {
            dispatch_entry(d, entries[k], 0);
        }
    }
    d->cur_entry = 0;
    if (planned)
        for (size_t i = 0; i < DCTX_PLAN_ARENAS; i++)
            if (d->plan_arenas[i].base)
                jarena_reset(&d->plan_arenas[i]);
    /* an outcome nobody asked for (the instance was paused meanwhile): its
     * handler ran; the deferred delivery will run it again */
    for (size_t i = 0; i < d->n_ahead; i++)
        plugin_call_release(d->ahead[i].h->inst, d->ahead[i].call);
    d->n_ahead = d->next_ahead = 0;
}
