/*
 * dispatch — see dispatch.h.
 *
 * The event's status is decided once per delivery, here, after every
 * handler returned: COMPLETED, RETRYING (some handler scheduled for
 * retry), DEAD_LETTERED or IGNORED.  Handlers never set it.
 *
 * Per-handler retries: a handler that returns RETRY gets its own entry in
 * the retry schedule, naming it as the only target; the handlers that
 * succeeded are not called again.  When the retry is due it comes back
 * through the stream like any event, so the consumer group's at-least-once
 * guarantee covers retries too.
 */
#include "core/dispatch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/evbus_client.h"
#include "plugin/plugin.h"
#include "schema/schema.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/metrics.h"

static void fmt_time(int64_t ms, char out[48])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, 48, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

void dctx_init(dctx_t *d, engine_t *e, const char *name)
{
    memset(d, 0, sizeof *d);
    d->eng = e;
    snprintf(d->name, sizeof d->name, "%s", name);
    d->cache = router_cache_new();
    d->rand_state = (unsigned)(time(NULL) ^ (uintptr_t)d);
    atomic_init(&d->cur_handler, NULL);
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
    store_pending_free(&d->meta);
    router_cache_free(d->cache);
    if (d->wc)
        redisFree(d->wc);
    event_reset(&d->ev);
    jarena_destroy(&d->arena);
    js_errors_clear(&d->jerrs);
    free(d->jerrs.items);
    memset(d, 0, sizeof *d);
}

void dctx_begin(dctx_t *d, generation_t *g) { d->gen = g; }

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

static void add_ack(dctx_t *d, const char *id)
{
    if (d->n_acks == d->cap_acks) {
        d->cap_acks = d->cap_acks ? d->cap_acks * 2 : 256;
        d->acks = realloc(d->acks, d->cap_acks * sizeof *d->acks);
    }
    d->acks[d->n_acks++] = id;
}

static bool ensure_wc(dctx_t *d)
{
    while (!d->wc) {
        char err[256];
        d->wc = evbus_redis_connect(engine_redis_url(d->eng), engine_connect_ms(d->eng),
                                    engine_command_ms(d->eng), err, sizeof err);
        if (d->wc)
            break;
        engine_redis_failed(d->eng, err);
        if (engine_stopping(d->eng))
            return false;
        int64_t end = clock_mono_ms() + engine_backoff_ms(d->eng);
        while (clock_mono_ms() < end && !engine_stopping(d->eng)) {
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    return true;
}

static void drop_wc(dctx_t *d, const char *what)
{
    char msg[300];
    snprintf(msg, sizeof msg, "%s: %s", what, d->wc ? d->wc->errstr : "not connected");
    log_warn(d->name, "%s; reconnecting", msg);
    engine_redis_failed(d->eng, msg);
    if (d->wc)
        redisFree(d->wc);
    d->wc = NULL;
    METRIC_INC(reconnects);
}

static void clear_owed(dctx_t *d)
{
    for (size_t i = 0; i < d->n_cmds; i++)
        redisFreeCommand(d->cmds[i]);
    d->n_cmds = 0;
    d->n_acks = 0;
}

/* Send the owed writes once.  1 done, 0 connection failure (retry), -1
 * the server refused them (they will never apply: give up). */
static int flush_once(dctx_t *d)
{
    redisContext *c = d->wc;
    const char *stream = engine_stream(d->eng), *group = engine_group(d->eng);
    size_t nargs = d->n_acks + 3;
    const char **argv = NULL;
    if (d->n_acks) {
        argv = malloc(nargs * sizeof *argv);
        argv[0] = "XACK";
        argv[1] = stream;
        argv[2] = group;
        memcpy(argv + 3, d->acks, d->n_acks * sizeof *argv);
    }
    bool multi = d->n_cmds > 0;
    size_t expect = 0;
    if (multi) {
        redisAppendCommand(c, "MULTI");
        expect++;
        for (size_t i = 0; i < d->n_cmds; i++)
            redisAppendFormattedCommand(c, d->cmds[i], d->cmd_lens[i]);
        expect += d->n_cmds;
    }
    if (argv) {
        redisAppendCommandArgv(c, (int)nargs, argv, NULL);
        expect++;
    }
    if (multi) {
        redisAppendCommand(c, "EXEC");
        expect++;
    }
    free(argv);
    int rc = 1;
    for (size_t i = 0; i < expect; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r)
            return 0;
        bool last = i + 1 == expect;
        if (r->type == REDIS_REPLY_ERROR) {
            log_error(d->name, "Redis refused owed writes: %s", r->str);
            rc = -1;
        } else if (multi && last && r->type != REDIS_REPLY_ARRAY) {
            log_error(d->name, "MULTI/EXEC was aborted");
            rc = -1;
        }
        freeReplyObject(r);
    }
    return rc;
}

void dctx_flush(dctx_t *d)
{
    /* One lock on the writer's queue per chunk instead of one per event. */
    store_writer_submit_pending(engine_metadata(d->eng), &d->meta);
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
            engine_redis_recovered(d->eng);
            break;
        }
        if (rc == -1)
            break; /* entries stay pending; reclaim redelivers them */
        drop_wc(d, "writing acks");
        if (engine_stopping(d->eng))
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

int64_t dispatch_backoff_ms(const retry_policy_t *p, int attempt, double rnd)
{
    double delay = p->base_ms * pow(p->factor > 1.0 ? p->factor : 1.0, attempt > 1 ? attempt - 1 : 0);
    if (delay > p->max_ms)
        delay = p->max_ms;
    /* spread +/- jitter/2 around the delay so hosts do not retry in step */
    delay *= 1.0 + p->jitter * (rnd - 0.5);
    return delay < 0 ? 0 : (int64_t)delay;
}

static void metadata(dctx_t *d, const struct evbus_event *ev)
{
    store_writer_t *w = engine_metadata(d->eng);
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

/* Queue the dead letter for ev: original bytes unchanged plus provenance. */
static void dead_letter(dctx_t *d, struct evbus_event *ev, const char *reason)
{
    char handlers[2048] = "[";
    size_t hl = 1;
    for (size_t i = 0; i < ev->n_failed && hl < sizeof handlers - 4; i++) {
        int n = snprintf(handlers + hl, sizeof handlers - hl, "%s\"%s\"", i ? "," : "",
                         ev->failed[i]);
        if (n > 0)
            hl += (size_t)n;
    }
    snprintf(handlers + (hl < sizeof handlers - 2 ? hl : sizeof handlers - 2), 2, "]");
    char attempts[16], first[48], last[48];
    int64_t now = clock_wall_ms();
    snprintf(attempts, sizeof attempts, "%d", ev->attempt > 0 ? ev->attempt : 1);
    fmt_time(ev->first_failure_ms ? ev->first_failure_ms : now, first);
    fmt_time(now, last);
    const char *sid = ev->orig_sid[0] ? ev->orig_sid : (ev->stream_id ? ev->stream_id : "");
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
    SARG(engine_dlq_stream(d->eng));
    SARG("*");
    SARG("event");
    ARG(ev->raw ? ev->raw : "", ev->raw ? ev->raw_len : 0);
    SARG("stream");
    SARG(engine_stream(d->eng));
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
    if (ev->replay_job) {
        SARG("replay_job");
        SARG(ev->replay_job);
    }
#undef SARG
#undef ARG
    add_cmd(d, argc, argv, lens);
    METRIC_INC(dlq_written);
    ev->status = EV_STATUS_DEAD_LETTERED;
    ev->dlq_reason = reason;
    log_warn(d->name, "event %s (%s, entry %s) dead-lettered: %s: %s", ev->id ? ev->id : "?",
             ev->type ? ev->type : "?", sid, reason, ev->error);
}

/* Queue a retry of one handler: the schedule member is
 * "<meta json>\n<raw event>", scored by its due time. */
static void schedule_retry(dctx_t *d, struct evbus_event *ev, const gen_handler_t *h,
                           const char *error)
{
    int64_t now = clock_wall_ms();
    json_t *meta = json_pack("{s:s, s:i, s:I, s:s, s:s}", "h", h->name, "a", ev->attempt + 1,
                             "ff", (json_int_t)(ev->first_failure_ms ? ev->first_failure_ms : now),
                             "sid", ev->orig_sid[0] ? ev->orig_sid : ev->stream_id, "err",
                             error ? error : "");
    if (ev->replay_job)
        json_object_set_new(meta, "rj", json_string(ev->replay_job));
    char *m = json_dumps(meta, JSON_COMPACT);
    json_decref(meta);
    size_t ml = strlen(m);
    char *member = malloc(ml + 1 + ev->raw_len);
    memcpy(member, m, ml);
    member[ml] = '\n';
    memcpy(member + ml + 1, ev->raw, ev->raw_len);
    free(m);
    char due[32];
    snprintf(due, sizeof due, "%lld",
             (long long)(now + dispatch_backoff_ms(&h->retry, ev->attempt, rnd01(d))));
    const char *argv[4] = {"ZADD", engine_retry_key(d->eng), due, member};
    size_t lens[4] = {4, strlen(argv[1]), strlen(due), ml + 1 + ev->raw_len};
    add_cmd(d, 4, argv, lens);
    free(member);
    METRIC_INC(retries_scheduled);
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
        v = json_loadb(out.data, out.len, JSON_DECODE_ANY, &jerr);
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
    redisReply *r = redisCommand(d->wc, "SET evbus:dedup:%s:%s:%s 1 NX EX %u",
                                 engine_group(d->eng), h->name, ev->id, h->dedup_ttl_s);
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
        redisCommand(d->wc, "DEL evbus:dedup:%s:%s:%s", engine_group(d->eng), h->name, ev->id);
    if (r)
        freeReplyObject(r);
    else
        drop_wc(d, "dedup DEL");
}

static evbus_result_t call_handler(dctx_t *d, struct evbus_event *ev, const gen_handler_t *h,
                                   char *reason, size_t reason_len)
{
    atomic_store(&d->cur_timeout_ms, h->timeout_ms);
    atomic_store(&d->cur_reported, false);
    atomic_store(&d->cur_start_ms, clock_coarse_ms());
    atomic_store(&d->cur_handler, h->name);
    evbus_result_t r;
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
    } else
        r = plugin_instance_call(h->inst, h->sub, ev);
    int64_t took = clock_coarse_ms() - atomic_load(&d->cur_start_ms);
    atomic_store(&d->cur_handler, NULL);
    if (h->timeout_ms && took > (int64_t)h->timeout_ms) {
        METRIC_INC(handler_timeout);
        log_warn(d->name, "handler %s took %lld ms on event %s (timeout %u ms): counted as RETRY",
                 h->name, (long long)took, ev->id, h->timeout_ms);
        snprintf(reason, reason_len, "timed out after %lld ms (limit %u ms)", (long long)took,
                 h->timeout_ms);
        return EVBUS_RETRY;
    }
    return r;
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

/* The whole pipeline for one parsed-or-not event.  0 = every handler
 * succeeded (or nothing matched), 1 = something failed. */
static int process_event(dctx_t *d, struct evbus_event *ev)
{
    generation_t *g = d->gen;
    if (event_parse(ev) != 0) {
        METRIC_INC(events_invalid_envelope);
        if (!ev->orig_sid[0] && ev->stream_id)
            snprintf(ev->orig_sid, sizeof ev->orig_sid, "%s", ev->stream_id);
        dead_letter(d, ev, ev->dlq_reason ? ev->dlq_reason : "invalid_envelope");
        metadata(d, ev);
        return 1;
    }

    /* route */
    const gen_handler_t *hs[EVENT_MAX_HANDLERS];
    size_t n = 0;
    router_list_t lst = router_match(g->router, d->cache, ev->type);
    if (lst.count > EVENT_MAX_HANDLERS && !d->warned_too_many) {
        d->warned_too_many = true; /* once per thread, not per event */
        log_warn(d->name, "%zu handlers match %s; only the first %d (by priority) run",
                 lst.count, ev->type, EVENT_MAX_HANDLERS);
    }
    for (size_t i = 0; i < lst.count && n < EVENT_MAX_HANDLERS; i++) {
        const gen_handler_t *h = lst.items[i].target;
        if (ev->retry_target && strcmp(h->name, ev->retry_target) != 0)
            continue;
        hs[n++] = h;
    }
    if (ev->retry_target && n == 0) {
        /* The handler this retry was for is gone (reload) or no longer
         * subscribed to the type: say so in the DLQ, never drop it. */
        event_set_error(ev, "retry target %s is no longer subscribed to %s", ev->retry_target,
                        ev->type);
        ev->failed[ev->n_failed++] = ev->retry_target;
        dead_letter(d, ev, "handler_gone");
        metadata(d, ev);
        return 1;
    }
    if (n == 0) {
        METRIC_INC(events_ignored);
        ev->status = EV_STATUS_IGNORED;
        metadata(d, ev);
        return 0;
    }

    /* schema version */
    bool any_check = false, any_enforce = false;
    for (size_t i = 0; i < n; i++) {
        any_check |= hs[i]->schema_mode != SCHEMA_MODE_OFF;
        any_enforce |= hs[i]->schema_mode == SCHEMA_MODE_ENFORCE;
    }
    int claimed = schema_event_version(ev->env);
    int latest = schema_catalog_latest(g->schemas, ev->type);
    if (claimed < 0) {
        event_set_error(ev, "malformed schema version (dataschema / schemaversion)");
        dead_letter(d, ev, "unknown_version");
        metadata(d, ev);
        return 1;
    }
    const js_schema_t *schema = NULL;
    if (latest == 0) {
        ev->schema_version = claimed;
        if (any_check && g->cfg->schema.unknown == SCHEMA_UNKNOWN_REJECT) {
            event_set_error(ev, "no schema for type %s", ev->type);
            dead_letter(d, ev, "no_schema");
            metadata(d, ev);
            return 1;
        }
    } else {
        ev->schema_version = claimed ? claimed : latest;
        schema = schema_catalog_get(g->schemas, ev->type, ev->schema_version);
        if (!schema) {
            event_set_error(ev, "%s has no schema version %d (latest is %d)", ev->type,
                            ev->schema_version, latest);
            dead_letter(d, ev, "unknown_version");
            metadata(d, ev);
            return 1;
        }
    }

    /* validate once, for every handler that wants it */
    if (any_check && schema) {
        json_t *data = ev->data ? ev->data : json_null();
        if (!js_validate(schema, data, NULL, 0)) {
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
            if (any_enforce) {
                METRIC_INC(events_schema_invalid);
                dead_letter(d, ev, "schema_invalid");
                metadata(d, ev);
                return 1;
            }
            METRIC_INC(events_schema_advisory);
            log_warn(d->name, "event %s (%s v%d) fails its schema (advisory, delivered): %s",
                     ev->id, ev->type, ev->schema_version, ev->error);
            ev->error[0] = '\0';
        }
    }

    /* call the handlers, lowest priority number first */
    bool any_retry = false, any_reject = false, any_exhausted = false, any_upcast = false;
    json_t *own_data = ev->data;
    int own_version = ev->schema_version;
    for (size_t i = 0; i < n; i++) {
        const gen_handler_t *h = hs[i];
        char reason[512] = "";
        int want = target_version(h, own_version, reason, sizeof reason);
        json_t *data = own_data;
        if (!reason[0] && want != own_version)
            data = data_at_version(d, ev, want, reason, sizeof reason);
        if (reason[0]) {
            any_upcast = true;
            snprintf(ev->error, sizeof ev->error, "%s", reason);
            ev->failed[ev->n_failed++] = h->name;
            event_note_outcome(ev, h->name, "upcast_failed");
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
            METRIC_INC(events_dedup_skipped);
            event_note_outcome(ev, h->name, "dedup");
            continue;
        }
        evbus_result_t r = call_handler(d, ev, h, reason, sizeof reason);
        if (r != EVBUS_OK && h->dedup_ttl_s && dd == 1)
            dedup_release(d, ev, h);
        switch (r) {
        case EVBUS_OK:
            METRIC_INC(handler_ok);
            event_note_outcome(ev, h->name, "ok");
            break;
        case EVBUS_REJECT:
            METRIC_INC(handler_reject);
            any_reject = true;
            snprintf(ev->error, sizeof ev->error, "%.160s: %.300s", h->name,
                     reason[0] ? reason : "handler rejected the event");
            ev->failed[ev->n_failed++] = h->name;
            event_note_outcome(ev, h->name, "reject");
            break;
        default:
            METRIC_INC(handler_retry);
            if (!ev->first_failure_ms)
                ev->first_failure_ms = clock_wall_ms();
            if ((uint32_t)ev->attempt >= h->retry.max_attempts) {
                any_exhausted = true;
                snprintf(ev->error, sizeof ev->error, "%.160s: %.300s (attempt %d of %u)", h->name,
                         reason[0] ? reason : "handler asked for a retry", ev->attempt,
                         h->retry.max_attempts);
                ev->failed[ev->n_failed++] = h->name;
                event_note_outcome(ev, h->name, "exhausted");
            } else {
                any_retry = true;
                char why[600];
                snprintf(why, sizeof why, "%.160s: %.300s", h->name,
                         reason[0] ? reason : "handler asked for a retry");
                schedule_retry(d, ev, h, why);
                event_note_outcome(ev, h->name, "retry");
            }
            break;
        }
    }
    if (ev->data != own_data) {
        free(ev->data_json);
        ev->data_json = NULL;
        ev->data = own_data;
    }
    ev->schema_version = own_version;

    if (any_reject || any_exhausted || any_upcast)
        dead_letter(d, ev, any_reject ? "reject" : any_exhausted ? "retries_exhausted"
                                                                 : "upcast_failed");
    else if (any_retry)
        ev->status = EV_STATUS_RETRYING;
    else
        ev->status = EV_STATUS_COMPLETED;
    metadata(d, ev);
    return (any_retry || any_reject || any_exhausted || any_upcast) ? 1 : 0;
}

static void load_entry(struct evbus_event *ev, redisReply *entry)
{
    event_reset(ev);
    ev->stream_id = entry->element[0]->str;
    redisReply *fv = entry->element[1];
    ev->raw = field(fv, "event", &ev->raw_len);
    ev->retry_meta = field(fv, "retry", NULL);
    ev->retried_from = field(fv, "retried_from", NULL);
}

void dctx_dispatch_entry(dctx_t *d, redisReply *entry)
{
    const char *id = entry->element[0]->str;
    add_ack(d, id);
    if (entry->element[1]->type != REDIS_REPLY_ARRAY) {
        /* pending entry whose stream entry is gone: ack it away, count it */
        METRIC_INC(ghosts);
        log_warn(d->name, "pending entry %s no longer exists in the stream; acked away", id);
        return;
    }
    struct evbus_event *ev = &d->ev;
    load_entry(ev, entry);
    process_event(d, ev);
}

void dctx_dispatch_recovered(dctx_t *d, redisReply *entry)
{
    const char *id = entry->element[0]->str;
    if (entry->element[1]->type != REDIS_REPLY_ARRAY) {
        dctx_dispatch_entry(d, entry); /* ghost */
        return;
    }
    long long count = 1;
    if (ensure_wc(d)) {
        redisReply *r = redisCommand(d->wc, "XPENDING %s %s %s %s 1", engine_stream(d->eng),
                                     engine_group(d->eng), id, id);
        if (!r) {
            drop_wc(d, "XPENDING");
        } else {
            if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
                r->element[0]->elements >= 4)
                count = r->element[0]->element[3]->integer;
            freeReplyObject(r);
        }
    }
    uint32_t max = engine_max_deliveries(d->eng);
    if (max && count > (long long)max) {
        struct evbus_event *ev = &d->ev;
        add_ack(d, id);
        load_entry(ev, entry);
        if (event_parse(ev) != 0 && !ev->orig_sid[0])
            snprintf(ev->orig_sid, sizeof ev->orig_sid, "%s", id);
        if (!ev->first_failure_ms)
            ev->first_failure_ms = clock_wall_ms();
        event_set_error(ev, "delivered %lld times (max_deliveries %u): the host crashed, was "
                        "killed or hung while handling it", count, max);
        METRIC_INC(poison);
        dead_letter(d, ev, "poison");
        metadata(d, ev);
        return;
    }
    dctx_dispatch_entry(d, entry);
}

int dctx_dispatch_replay(dctx_t *d, const char *job_id, const char *stream_id, const char *raw,
                         size_t len)
{
    struct evbus_event *ev = &d->ev;
    event_reset(ev);
    ev->stream_id = stream_id;
    ev->raw = raw;
    ev->raw_len = len;
    ev->is_replay = true;
    ev->replay_job = strdup(job_id);
    return process_event(d, ev);
}
