/*
 * engine — see engine.h for the threads and what each owns.
 *
 * The durability rule: an entry is acknowledged in the same MULTI/EXEC that
 * records everything still owed for it (a retry in the schedule, a dead
 * letter).  So at every instant an event is either pending in the group,
 * scheduled for retry, in the DLQ, or fully handled, and a crash at any
 * point leaves it in one of those places.
 *
 * Redis errors and event errors never mix: a failed command is a
 * connection problem (reconnect, back off, retry the same writes); a bad
 * event is a dead letter.  Neither path ever turns into the other.
 */
#include "core/engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "client/evbus_client.h"
#include "client/partition.h"
#include "client/rconn.h"
#include "client/pause_lua.h"
#include "core/core_settings.h"
#include "core/crash.h"
#include "core/dispatch.h"
#include "core/keyorder.h"
#include "core/ownership.h"
#include "core/pause.h"
#include "core/reply_arena.h"
#include "core/stats.h"
#include "retention/retention.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/metrics.h"

/* ---- batches and chunks ------------------------------------------------ */

typedef struct batch {
    redisReply *reply;
    atomic_int refs;
} batch_t;

typedef struct chunk {
    batch_t *batch;
    redisReply **entries; /* borrowed from batch->reply */
    size_t count;
    generation_t *gen;    /* pinned */
    int64_t enq_ms;
    int64_t lease_ms;     /* last lease renewal */
    size_t slot;          /* index in the in-flight registry */
    bool recovered;       /* claimed again: check the delivery count first */
    int lane;             /* only worker `lane` may run it (per-key order); -1: any */
    unsigned part;        /* the partition its entries were read from */
    long long epoch;      /* the partition's fencing epoch when read (leases) */
    redisReply **owned;   /* entries gathered for a lane (freed with the chunk), or NULL */
} chunk_t;

static void chunk_free(chunk_t *ch)
{
    free(ch->owned);
    free(ch);
}

static void batch_unref(batch_t *b)
{
    if (atomic_fetch_sub(&b->refs, 1) == 1) {
        rarena_free(b->reply);
        free(b);
    }
}

/* ---- the engine ------------------------------------------------------- */

/*
 * One partition of the stream (docs/scale-out.md, "Key layout"): its keys,
 * the link dispatch writes its outcomes through, its held keys and its
 * trimmer.  Every key here carries the partition's hash tag, so each
 * script and MULTI/EXEC touches one partition.  With partitions: 1 there
 * is one, with today's names.  Fixed for the engine's life.
 */
typedef struct part {
    char *stream, *retry_key, *dlq_stream, *paused_key, *dedup_prefix;
    char *lease_key, *epoch_key; /* core/ownership.h */
    dlink_t link;
    keyorder_t *keys;  /* held keys of per_key handlers in this partition */
    retention_t *ret;  /* this partition's trimmer; maintenance thread */
    /* the group as Redis last reported it (maintenance thread), for
     * /health's per-partition view; METRICS_UNSET until read */
    _Atomic int64_t lag, pending, retry_scheduled, dlq_length;
    /* Ownership (e->leases): own is an own_state_t, written by the
     * ownership thread (and ACQUIRED -> ACTIVE by the reader); epoch is
     * set before own becomes ACQUIRED and read by the reader for each
     * chunk.  Without leases own is ACTIVE for the engine's life. */
    atomic_int own;
    _Atomic long long epoch;
    atomic_int inflight;     /* chunks of this partition queued or running */
    /* ownership thread only */
    int64_t valid_until;     /* clock_mono_ms: our lease surely holds until then */
    int64_t revoke_deadline; /* REVOKING: release by then, drained or not */
    uint64_t revoke_seq;     /* REVOKING: e->read_seq when it began */
    /* what Redis said at the last tick, for /health (e->own_lock) */
    char holder[128];
    long long seen_epoch;
} part_t;

typedef struct worker {
    engine_t *eng;
    pthread_t tid;
    dctx_t ctx;
} worker_t;

struct engine {
    engine_opts_t opts;
    /* CFG_RESTART settings: fixed for the engine's life (from the first
     * generation; a reload keeps them, see config_reload_merge) */
    char *redis_url, *stream, *group, *consumer;
    char *cluster;     /* redis.cluster's seeds, or NULL: one server (client/rconn.h) */
    char *record_key;  /* S:partitions */
    part_t *parts; /* `partitions` of them: the keys of each (fill_parts) */
    unsigned n_parts;
    uint32_t n_workers, command_ms;

    /* CFG_LIVE settings: the serving generation's values, stored by
     * engine_new and engine_swap (apply_live), read lock-free by every
     * thread.  Strings (dlq.archive) are read from a pinned generation, and
     * so are the settings of dispatch (reclaim.max_deliveries, retry.*):
     * dispatch reads them from the generation of the chunk it runs. */
    struct {
        atomic_uint batch_size, block_ms, min_idle_ms, reclaim_interval_ms;
        atomic_uint stale_consumer_ms, circuit_failures, reconnect_max_ms, dlq_capacity;
        atomic_uint connect_ms, unhealthy_after_ms, history_period_ms;
        atomic_uint lease_ms, drain_timeout_ms;
        atomic_bool circuit_stop;
    } live;

    pthread_mutex_t gen_lock;
    generation_t *current;

    /* chunk queue (the only lock on the dispatch path) */
    pthread_mutex_t q_lock;
    pthread_cond_t q_nonempty, q_nonfull;
    chunk_t **q;
    size_t q_cap, q_head, q_len;
    bool q_closed;

    /* in-flight registry for leases */
    pthread_mutex_t inflight_lock;
    chunk_t **inflight;
    size_t inflight_cap;
    atomic_int inflight_n;

    worker_t *workers;
    pthread_t reader_tid, maint_tid, own_tid;
    bool started;
    /* Partition ownership (core/ownership.h): on when partitions > 1.
     * read_seq counts the reader's rounds, so the ownership thread knows
     * when no read that could include a revoked partition is under way;
     * workers_done tells it the workers exited (release, then leave). */
    bool leases;
    char *hosts_key;
    atomic_uint_fast64_t read_seq;
    atomic_bool reader_done, workers_done;
    pthread_mutex_t own_lock; /* hosts, part_t.holder/seen_epoch */
    char **hosts;
    size_t n_hosts;
    int64_t own_tick_ms;      /* wall ms of the last completed ownership tick */
    atomic_bool stop;
    atomic_bool wants_exit;
    atomic_bool failed;    /* stopped by the circuit breaker (circuit.stop) */
    atomic_bool parts_refused; /* the recorded partition count differs: exit 2 */
    bool parts_checked;    /* reader: the recorded count was compared */
    atomic_bool recovered; /* own pending entries re-read: reclaim may start */
    atomic_int threads_running;

    /* paused instances as last read from Redis (maintenance thread) or set
     * by engine_handler_pause; read by every dispatching thread */
    pause_table_t *pauses;
    bool pauses_synced;    /* maintenance thread: the first read happened */

    store_writer_t *meta;
    stats_t *stats;        /* per tenant and type counts, throughput (stats.h) */
    stats_history_t *history; /* the overview's last 15 periods; sampled by maintenance */
    store_replay_worker_t *replay;
    pthread_mutex_t replay_lock;
    dctx_t replay_ctx;
    bool replay_ctx_ready;
    dlink_t replay_link; /* the entry's partition's link, unfenced (replay_lock) */

    /* health */
    pthread_mutex_t health_lock;
    atomic_int redis_failures;
    char last_redis_error[256];
    bool last_reload_ok;
    char prev_digest[80];      /* of the generation the last swap replaced */
    char last_reload_error[2048];
    int64_t last_reload_ms;
    atomic_int dlq_level; /* 0 ok, 1 warning (>=80%), 2 error (>=95%) */
    _Atomic int64_t redis_down_since; /* wall ms of the first failure since the last success */
    int64_t started_ms;
};

#define LIVE(e, f) atomic_load(&(e)->live.f)

/* Store gen's live settings (engine_new, engine_swap). */
static void apply_live(engine_t *e, const generation_t *gen)
{
    const core_settings_t *c = &gen->cfg->core;
    atomic_store(&e->live.batch_size, c->batch_size);
    atomic_store(&e->live.block_ms, c->block_ms);
    atomic_store(&e->live.min_idle_ms, c->reclaim_min_idle_ms);
    atomic_store(&e->live.reclaim_interval_ms, c->reclaim_interval_ms);
    atomic_store(&e->live.stale_consumer_ms, c->stale_consumer_ms);
    atomic_store(&e->live.circuit_failures, c->circuit_failures);
    atomic_store(&e->live.reconnect_max_ms, c->reconnect_max_ms);
    atomic_store(&e->live.dlq_capacity, c->dlq_capacity);
    METRIC_SET(dlq_capacity, c->dlq_capacity);
    atomic_store(&e->live.connect_ms, c->redis_connect_timeout_ms);
    atomic_store(&e->live.unhealthy_after_ms, (unsigned)c->health_unhealthy_after_ms);
    atomic_store(&e->live.history_period_ms, (unsigned)c->stats_history_period_ms);
    atomic_store(&e->live.circuit_stop, c->circuit_stop);
    atomic_store(&e->live.lease_ms, c->own_lease_ms ? c->own_lease_ms : 10000);
    atomic_store(&e->live.drain_timeout_ms, c->own_drain_timeout_ms);
    metrics_set_tenant_labels(gen->cfg->admin.metrics_tenant_label);
    /* before the generation gauge names gen: its handlers' series show */
    for (size_t i = 0; i < gen->n_handlers; i++)
        metrics_handler_set_live(gen->handlers[i].metrics_slot, gen->number);
}

static void sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Sleep in small steps so a stop request is noticed quickly. */
static void sleep_unless_stopped(engine_t *e, int64_t ms)
{
    int64_t end = clock_mono_ms() + ms;
    while (!atomic_load(&e->stop)) {
        int64_t left = end - clock_mono_ms();
        if (left <= 0)
            break;
        sleep_ms(left < 50 ? left : 50);
    }
}

generation_t *engine_current(engine_t *e)
{
    pthread_mutex_lock(&e->gen_lock);
    generation_t *g = generation_ref(e->current);
    pthread_mutex_unlock(&e->gen_lock);
    return g;
}

/* ---- redis connection helpers for the engine's threads ---------------- */

static void note_redis_ok(engine_t *e)
{
    if (atomic_exchange(&e->redis_failures, 0) >= (int)LIVE(e, circuit_failures)) {
        log_info("redis", "Redis is back; circuit closed");
    }
    METRIC_SET(circuit_open, 0);
    /* the first success after an outage: say so once, and clear the error */
    if (atomic_load(&e->redis_down_since)) {
        int64_t since = atomic_exchange(&e->redis_down_since, 0);
        if (since) {
            pthread_mutex_lock(&e->health_lock);
            e->last_redis_error[0] = '\0';
            pthread_mutex_unlock(&e->health_lock);
            METRIC_SET(redis_up, 1);
            log_info("redis", "reconnected to Redis after %lld ms unreachable; errors cleared",
                     (long long)(clock_wall_ms() - since));
        }
    }
}

/* The reader is the circuit's probe: only its consecutive failures count
 * toward circuit.failures, so N means N probes, not N failures spread over
 * every thread that happened to touch Redis at the same moment. */
static _Thread_local bool tls_is_reader;

static void note_redis_error(engine_t *e, const char *what)
{
    METRIC_INC(redis_errors);
    pthread_mutex_lock(&e->health_lock);
    snprintf(e->last_redis_error, sizeof e->last_redis_error, "%.255s", what);
    pthread_mutex_unlock(&e->health_lock);
    int64_t zero = 0;
    if (atomic_compare_exchange_strong(&e->redis_down_since, &zero, clock_wall_ms()))
        METRIC_SET(redis_up, 0);
    if (!tls_is_reader)
        return;
    int n = atomic_fetch_add(&e->redis_failures, 1) + 1;
    if (n == (int)LIVE(e, circuit_failures)) {
        METRIC_SET(circuit_open, 1);
        log_error("redis", "%d consecutive Redis failures: circuit open, probing every %u ms%s",
                  n, LIVE(e, reconnect_max_ms), LIVE(e, circuit_stop) ? "; stopping as configured" : "");
        if (LIVE(e, circuit_stop)) {
            atomic_store(&e->failed, true);
            atomic_store(&e->wants_exit, true);
            engine_request_stop(e);
        }
    }
}

/* Backoff for the n-th consecutive failure: 100 ms doubling, capped; at the
 * cap once the circuit is open. */
static int64_t backoff_ms(engine_t *e)
{
    int n = atomic_load(&e->redis_failures);
    if (n >= (int)LIVE(e, circuit_failures))
        return LIVE(e, reconnect_max_ms);
    int64_t d = 100;
    for (int i = 1; i < n && d < LIVE(e, reconnect_max_ms); i++)
        d *= 2;
    return d > LIVE(e, reconnect_max_ms) ? LIVE(e, reconnect_max_ms) : d;
}

/*
 * The reader, maintenance and ownership threads each own their
 * connections, *rc (client/rconn.h: one server, or the nodes of a Redis
 * Cluster), made on first use.  kc gives the connection of `key`: every
 * command for a partition goes to its stream's (all its keys share the
 * partition's hash tag).  NULL after noting and logging the failure; the
 * caller backs off and tries again.  After any failure the caller calls
 * kc_reset, which closes them (and on a cluster reads the map again).
 */
static redisContext *kc(engine_t *e, evbus_rconn_t **rc, const char *key)
{
    char err[512];
    if (!*rc && !(*rc = evbus_rconn_new(e->redis_url, e->cluster, (int)LIVE(e, connect_ms),
                                        (int)(e->command_ms + LIVE(e, block_ms)), err,
                                        sizeof err))) {
        note_redis_error(e, err);
        return NULL;
    }
    evbus_rconn_set_connect_ms(*rc, (int)LIVE(e, connect_ms));
    redisContext *c = evbus_rconn_get(*rc, key, err, sizeof err);
    if (!c) {
        note_redis_error(e, err);
        log_warn("redis", "connect to %s failed: %s", e->cluster ? "the cluster" : e->redis_url,
                 err);
    }
    return c;
}

static void kc_reset(evbus_rconn_t *rc)
{
    if (rc)
        evbus_rconn_reset(rc);
}

/*
 * Every partition's connection (kc of its stream), for a pipeline over
 * all of them: each partition's commands appended on its own, then every
 * reply read (one server: all the same connection; a cluster: one per
 * master).  Taken after any other kc call, since a get may drop a broken
 * connection.  A calloc'd array to free, or NULL (the failure noted).
 */
static redisContext **part_conns(engine_t *e, evbus_rconn_t **rcn)
{
    redisContext **cs = calloc(e->n_parts, sizeof *cs);
    for (unsigned p = 0; cs && p < e->n_parts; p++)
        if (!(cs[p] = kc(e, rcn, e->parts[p].stream))) {
            free(cs);
            return NULL;
        }
    return cs;
}

/* Create the group (from the start of the stream, so nothing published
 * before the first host started is skipped).  BUSYGROUP is fine. */
static int ensure_group_of(engine_t *e, const char *stream, redisContext *c)
{
    redisReply *r = redisCommand(c, "XGROUP CREATE %s %s 0 MKSTREAM", stream, e->group);
    if (!r)
        return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0) {
        log_error("consumer", "XGROUP CREATE %s %s: %s", stream, e->group, r->str);
        rc = -1;
    }
    freeReplyObject(r);
    return rc;
}

/* The group on every partition's stream. */
static int ensure_group(engine_t *e, evbus_rconn_t **rc)
{
    for (unsigned p = 0; p < e->n_parts; p++) {
        redisContext *c = kc(e, rc, e->parts[p].stream);
        if (!c || ensure_group_of(e, e->parts[p].stream, c) != 0)
            return -1;
    }
    return 0;
}

/* ---- queue -------------------------------------------------------------- */

static int inflight_add(engine_t *e, chunk_t *ch)
{
    pthread_mutex_lock(&e->inflight_lock);
    for (size_t i = 0; i < e->inflight_cap; i++)
        if (!e->inflight[i]) {
            e->inflight[i] = ch;
            ch->slot = i;
            atomic_fetch_add(&e->inflight_n, 1);
            pthread_mutex_unlock(&e->inflight_lock);
            return 0;
        }
    pthread_mutex_unlock(&e->inflight_lock);
    return -1;
}

static void inflight_remove(engine_t *e, chunk_t *ch)
{
    pthread_mutex_lock(&e->inflight_lock);
    if (ch->slot < e->inflight_cap && e->inflight[ch->slot] == ch)
        e->inflight[ch->slot] = NULL;
    atomic_fetch_sub(&e->inflight_n, 1);
    pthread_mutex_unlock(&e->inflight_lock);
}

/* Blocks while the queue is full: back-pressure on the reader.  false
 * once the queue is closed (stopping): the caller keeps the chunk. */
static bool queue_push(engine_t *e, chunk_t *ch)
{
    pthread_mutex_lock(&e->q_lock);
    while (e->q_len == e->q_cap && !e->q_closed)
        pthread_cond_wait(&e->q_nonfull, &e->q_lock);
    bool ok = !e->q_closed;
    if (ok) {
        e->q[(e->q_head + e->q_len) % e->q_cap] = ch;
        e->q_len++;
        /* a lane's chunk is for one worker: wake them all so it wakes */
        if (ch->lane < 0)
            pthread_cond_signal(&e->q_nonempty);
        else
            pthread_cond_broadcast(&e->q_nonempty);
    }
    pthread_mutex_unlock(&e->q_lock);
    return ok;
}

/* The position (from the head) of the oldest chunk worker w may run, or
 * q_len when none: a lane's chunks are taken in queue order by its own
 * worker only, which keeps each key's events in stream order. */
static size_t queue_find(const engine_t *e, int w)
{
    size_t i = 0;
    for (; i < e->q_len; i++) {
        const chunk_t *ch = e->q[(e->q_head + i) % e->q_cap];
        if (ch->lane < 0 || ch->lane == w)
            break;
    }
    return i;
}

static chunk_t *queue_pop(engine_t *e, int w)
{
    pthread_mutex_lock(&e->q_lock);
    size_t at;
    while ((at = queue_find(e, w)) == e->q_len && !e->q_closed)
        pthread_cond_wait(&e->q_nonempty, &e->q_lock);
    chunk_t *ch = NULL;
    if (at < e->q_len) {
        ch = e->q[(e->q_head + at) % e->q_cap];
        for (size_t i = at; i > 0; i--) /* close the gap: the older ones move up */
            e->q[(e->q_head + i) % e->q_cap] = e->q[(e->q_head + i - 1) % e->q_cap];
        e->q_head = (e->q_head + 1) % e->q_cap;
        e->q_len--;
        pthread_cond_signal(&e->q_nonfull);
    }
    pthread_mutex_unlock(&e->q_lock);
    return ch;
}

static void queue_close(engine_t *e)
{
    pthread_mutex_lock(&e->q_lock);
    e->q_closed = true;
    pthread_cond_broadcast(&e->q_nonempty);
    pthread_cond_broadcast(&e->q_nonfull);
    pthread_mutex_unlock(&e->q_lock);
}

/* ---- workers ------------------------------------------------------------ */

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    engine_t *e = w->eng;
    chunk_t *ch;
    char name[16];
    snprintf(name, sizeof name, "evbus-work%d", (int)(w - e->workers));
    pthread_setname_np(pthread_self(), name);
    while ((ch = queue_pop(e, (int)(w - e->workers)))) {
        dctx_set_link(&w->ctx, &e->parts[ch->part].link);
        dctx_set_fence(&w->ctx, ch->epoch);
        dctx_begin(&w->ctx, ch->gen);
        if (ch->recovered)
            for (size_t i = 0; i < ch->count; i++)
                dctx_dispatch_recovered(&w->ctx, ch->entries[i]);
        else
            dctx_dispatch_chunk(&w->ctx, ch->entries, ch->count);
        dctx_flush(&w->ctx);
        inflight_remove(e, ch);
        atomic_fetch_sub(&e->parts[ch->part].inflight, 1);
        generation_unref(ch->gen);
        batch_unref(ch->batch);
        chunk_free(ch);
    }
    atomic_fetch_sub(&e->threads_running, 1);
    return NULL;
}

/* ---- reader ------------------------------------------------------------- */

/* Queue one chunk (it holds a reference to its batch and generation). */
static void enqueue_chunk(engine_t *e, chunk_t *ch)
{
    ch->enq_ms = ch->lease_ms = clock_mono_ms();
    ch->epoch = atomic_load(&e->parts[ch->part].epoch);
    atomic_fetch_add(&e->parts[ch->part].inflight, 1);
    while (inflight_add(e, ch) != 0)
        sleep_ms(1);
    if (!queue_push(e, ch)) {
        /* stopping: the entries stay pending and are redelivered */
        inflight_remove(e, ch);
        atomic_fetch_sub(&e->parts[ch->part].inflight, 1);
        generation_unref(ch->gen);
        batch_unref(ch->batch);
        chunk_free(ch);
    }
}

/* The `event` field of a stream entry, or NULL. */
static const char *entry_event(const redisReply *entry, size_t *len)
{
    const redisReply *fv = entry->element[1];
    if (fv->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t k = 0; k + 1 < fv->elements; k += 2)
        if (fv->element[k]->type == REDIS_REPLY_STRING && strcmp(fv->element[k]->str, "event") == 0) {
            *len = fv->element[k + 1]->len;
            return fv->element[k + 1]->str;
        }
    return NULL;
}

/* Per-key order (core/keyorder.h): one chunk per lane that has entries,
 * each in stream order, run by that lane's worker only.  Takes g. */
static void enqueue_lanes(engine_t *e, batch_t *b, unsigned part, redisReply **entries, size_t n,
                          bool recovered, generation_t *g)
{
    unsigned lanes = e->n_workers;
    unsigned *lane_of = malloc(n * sizeof *lane_of);
    size_t *count = calloc(lanes, sizeof *count);
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        const char *raw = entry_event(entries[i], &len);
        keyorder_key_t key;
        /* an entry without a key (a ghost, a bad envelope) is dead-lettered
         * or acked away by lane 0: nothing to order */
        lane_of[i] = raw && keyorder_key_of(raw, len, &key) == 0 ? keyorder_lane(&key, lanes) : 0;
        count[lane_of[i]]++;
    }
    for (unsigned l = 0; l < lanes; l++) {
        if (!count[l])
            continue;
        chunk_t *ch = calloc(1, sizeof *ch);
        ch->owned = malloc(count[l] * sizeof *ch->owned);
        for (size_t i = 0; i < n; i++)
            if (lane_of[i] == l)
                ch->owned[ch->count++] = entries[i];
        ch->entries = ch->owned;
        ch->batch = b;
        atomic_fetch_add(&b->refs, 1);
        ch->recovered = recovered;
        ch->lane = (int)l;
        ch->part = part;
        ch->gen = generation_ref(g);
        enqueue_chunk(e, ch);
    }
    generation_unref(g);
    free(lane_of);
    free(count);
}

/* A batch for `reply`, holding the reader's own reference: each chunk
 * takes one more, and the reader drops its own (batch_unref) once every
 * partition's entries are queued, so the reply outlives every chunk. */
static batch_t *batch_new(redisReply *reply)
{
    batch_t *b = calloc(1, sizeof *b);
    b->reply = reply;
    atomic_init(&b->refs, 1);
    return b;
}

/* Split entries of partition `part` (borrowed from b's reply) into chunks,
 * one per worker at most, pin the generation for each and queue them.
 * `recovered`: claimed again, the worker checks delivery counts.  While
 * the generation has a per_key handler the chunks are lanes. */
static void enqueue_entries(engine_t *e, batch_t *b, unsigned part, redisReply **entries, size_t n,
                            bool recovered)
{
    generation_t *g = engine_current(e);
    if (g->per_key && e->n_workers > 1) {
        enqueue_lanes(e, b, part, entries, n, recovered, g);
        return;
    }
    size_t per = n < 64 ? n : (n + e->n_workers - 1) / e->n_workers;
    for (size_t off = 0; off < n; off += per) {
        chunk_t *ch = calloc(1, sizeof *ch);
        ch->batch = b;
        atomic_fetch_add(&b->refs, 1);
        ch->entries = entries + off;
        ch->count = off + per > n ? n - off : per;
        ch->recovered = recovered;
        ch->lane = -1;
        ch->part = part;
        ch->gen = generation_ref(g);
        enqueue_chunk(e, ch);
    }
    generation_unref(g);
}

/*
 * Process this consumer's own pending entries one at a time, before any new
 * one, so a poison pill among them only ever bumps its own counter.  Each
 * entry is taken with XCLAIM (to ourselves, min-idle 0) rather than
 * XREADGROUP ... 0: Redis persists XCLAIM's delivery count (RETRYCOUNT in
 * the AOF) but not the one XREADGROUP ... 0 bumps, and the poison-pill
 * bound must survive a Redis restart.  Runs once per engine start: after a
 * reconnect, entries still in flight are acked by their workers and
 * anything else is reclaimed after min_idle.
 */
static int recover_own_pending(engine_t *e, part_t *pt, redisContext *c, dctx_t *ctx)
{
    char start[80] = "-";
    size_t n = 0;
    dctx_set_link(ctx, &pt->link);
    dctx_set_fence(ctx, atomic_load(&pt->epoch));
    while (!atomic_load(&e->stop)) {
        redisReply *r = redisCommand(c, "XPENDING %s %s %s + 100 %s", pt->stream, e->group, start,
                                     e->consumer);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            bool nogroup = r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOGROUP", 7) == 0;
            if (r)
                freeReplyObject(r);
            return nogroup ? 0 : -1;
        }
        if (r->elements == 0) {
            freeReplyObject(r);
            break;
        }
        for (size_t i = 0; i < r->elements && !atomic_load(&e->stop); i++) {
            const char *id = r->element[i]->element[0]->str;
            snprintf(start, sizeof start, "(%s", id);
            redisReply *cr = redisCommand(c, "XCLAIM %s %s %s 0 %s", pt->stream, e->group,
                                          e->consumer, id);
            if (!cr || cr->type != REDIS_REPLY_ARRAY) {
                if (cr)
                    freeReplyObject(cr);
                freeReplyObject(r);
                return -1;
            }
            if (cr->elements == 0) {
                /* Redis 7 drops a deleted entry from the PEL on XCLAIM */
                METRIC_INC(ghosts);
                log_warn("consumer", "pending entry %s no longer exists in the stream; dropped",
                         id);
            } else {
                generation_t *g = engine_current(e);
                dctx_begin(ctx, g);
                dctx_dispatch_recovered(ctx, cr->element[0]);
                dctx_flush(ctx);
                generation_unref(g);
                n++;
            }
            freeReplyObject(cr);
        }
        freeReplyObject(r);
    }
    if (n)
        log_info("consumer", "recovered %zu pending entr%s of consumer %s in %s", n,
                 n == 1 ? "y" : "ies", e->consumer, pt->stream);
    return 0;
}

static int recover_all_pending(engine_t *e, evbus_rconn_t **rc, dctx_t *ctx)
{
    for (unsigned p = 0; p < e->n_parts; p++) {
        redisContext *c = kc(e, rc, e->parts[p].stream);
        if (!c || recover_own_pending(e, &e->parts[p], c, ctx) != 0)
            return -1;
    }
    return 0;
}

/*
 * Take partition pt over (its lease was just acquired: OWN_ACQUIRED, and
 * none of its chunks is in flight here).  Every entry pending in the
 * group there was read by a previous owner, which the new epoch fenced:
 * claim them all (min-idle 0: no other host may ack them any more), read
 * the partition's holds, and handle the claimed entries one at a time in
 * stream order before anything new is read — so a key's event the old
 * owner had in flight is handled before the key's later events.
 */
static int take_over(engine_t *e, part_t *pt, redisContext *c, dctx_t *ctx)
{
    char cursor[64] = "0-0";
    size_t claimed = 0;
    do {
        redisReply *r = redisCommand(c, "XAUTOCLAIM %s %s %s 0 %s COUNT 1000 JUSTID",
                                     pt->stream, e->group, e->consumer, cursor);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
            r->element[0]->type != REDIS_REPLY_STRING) {
            bool nogroup = r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOGROUP", 7) == 0;
            if (r && r->type == REDIS_REPLY_ERROR && !nogroup)
                log_warn("ownership", "claiming the pending entries of %s: %s", pt->stream,
                         r->str);
            if (r)
                freeReplyObject(r);
            if (!nogroup)
                return -1;
            break; /* no group yet: nothing pending */
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        if (r->element[1]->type == REDIS_REPLY_ARRAY)
            claimed += r->element[1]->elements;
        freeReplyObject(r);
    } while (strcmp(cursor, "0-0") != 0 && !atomic_load(&e->stop));
    char kerr[300];
    if (keyorder_load(pt->keys, c, kerr, sizeof kerr) != 0) {
        log_warn("keyorder", "%s", kerr);
        return -1;
    }
    if (recover_own_pending(e, pt, c, ctx) != 0)
        return -1;
    log_info("ownership", "took %s over (epoch %lld): %zu pending entr%s claimed and handled "
             "first, %zu key%s held", pt->stream, atomic_load(&pt->epoch), claimed,
             claimed == 1 ? "y" : "ies", keyorder_held_total(pt->keys),
             keyorder_held_total(pt->keys) == 1 ? "" : "s");
    return 0;
}

/* Take over every partition whose lease the ownership thread acquired and
 * whose chunks from an earlier ownership are done.  0, or -1 on a Redis
 * failure (the partition stays ACQUIRED: tried again next round). */
static int take_over_acquired(engine_t *e, evbus_rconn_t **rc, dctx_t *ctx)
{
    for (unsigned p = 0; p < e->n_parts && !atomic_load(&e->stop); p++) {
        part_t *pt = &e->parts[p];
        if (atomic_load(&pt->own) != OWN_ACQUIRED || atomic_load(&pt->inflight) != 0)
            continue;
        redisContext *c = kc(e, rc, pt->stream);
        if (!c || take_over(e, pt, c, ctx) != 0)
            return -1;
        int want = OWN_ACQUIRED;
        /* lost meanwhile: the ownership thread set NONE, and the writes
         * made for it were fenced */
        atomic_compare_exchange_strong(&pt->own, &want, OWN_ACTIVE);
    }
    return 0;
}

/* Retries that will come back by themselves: parked entries of a paused
 * instance wait for an operator, so they do not keep --exit-idle up. */
static bool retries_scheduled(engine_t *e, evbus_rconn_t **rc)
{
    for (unsigned p = 0; p < e->n_parts; p++) {
        redisContext *c = kc(e, rc, e->parts[p].stream);
        if (!c)
            return true; /* cannot tell: not idle */
        redisReply *r = redisCommand(c, "ZCOUNT %s -inf (%lld", e->parts[p].retry_key,
                                     EVBUS_RETRY_PARKED_MS);
        bool any = !r || r->type != REDIS_REPLY_INTEGER || r->integer > 0;
        if (r)
            freeReplyObject(r);
        if (any)
            return true;
    }
    return false;
}

/* Read the holds of per_key handlers (once per start, before any entry is
 * dispatched: no lane is busy). */
static int load_keys(engine_t *e, evbus_rconn_t **rc, char *err, size_t errlen)
{
    size_t n = 0;
    for (unsigned p = 0; p < e->n_parts; p++) {
        redisContext *c = kc(e, rc, e->parts[p].stream);
        if (!c) {
            snprintf(err, errlen, "no connection");
            return -1;
        }
        if (keyorder_load(e->parts[p].keys, c, err, errlen) != 0) {
            log_warn("keyorder", "%s", err);
            return -1;
        }
        n += keyorder_held_total(e->parts[p].keys);
    }
    if (n)
        log_info("keyorder", "%zu key%s of per_key handlers %s held behind a retry", n,
                 n == 1 ? "" : "s", n == 1 ? "is" : "are");
    return 0;
}

/* The partition whose stream a reply names; n_parts when none does. */
static unsigned part_of(const engine_t *e, const redisReply *name)
{
    if (name->type != REDIS_REPLY_STRING)
        return e->n_parts;
    for (unsigned p = 0; p < e->n_parts; p++)
        if (strcmp(e->parts[p].stream, name->str) == 0)
            return p;
    return e->n_parts;
}

static void *reader_main(void *arg)
{
    engine_t *e = arg;
    tls_is_reader = true;
    pthread_setname_np(pthread_self(), "evbus-reader");
    evbus_rconn_t *rcn = NULL;
    redisContext *c = NULL; /* the connection of this round's read */
    uint64_t node_rr = 0;   /* cluster: the partition read next, in turn */
    dctx_t rctx;
    dctx_init(&rctx, &e->parts[0].link, "recovery");
    /* XREADGROUP GROUP g c COUNT n BLOCK ms STREAMS s0 .. sP-1 > .. >: one
     * read over every partition (one server); COUNT is per stream, so it
     * is batch_size split over the partitions */
    size_t rargc = 9 + 2 * (size_t)e->n_parts;
    const char **rargv = malloc(rargc * sizeof *rargv);
    if (!rargv) {
        log_error("consumer", "out of memory");
        atomic_store(&e->wants_exit, true);
        queue_close(e);
        dctx_release(&rctx);
        atomic_fetch_sub(&e->threads_running, 1);
        return NULL;
    }
    bool grouped = false, group_logged = false;
    int64_t last_activity = clock_mono_ms();
    uint32_t conn_block = 0; /* the BLOCK the read timeout was set for */
    while (!atomic_load(&e->stop)) {
        if (!(c = kc(e, &rcn, e->parts[0].stream))) {
            sleep_unless_stopped(e, backoff_ms(e));
            continue;
        }
        /* block_ms is live: read it each round */
        uint32_t block = LIVE(e, block_ms);
        if (e->opts.exit_idle_ms > 0 && (uint32_t)e->opts.exit_idle_ms < block)
            block = (uint32_t)e->opts.exit_idle_ms;
        if (block == 0)
            block = 1;
        if (block > conn_block && !e->cluster) {
            /* the read timeout must outlast the BLOCK, or a quiet stream
             * would look like a dead server; a new connection starts with
             * command_ms + block_ms (ensure_conn), never less */
            int64_t to = (int64_t)e->command_ms + block;
            struct timeval tv = {(time_t)(to / 1000), (suseconds_t)(to % 1000) * 1000};
            redisSetTimeout(c, tv);
            conn_block = block;
        }
        if (!e->parts_checked) {
            /* evbusd compared it before starting unless Redis was down */
            generation_t *g = engine_current(e);
            char msg[2048];
            redisContext *sc = kc(e, &rcn, e->stream), *rec = kc(e, &rcn, e->record_key);
            int prc = sc && rec ? core_partitions_check_on(g->cfg, rec, sc, true, msg, sizeof msg)
                                : -1;
            if (!sc || !rec)
                snprintf(msg, sizeof msg, "no connection to check the partition count");
            generation_unref(g);
            if (prc > 0) {
                log_error("evbusd", "%s", msg);
                atomic_store(&e->parts_refused, true);
                atomic_store(&e->wants_exit, true);
                break;
            }
            if (prc < 0) {
                note_redis_error(e, msg);
                kc_reset(rcn);
                sleep_unless_stopped(e, backoff_ms(e));
                continue;
            }
            e->parts_checked = true;
        }
        if (!grouped) {
            /* the holds first: recovering our pending entries must already
             * see which keys wait behind a retry */
            char kerr[300];
            /* with leases, each partition is recovered when taken over */
            if (ensure_group(e, &rcn) != 0 ||
                (!atomic_load(&e->recovered) && !e->leases &&
                 (load_keys(e, &rcn, kerr, sizeof kerr) != 0 ||
                  recover_all_pending(e, &rcn, &rctx) != 0))) {
                note_redis_error(e, c->err ? c->errstr : "group setup failed");
                kc_reset(rcn);
                sleep_unless_stopped(e, backoff_ms(e));
                continue;
            }
            grouped = true;
            atomic_store(&e->recovered, true);
            note_redis_ok(e);
        }
        /* Pace reading while a healthy metadata writer catches up (bounded:
         * at most 2 s per batch, and never when PostgreSQL is down). */
        for (int waited = 0; waited < 2000 && store_writer_congested(e->meta) &&
                             !atomic_load(&e->stop);
             waited++)
            sleep_ms(1);
        if (e->leases && take_over_acquired(e, &rcn, &rctx) != 0) {
            note_redis_error(e, "taking a partition over failed");
            kc_reset(rcn);
            sleep_unless_stopped(e, backoff_ms(e));
            grouped = false;
            continue;
        }
        /* the partitions this round reads: those held and active (all of
         * them without leases); a round that starts after a partition was
         * revoked never reads it (read_seq, see own_release_drained) */
        atomic_fetch_add(&e->read_seq, 1);
        unsigned n_read = 0;
        if (e->cluster) {
            /* a cluster refuses a command whose keys are in two slots
             * (CROSSSLOT), even on one node: one partition per round, in
             * turn, blocking briefly so that an idle partition costs
             * little and a busy one waits for at most one turn */
            c = NULL;
            for (unsigned k = 0; k < e->n_parts && !c; k++) {
                unsigned p = (unsigned)((node_rr + k) % e->n_parts);
                if (atomic_load(&e->parts[p].own) != OWN_ACTIVE)
                    continue;
                node_rr = p + 1;
                rargv[9 + n_read++] = e->parts[p].stream;
                if (!(c = kc(e, &rcn, e->parts[p].stream)))
                    n_read = 0;
            }
            if (block > 2)
                block = 2;
        } else {
            for (unsigned p = 0; p < e->n_parts; p++)
                if (atomic_load(&e->parts[p].own) == OWN_ACTIVE)
                    rargv[9 + n_read++] = e->parts[p].stream;
        }
        if (n_read == 0 || !c) { /* none held (yet): the ownership thread works on it */
            sleep_unless_stopped(e, 50);
            continue;
        }
        for (unsigned k = 0; k < n_read; k++)
            rargv[9 + n_read + k] = ">";
        if (e->leases && block > LIVE(e, lease_ms) / 4)
            block = LIVE(e, lease_ms) / 4; /* see a revoke or a loss within a lease */
        char count[16], blockms[16];
        unsigned per_stream = (LIVE(e, batch_size) + n_read - 1) / n_read;
        snprintf(count, sizeof count, "%u", per_stream ? per_stream : 1);
        snprintf(blockms, sizeof blockms, "%u", block);
        const char *head[] = {"XREADGROUP", "GROUP", e->group, e->consumer, "COUNT", count,
                              "BLOCK", blockms, "STREAMS"};
        memcpy(rargv, head, sizeof head);
        /* built in one arena, freed with rarena_free() (by the last chunk) */
        redisReply *r = rarena_command(c, (int)(9 + 2 * n_read), rargv);
        if (!r) {
            char what[300];
            snprintf(what, sizeof what, "XREADGROUP: %s", c->errstr);
            log_warn("consumer", "%s; reconnecting", what);
            note_redis_error(e, what);
            kc_reset(rcn);
            METRIC_INC(reconnects);
            sleep_unless_stopped(e, backoff_ms(e));
            grouped = false;
            continue;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            if (strncmp(r->str, "NOGROUP", 7) == 0) {
                /* Redis restarted without persistence, FLUSHALL, failover:
                 * recreate once, log once per occurrence, never loop. */
                if (!group_logged)
                    log_warn("consumer", "group %s on %s vanished (%s); recreating it", e->group,
                             e->stream, r->str);
                group_logged = true;
                METRIC_INC(nogroup);
                rarena_free(r);
                if (ensure_group(e, &rcn) != 0) {
                    note_redis_error(e, "XGROUP CREATE failed");
                    sleep_unless_stopped(e, backoff_ms(e));
                }
                continue;
            }
            char what[300];
            snprintf(what, sizeof what, "XREADGROUP: %s", r->str);
            log_warn("consumer", "%s", what);
            note_redis_error(e, what);
            if (evbus_rconn_is_redirect(r))
                kc_reset(rcn); /* the map changed: read it again */
            rarena_free(r);
            sleep_unless_stopped(e, backoff_ms(e));
            continue;
        }
        group_logged = false;
        note_redis_ok(e);
        if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
            /* one [stream, entries] per partition that had new entries */
            batch_t *b = batch_new(r);
            size_t read = 0;
            for (size_t i = 0; i < r->elements; i++) {
                redisReply *sr = r->element[i];
                if (sr->type != REDIS_REPLY_ARRAY || sr->elements < 2 ||
                    sr->element[1]->type != REDIS_REPLY_ARRAY || !sr->element[1]->elements)
                    continue;
                unsigned p = part_of(e, sr->element[0]);
                if (p == e->n_parts) {
                    log_error("consumer", "XREADGROUP answered for a stream not asked for");
                    continue;
                }
                redisReply *entries = sr->element[1];
                int own = atomic_load(&e->parts[p].own);
                if (own != OWN_ACTIVE && own != OWN_REVOKING) {
                    /* the lease was lost during the read: these stay
                     * pending, and the new owner claims them */
                    log_warn("ownership", "%zu entr%s read from %s after its lease was lost: left "
                             "for its new owner", entries->elements,
                             entries->elements == 1 ? "y" : "ies", e->parts[p].stream);
                    continue;
                }
                read += entries->elements;
                enqueue_entries(e, b, p, entries->element, entries->elements, false);
            }
            METRIC_ADD(events_read, read);
            batch_unref(b);
            if (read) {
                last_activity = clock_mono_ms();
                continue;
            }
        } else {
            rarena_free(r);
        }
        if (e->opts.exit_idle_ms > 0 && atomic_load(&e->inflight_n) == 0 &&
            clock_mono_ms() - last_activity >= e->opts.exit_idle_ms) {
            if (!retries_scheduled(e, &rcn)) {
                log_info("consumer", "idle for %d ms; exiting as asked (--exit-idle)",
                         e->opts.exit_idle_ms);
                atomic_store(&e->wants_exit, true);
                break;
            }
            last_activity = clock_mono_ms() - e->opts.exit_idle_ms / 2;
        }
    }
    queue_close(e);
    dctx_release(&rctx);
    free(rargv);
    evbus_rconn_free(rcn);
    atomic_store(&e->reader_done, true);
    atomic_fetch_sub(&e->threads_running, 1);
    return NULL;
}

/* ---- maintenance --------------------------------------------------------- */

/* Whether this host works on partition pt now: always without leases;
 * with them, while it holds pt's lease and reads it.  The maintenance
 * work that writes to a partition (retry mover, reclaim, stale consumers,
 * the DLQ's capacity archive) runs only there, so two hosts never race on
 * it; reading work (samples for /health) runs on every partition. */
static bool part_held(const part_t *pt) { return atomic_load(&pt->own) == OWN_ACTIVE; }

/*
 * Move due retries back into the stream.  One Lua script per call: read the
 * due members, XADD each as a new entry carrying its retry metadata, ZREM
 * it.  Atomic on the server, so two hosts racing never lose or double a
 * retry.  Members are "<meta json>\n<raw event>"; one without the newline
 * is dead-lettered with the reason in ARGV[3] (unparseable).
 *
 * A member whose instance is paused (a field of the pause hash KEYS[4] at
 * this very moment: Redis, not this host's copy, decides) is parked
 * instead: its score moves up by ARGV[4] (EVBUS_RETRY_PARKED_MS), out of
 * every range this script reads, so a paused handler costs one rewrite per
 * entry and no loop.  evbus_retry_unpark() (client/pause.c) gives it back
 * its due time on resume.  Returns {examined, moved}.
 */
static const char *MOVE_RETRIES_LUA =
    EVBUS_PAUSE_LUA_FUNCS
    /* fenced (leases): only the holder of the epoch in ARGV[5] moves */
    "if ARGV[5] ~= '' and redis.call('GET', KEYS[5]) ~= ARGV[5] then return {-1, 0} end\n"
    "local any_paused = redis.call('EXISTS', KEYS[4]) == 1\n"
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', "
    "0, ARGV[2])\n"
    "local moved = 0\n"
    "for i = 1, #due, 2 do\n"
    "  local m = due[i]\n"
    "  local nl = string.find(m, '\\n', 1, true)\n"
    "  if nl and any_paused and is_paused(m, KEYS[4]) then\n"
    "    local parked = tonumber(due[i + 1]) + tonumber(ARGV[4])\n"
    "    redis.call('ZADD', KEYS[1], string.format('%.0f', parked), m)\n"
    "  else\n"
    "    if nl then\n"
    "      redis.call('XADD', KEYS[2], '*', 'event', string.sub(m, nl + 1), 'retry', "
    "string.sub(m, 1, nl - 1))\n"
    "    else\n"
    "      redis.call('XADD', KEYS[3], '*', 'event', m, 'reason', ARGV[3], 'error', "
    "'malformed retry schedule entry', 'stream', KEYS[2])\n"
    "    end\n"
    "    redis.call('ZREM', KEYS[1], m)\n"
    "    moved = moved + 1\n"
    "  end\n"
    "end\n"
    "return {#due / 2, moved}\n";

static int move_due_retries(const engine_t *e, const part_t *pt, redisContext *c)
{
    char now[32], parked[32], epoch[32] = "";
    snprintf(now, sizeof now, "%lld", (long long)clock_wall_ms());
    snprintf(parked, sizeof parked, "%lld", EVBUS_RETRY_PARKED_MS);
    if (e->leases)
        snprintf(epoch, sizeof epoch, "%lld", atomic_load(&pt->epoch));
    for (;;) {
        const char *argv[] = {"EVAL", MOVE_RETRIES_LUA, "5", pt->retry_key, pt->stream,
                              pt->dlq_stream, pt->paused_key,
                              e->leases ? pt->epoch_key : pt->stream, now, "500",
                              evbus_dlq_reason_name(EVBUS_DLQ_UNPARSEABLE), parked, epoch};
        redisReply *r = redisCommandArgv(c, 13, argv, NULL);
        if (!r)
            return -1;
        if (r->type == REDIS_REPLY_ERROR) {
            log_error("retry", "moving due retries: %s", r->str);
            freeReplyObject(r);
            return -1;
        }
        long long examined = 0, moved = 0;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
            examined = r->element[0]->integer;
            moved = r->element[1]->integer;
        }
        freeReplyObject(r);
        if (examined < 0)
            return 0; /* fenced: the partition's new owner moves them */
        if (moved > 0)
            METRIC_ADD(retries_due, (uint64_t)moved);
        if (examined < 500)
            return 0;
    }
}

/*
 * Paused instances: read the pause hash and publish it to the dispatching
 * threads (pause_table_apply).  Polling every PAUSE_POLL_MS rather than
 * subscribing keeps one code path for every way the hash changes (this
 * host, another host, evbusctl, a Redis restart that lost it) and costs
 * one small HGETALL per poll.  When an instance stopped being paused, and
 * once at start, the schedule is unparked: evbus_handler_resume() does that
 * itself, but a resume that died half-way, or a hash lost with Redis, is
 * healed here.
 */
#define PAUSE_POLL_MS 250

static const char *rec_str(const json_t *rec, const char *key)
{
    const char *v = json_string_value(json_object_get(rec, key));
    return v ? v : "";
}

static void log_pause_changes(const json_t *before, const json_t *after)
{
    const char *name;
    json_t *rec;
    json_object_foreach((json_t *)after, name, rec)
        if (!json_object_get(before, name))
            log_info("pause", "handler instance %s is paused (by '%s' since %s%s%s): its "
                     "deliveries are deferred to the retry schedule", name, rec_str(rec, "by"),
                     rec_str(rec, "since"), rec_str(rec, "reason")[0] ? ": " : "",
                     rec_str(rec, "reason"));
    json_object_foreach((json_t *)before, name, rec)
        if (!json_object_get(after, name))
            log_info("pause", "handler instance %s is resumed", name);
}

static int sync_pauses(engine_t *e, evbus_rconn_t **rc)
{
    char err[256];
    redisContext *c = kc(e, rc, e->parts[0].stream);
    if (!c)
        return -1;
    uint64_t seen = pause_table_version(e->pauses);
    /* a pause writes every partition's copy, in order: partition 0's
     * is the first written (engine_handler_pause) */
    json_t *doc = evbus_handler_pauses(c, e->parts[0].stream, err, sizeof err);
    if (!doc) {
        if (c->err)
            return -1;
        log_warn("pause", "reading %s: %s; keeping the last state read", e->parts[0].paused_key,
                 err);
        return 0;
    }
    json_t *before = pause_table_json(e->pauses);
    bool applied;
    bool resumed = pause_table_apply_read(e->pauses, doc, seen, &applied);
    if (!applied) { /* a pause call was newer than this read: the next poll */
        json_decref(before);
        json_decref(doc);
        return 0;
    }
    log_pause_changes(before, doc);
    json_decref(before);
    json_decref(doc);
    if (resumed || !e->pauses_synced) {
        long long n = 0;
        for (unsigned p = 0; p < e->n_parts; p++) {
            if (!(c = kc(e, rc, e->parts[p].stream)))
                return -1;
            long long k = evbus_retry_unpark(c, e->parts[p].stream, err, sizeof err);
            if (k < 0)
                return c->err ? -1 : 0;
            n += k;
        }
        if (n > 0)
            log_info("pause", "resumed handlers: %lld deferred deliver%s due again", n,
                     n == 1 ? "y" : "ies");
        e->pauses_synced = true;
    }
    return 0;
}

/* Renew the lease of chunks that are taking long, so a live host's
 * in-flight work is never claimed by another consumer and run twice. */
static int renew_leases(engine_t *e, evbus_rconn_t **rcn)
{
    int64_t lease_every = LIVE(e, min_idle_ms) / 3 ? LIVE(e, min_idle_ms) / 3 : 1;
    int64_t now = clock_mono_ms();
    pthread_mutex_lock(&e->inflight_lock);
    int rc = 0;
    for (size_t i = 0; i < e->inflight_cap && rc == 0; i++) {
        chunk_t *ch = e->inflight[i];
        if (!ch || now - ch->lease_ms < lease_every || atomic_load(&e->parts[ch->part].own) == OWN_NONE)
            continue;
        size_t argc = 0;
        const char **argv = malloc((ch->count + 8) * sizeof *argv);
        char idle[32];
        snprintf(idle, sizeof idle, "%lld", (long long)lease_every);
        redisContext *c = kc(e, rcn, e->parts[ch->part].stream);
        if (!c) {
            free(argv);
            rc = -1;
            break;
        }
        argv[argc++] = "XCLAIM";
        argv[argc++] = e->parts[ch->part].stream;
        argv[argc++] = e->group;
        argv[argc++] = e->consumer;
        argv[argc++] = idle;
        for (size_t k = 0; k < ch->count; k++)
            argv[argc++] = ch->entries[k]->element[0]->str;
        argv[argc++] = "JUSTID";
        redisReply *r = redisCommandArgv(c, (int)argc, argv, NULL);
        free(argv);
        if (!r) {
            rc = -1;
            break;
        }
        freeReplyObject(r);
        ch->lease_ms = now;
        METRIC_INC(leases);
    }
    pthread_mutex_unlock(&e->inflight_lock);
    return rc;
}

/*
 * Claim idle entries of other (dead) consumers one at a time with
 * XAUTOCLAIM COUNT 1, so a poison pill only bumps its own counter.  Each
 * claimed entry goes to the workers as a chunk of one, flagged so the
 * worker checks its delivery count first: a slow handler never holds up
 * this thread's leases and retry moves.
 */
static int reclaim_idle(engine_t *e, unsigned part, redisContext *c)
{
    char cursor[64] = "0-0", idle[16];
    snprintf(idle, sizeof idle, "%u", LIVE(e, min_idle_ms));
    for (int rounds = 0; rounds < 1000 && !atomic_load(&e->stop); rounds++) {
        const char *argv[] = {"XAUTOCLAIM", e->parts[part].stream, e->group, e->consumer, idle,
                              cursor, "COUNT", "1"};
        redisReply *r = rarena_command(c, 8, argv);
        if (!r)
            return -1;
        if (r->type == REDIS_REPLY_ERROR) {
            bool nogroup = strncmp(r->str, "NOGROUP", 7) == 0;
            if (!nogroup)
                log_warn("reclaim", "XAUTOCLAIM: %s", r->str);
            rarena_free(r);
            return nogroup ? 0 : -1;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 2) {
            rarena_free(r);
            return 0;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str ? r->element[0]->str : "0-0");
        if (r->elements >= 3 && r->element[2]->type == REDIS_REPLY_ARRAY &&
            r->element[2]->elements > 0) {
            /* Redis 7 removed these from the PEL already: entries trimmed or
             * deleted from the stream.  Count them; nothing to retry. */
            METRIC_ADD(ghosts, r->element[2]->elements);
            log_warn("reclaim", "%zu pending entr%s no longer in the stream (trimmed or deleted)",
                     r->element[2]->elements, r->element[2]->elements == 1 ? "y was" : "ies were");
        }
        redisReply *claimed = r->element[1];
        bool queued = false;
        if (claimed->type == REDIS_REPLY_ARRAY && claimed->elements == 1 &&
            claimed->element[0]->type == REDIS_REPLY_ARRAY && claimed->element[0]->elements >= 2) {
            METRIC_INC(reclaimed);
            batch_t *b = batch_new(r); /* takes r */
            enqueue_entries(e, b, part, claimed->element, 1, true);
            batch_unref(b);
            queued = true;
        }
        bool done = strcmp(cursor, "0-0") == 0;
        if (!queued)
            rarena_free(r);
        if (done)
            break;
    }
    return 0;
}

/* Remove consumers idle for long that own nothing. */
static int remove_stale_consumers(engine_t *e, const char *stream, redisContext *c)
{
    redisReply *r = redisCommand(c, "XINFO CONSUMERS %s %s", stream, e->group);
    if (!r)
        return -1;
    if (r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements; i++) {
            redisReply *info = r->element[i];
            const char *name = NULL;
            long long pending = -1, idle = -1;
            for (size_t k = 0; k + 1 < info->elements; k += 2) {
                const char *key = info->element[k]->str;
                redisReply *v = info->element[k + 1];
                if (strcmp(key, "name") == 0)
                    name = v->str;
                else if (strcmp(key, "pending") == 0)
                    pending = v->integer;
                else if (strcmp(key, "idle") == 0)
                    idle = v->integer;
            }
            if (name && strcmp(name, e->consumer) != 0 && pending == 0 &&
                idle >= (long long)LIVE(e, stale_consumer_ms)) {
                redisReply *d = redisCommand(c, "XGROUP DELCONSUMER %s %s %s", stream,
                                             e->group, name);
                if (d) {
                    log_info("reclaim", "removed stale consumer %s (idle %lld ms, nothing pending)",
                             name, idle);
                    METRIC_INC(stale_consumers);
                    freeReplyObject(d);
                }
            }
        }
    }
    freeReplyObject(r);
    return 0;
}

/*
 * DLQ capacity.  Thresholds are edge-triggered (one WARNING when crossing
 * 80%, one ERROR when crossing 95%) on the dead letters of all partitions
 * together.  Overflow policy: the oldest entries beyond capacity are
 * appended to the archive file (fsync'd) and only then deleted from the
 * stream, so a dead letter is never dropped silently.  With partitions,
 * each partition's dead-letter stream keeps at most its share of the
 * capacity (capacity / partitions, rounded up).
 */
static int archive_dlq_excess(const part_t *pt, redisContext *c, long long len, uint32_t share,
                              const char *archive)
{
    long long excess = len - share;
    redisReply *r = redisCommand(c, "XRANGE %s - + COUNT %lld", pt->dlq_stream, excess);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        return r ? 0 : -1;
    }
    char why[256];
    if (evbus_dlq_archive_append(archive, r->element, r->elements, why, sizeof why) != 0) {
        log_error("dlq", "DLQ over capacity but the archive was not written (%s): keeping all "
                  "entries", why);
        freeReplyObject(r);
        return 0;
    }
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *d = redisCommand(c, "XDEL %s %s", pt->dlq_stream,
                                     r->element[i]->element[0]->str);
        if (d)
            freeReplyObject(d);
    }
    METRIC_ADD(dlq_archived, r->elements);
    log_warn("dlq", "archived %zu oldest dead letters to %s before removing them (capacity %u "
             "of %s)", r->elements, archive, share, pt->dlq_stream);
    freeReplyObject(r);
    return 0;
}

static int watch_dlq_with(engine_t *e, evbus_rconn_t **rcn, uint32_t cap, const char *archive)
{
    redisContext **cs = part_conns(e, rcn);
    if (!cs)
        return -1;
    for (unsigned p = 0; p < e->n_parts; p++)
        redisAppendCommand(cs[p], "XLEN %s", e->parts[p].dlq_stream);
    long long len = 0;
    int rc = 0;
    for (unsigned p = 0; p < e->n_parts; p++) {
        redisReply *r = NULL;
        if (redisGetReply(cs[p], (void **)&r) != REDIS_OK) {
            rc = -1;
            break;
        }
        long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        atomic_store(&e->parts[p].dlq_length, n);
        len += n;
        freeReplyObject(r);
    }
    free(cs);
    if (rc != 0)
        return -1;
    METRIC_SET(dlq_length, (uint64_t)len);
    SAMPLED_SET(dlq_entries, len);
    SAMPLED_SET(dlq_capacity_ratio_ppm, cap ? len * 1000000 / cap : METRICS_UNSET);
    int level = 0;
    if (cap && len * 100 >= (long long)cap * 95)
        level = 2;
    else if (cap && len * 100 >= (long long)cap * 80)
        level = 1;
    const char *name = e->n_parts == 1 ? e->parts[0].dlq_stream : "of every partition";
    int prev = atomic_exchange(&e->dlq_level, level);
    if (level > prev) {
        if (level == 2) {
            METRIC_INC(dlq_error);
            log_error("dlq", "dead-letter stream %s holds %lld entries: at or above 95%% of its "
                      "capacity %u", name, len, cap);
        } else {
            METRIC_INC(dlq_warn);
            log_warn("dlq", "dead-letter stream %s holds %lld entries: at or above 80%% of its "
                     "capacity %u", name, len, cap);
        }
    }
    if (!cap || len <= (long long)cap)
        return 0;
    uint32_t share = (cap + e->n_parts - 1) / e->n_parts;
    for (unsigned p = 0; p < e->n_parts && rc == 0; p++) {
        long long n = atomic_load(&e->parts[p].dlq_length);
        redisContext *c;
        if (n > (long long)share && part_held(&e->parts[p]))
            rc = (c = kc(e, rcn, e->parts[p].stream))
                     ? archive_dlq_excess(&e->parts[p], c, n, share, archive)
                     : -1;
    }
    return rc;
}

/* Capacity and archive path come from the serving generation: both are
 * live settings, and the path is a string only a pinned generation keeps. */
static int watch_dlq(engine_t *e, evbus_rconn_t **rcn)
{
    generation_t *g = engine_current(e);
    int rc = watch_dlq_with(e, rcn, g->cfg->core.dlq_capacity, g->cfg->core.dlq_archive);
    generation_unref(g);
    return rc;
}

/*
 * The consumer group as Redis sees it, for the gauges of util/metrics:
 * lag (XINFO GROUPS; Redis 7.0 reports null when it cannot compute it,
 * which stays "unknown", never 0), pending entries and the age of the
 * oldest (XPENDING summary: its smallest id is the oldest), and the retry
 * schedule's size.  One pipelined round trip every few seconds on this
 * thread's connection, never on the dispatch path.  A failed read unsets
 * the gauges: a stale number would look like a healthy one.
 */
#define GROUP_SAMPLE_MS 2000

static void unset_group_gauges(void)
{
    SAMPLED_SET(consumer_lag, METRICS_UNSET);
    SAMPLED_SET(pending, METRICS_UNSET);
    SAMPLED_SET(oldest_pending_age_ms, METRICS_UNSET);
    SAMPLED_SET(retry_scheduled, METRICS_UNSET);
}

/* One partition's group: lag, pending and the oldest pending entry's
 * time, scheduled retries (each METRICS_UNSET when unknown).  Reads the
 * replies of the three commands sample_group appended. */
static int sample_part(engine_t *e, part_t *pt, redisContext *c, int64_t *oldest_ms)
{
    redisReply *r[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++)
        if (redisGetReply(c, (void **)&r[i]) != REDIS_OK) {
            for (int k = 0; k < i; k++)
                freeReplyObject(r[k]);
            return -1;
        }
    int64_t lag = METRICS_UNSET, pending = METRICS_UNSET;
    *oldest_ms = METRICS_UNSET;
    for (size_t i = 0; r[0]->type == REDIS_REPLY_ARRAY && i < r[0]->elements; i++) {
        redisReply *g = r[0]->element[i];
        const redisReply *name = NULL, *lagv = NULL;
        for (size_t k = 0; g->type == REDIS_REPLY_ARRAY && k + 1 < g->elements; k += 2) {
            if (g->element[k]->type != REDIS_REPLY_STRING)
                continue;
            if (!strcmp(g->element[k]->str, "name"))
                name = g->element[k + 1];
            else if (!strcmp(g->element[k]->str, "lag"))
                lagv = g->element[k + 1];
        }
        if (name && name->type == REDIS_REPLY_STRING && !strcmp(name->str, e->group) && lagv &&
            lagv->type == REDIS_REPLY_INTEGER)
            lag = lagv->integer;
    }
    if (r[1]->type == REDIS_REPLY_ARRAY && r[1]->elements >= 2 &&
        r[1]->element[0]->type == REDIS_REPLY_INTEGER) {
        pending = r[1]->element[0]->integer;
        *oldest_ms = 0; /* nothing pending: nothing is waiting */
        if (pending > 0 && r[1]->element[1]->type == REDIS_REPLY_STRING)
            *oldest_ms = strtoll(r[1]->element[1]->str, NULL, 10);
    }
    atomic_store(&pt->lag, lag);
    atomic_store(&pt->pending, pending);
    atomic_store(&pt->retry_scheduled,
                 r[2]->type == REDIS_REPLY_INTEGER ? r[2]->integer : METRICS_UNSET);
    for (int i = 0; i < 3; i++)
        freeReplyObject(r[i]);
    return 0;
}

/* The group over every partition: lags, pending entries and retries
 * added up (unknown when one partition's is), the oldest pending entry of
 * all. */
static int sample_group(engine_t *e, evbus_rconn_t **rcn)
{
    redisContext **cs = part_conns(e, rcn);
    if (!cs) {
        unset_group_gauges();
        return -1;
    }
    for (unsigned p = 0; p < e->n_parts; p++) {
        redisAppendCommand(cs[p], "XINFO GROUPS %s", e->parts[p].stream);
        redisAppendCommand(cs[p], "XPENDING %s %s", e->parts[p].stream, e->group);
        redisAppendCommand(cs[p], "ZCARD %s", e->parts[p].retry_key);
    }
    int64_t lag = 0, pending = 0, retries = 0, oldest_ms = 0;
    for (unsigned p = 0; p < e->n_parts; p++) {
        int64_t o;
        if (sample_part(e, &e->parts[p], cs[p], &o) != 0) {
            free(cs);
            unset_group_gauges();
            return -1;
        }
        int64_t l = atomic_load(&e->parts[p].lag), n = atomic_load(&e->parts[p].pending),
                rs = atomic_load(&e->parts[p].retry_scheduled);
        lag = lag == METRICS_UNSET || l == METRICS_UNSET ? METRICS_UNSET : lag + l;
        pending = pending == METRICS_UNSET || n == METRICS_UNSET ? METRICS_UNSET : pending + n;
        retries = retries == METRICS_UNSET || rs == METRICS_UNSET ? METRICS_UNSET : retries + rs;
        if (o == METRICS_UNSET)
            oldest_ms = METRICS_UNSET;
        else if (oldest_ms != METRICS_UNSET && o > 0 && (oldest_ms == 0 || o < oldest_ms))
            oldest_ms = o;
    }
    int64_t oldest = oldest_ms;
    if (oldest != METRICS_UNSET && oldest > 0) {
        oldest = clock_wall_ms() - oldest_ms;
        if (oldest < 0)
            oldest = 0;
    }
    SAMPLED_SET(consumer_lag, lag);
    SAMPLED_SET(pending, pending);
    SAMPLED_SET(oldest_pending_age_ms, oldest);
    SAMPLED_SET(retry_scheduled, retries);
    free(cs);
    return 0;
}

/*
 * In-host lag: what this host read and has not acknowledged yet (queued
 * and running chunks), the age of the oldest such entry, and the workers
 * whose handler call is past its timeout (into `stuck` when not NULL: one
 * object per worker with the handler and how long it has run).  The
 * consumer group's own lag cannot show these: the entries were delivered.
 */
static void inhost_scan(engine_t *e, long long *pending, int64_t *oldest_ms, int *over,
                        json_t *stuck)
{
    int64_t now = clock_mono_ms(), oldest = 0;
    long long n = 0;
    pthread_mutex_lock(&e->inflight_lock);
    for (size_t i = 0; i < e->inflight_cap; i++) {
        chunk_t *ch = e->inflight[i];
        if (!ch)
            continue;
        n += (long long)ch->count;
        if (!oldest || ch->enq_ms < oldest)
            oldest = ch->enq_ms;
    }
    pthread_mutex_unlock(&e->inflight_lock);
    *pending = n;
    *oldest_ms = oldest ? now - oldest : 0;
    *over = 0;
    int64_t cnow = clock_coarse_ms();
    /* h points into the worker's generation, which we hold no reference on */
    generation_peek_begin();
    for (uint32_t i = 0; e->workers && i < e->n_workers; i++) {
        dctx_t *d = &e->workers[i].ctx;
        const char *h = atomic_load(&d->cur_handler);
        unsigned limit = atomic_load(&d->cur_timeout_ms);
        int64_t ran = cnow - atomic_load(&d->cur_start_ms);
        if (!h || !limit || ran <= (int64_t)limit)
            continue;
        (*over)++;
        if (stuck)
            json_array_append_new(stuck, json_pack("{s:s, s:s, s:I, s:i}", "worker", d->name,
                                                   "handler", h, "running_ms", (json_int_t)ran,
                                                   "timeout_ms", (int)limit));
    }
    generation_peek_end();
}

static void update_gauges(engine_t *e)
{
    long long pending;
    int64_t oldest;
    int over;
    inhost_scan(e, &pending, &oldest, &over, NULL);
    METRIC_SET(inhost_pending, (uint64_t)pending);
    METRIC_SET(inhost_oldest_age_ms, (uint64_t)oldest);
    METRIC_SET(workers_over_timeout, (uint64_t)over);
    if (e->meta)
        METRIC_SET(postgres_up, store_writer_connected(e->meta) ? 1 : 0);
}

static void watch_overruns(engine_t *e)
{
    int64_t now = clock_coarse_ms();
    /* the log line copies the running handler's name (generation.h) */
    generation_peek_begin();
    for (uint32_t i = 0; i < e->n_workers; i++)
        dctx_check_overrun(&e->workers[i].ctx, now);
    generation_peek_end();
}

/* One point of the overview's history: the counts so far and the gauges
 * this thread last read from Redis (their own cadence: a second for the
 * DLQ, GROUP_SAMPLE_MS for the group). */
static void sample_history(engine_t *e, int64_t now)
{
    stats_gauges_t g = {
        .lag = SAMPLED_GET(consumer_lag),
        .pending = SAMPLED_GET(pending),
        .oldest_pending_age_ms = SAMPLED_GET(oldest_pending_age_ms),
        .dlq_entries = SAMPLED_GET(dlq_entries),
        .dlq_ratio_ppm = SAMPLED_GET(dlq_capacity_ratio_ppm),
    };
    if (stats_history_sample(e->history, e->stats, clock_wall_ms(), now, &g) != 0)
        log_warn("engine", "stats history: out of memory; this period's point is missing");
}

static void *maint_main(void *arg)
{
    engine_t *e = arg;
    pthread_setname_np(pthread_self(), "evbus-maint");
    evbus_rconn_t *rcn = NULL;
    int64_t last_reclaim = 0, last_stale = clock_mono_ms(), last_dlq = 0, last_group = 0,
            last_pause = 0, last_history = clock_mono_ms();
    /* look for stale consumers at half their idle bound, between the
     * reclaim interval and once a minute */
    int64_t stale_every = LIVE(e, stale_consumer_ms) / 2;
    if (stale_every < (int64_t)LIVE(e, reclaim_interval_ms))
        stale_every = LIVE(e, reclaim_interval_ms);
    if (stale_every > 60000)
        stale_every = 60000;
    while (!atomic_load(&e->stop)) {
        redisContext *c = NULL;
        if (!kc(e, &rcn, e->parts[0].stream)) {
            sleep_unless_stopped(e, backoff_ms(e));
            continue;
        }
        int64_t now = clock_mono_ms();
        int rc = 0;
        if (now - last_pause >= PAUSE_POLL_MS) {
            rc = sync_pauses(e, &rcn);
            last_pause = now;
        }
        for (unsigned p = 0; p < e->n_parts && rc == 0; p++)
            if (part_held(&e->parts[p]))
                rc = (c = kc(e, &rcn, e->parts[p].stream)) ? move_due_retries(e, &e->parts[p], c)
                                                           : -1;
        if (rc == 0)
            rc = renew_leases(e, &rcn);
        if (rc == 0 && atomic_load(&e->recovered) &&
            now - last_reclaim >= LIVE(e, reclaim_interval_ms)) {
            for (unsigned p = 0; p < e->n_parts && rc == 0; p++)
                if (part_held(&e->parts[p]))
                    rc = (c = kc(e, &rcn, e->parts[p].stream)) ? reclaim_idle(e, p, c) : -1;
            last_reclaim = now;
        }
        if (rc == 0 && now - last_dlq >= 1000) {
            rc = watch_dlq(e, &rcn);
            last_dlq = now;
        }
        if (rc == 0 && now - last_group >= GROUP_SAMPLE_MS) {
            rc = sample_group(e, &rcn);
            last_group = now;
        }
        stats_sample(e->stats, now);
        if (now - last_history >= LIVE(e, history_period_ms)) {
            sample_history(e, now);
            last_history = now;
        }
        if (rc == 0) {
            /* retention is live: the serving generation's policy each round */
            generation_t *g = engine_current(e);
            for (unsigned p = 0; p < e->n_parts && rc == 0; p++)
                rc = (c = kc(e, &rcn, e->parts[p].stream))
                         ? retention_tick(e->parts[p].ret, c, &g->cfg->retention, now)
                         : -1;
            generation_unref(g);
        }
        if (rc == 0 && now - last_stale >= stale_every) {
            for (unsigned p = 0; p < e->n_parts && rc == 0; p++)
                if (part_held(&e->parts[p]))
                    rc = (c = kc(e, &rcn, e->parts[p].stream))
                             ? remove_stale_consumers(e, e->parts[p].stream, c)
                             : -1;
            last_stale = now;
        }
        watch_overruns(e);
        update_gauges(e);
        if (rc != 0) {
            note_redis_error(e, c && c->err ? c->errstr : "maintenance command failed");
            kc_reset(rcn);
            sleep_unless_stopped(e, backoff_ms(e));
            continue;
        }
        sleep_unless_stopped(e, 50);
    }
    evbus_rconn_free(rcn);
    atomic_fetch_sub(&e->threads_running, 1);
    return NULL;
}

/* ---- ownership (core/ownership.h) ------------------------------------ */

static void own_gauge(engine_t *e)
{
    uint64_t n = 0;
    for (unsigned p = 0; p < e->n_parts; p++)
        n += atomic_load(&e->parts[p].own) != OWN_NONE;
    METRIC_SET(partitions_owned, n);
}

static void own_lose(part_t *pt, const char *why)
{
    atomic_store(&pt->own, OWN_NONE);
    METRIC_INC(leases_lost);
    log_warn("ownership", "lost %s (epoch %lld): %s; writes still owed there are fenced and its "
             "new owner handles those entries again", pt->stream, atomic_load(&pt->epoch), why);
}

/* Stop reading pt and release it once drained (own_release_drained). */
static void own_revoke(engine_t *e, part_t *pt, int64_t now, const char *why)
{
    pt->revoke_deadline = now + LIVE(e, drain_timeout_ms);
    pt->revoke_seq = atomic_load(&e->read_seq);
    atomic_store(&pt->own, OWN_REVOKING);
    log_info("ownership", "giving %s up (%s): draining its in-flight events first", pt->stream,
             why);
}

static int index_of(char **hosts, size_t n, const char *name)
{
    for (size_t i = 0; name && i < n; i++)
        if (strcmp(hosts[i], name) == 0)
            return (int)i;
    return -1;
}

/*
 * One tick: the heartbeat, the leases as Redis has them, the assignment;
 * then renew what this host holds (a renewal refused means the lease is
 * lost), revoke what it holds and should not, and acquire what it should
 * hold and is free.  `leaving`: this host is stopping, so it is not in
 * the host set and acquires nothing.  0, or -1 on a Redis failure.
 */
static int own_tick(engine_t *e, evbus_rconn_t **rcn, bool leaving)
{
    uint32_t lease = LIVE(e, lease_ms);
    /* our lease surely holds until `sent + lease`, by Redis's clock too:
     * Redis started counting after we sent; the margin covers clocks that
     * run at slightly different rates */
    int64_t sent = clock_mono_ms(), until = sent + lease - lease / 10;
    char err[300];
    char **hosts = NULL;
    size_t n_hosts = 0;
    unsigned np = e->n_parts;
    char **holder = calloc(np, sizeof *holder);
    long long *epoch = calloc(np, sizeof *epoch);
    int *owner = calloc(np, sizeof *owner), *target = calloc(np, sizeof *target);
    char **lease_keys = calloc(np, sizeof *lease_keys), **epoch_keys = calloc(np, sizeof *epoch_keys);
    redisContext **cs = NULL, *c;
    int rc = -1;
    if (!holder || !epoch || !owner || !target || !lease_keys || !epoch_keys) {
        snprintf(err, sizeof err, "out of memory");
        goto out;
    }
    for (unsigned p = 0; p < np; p++) {
        lease_keys[p] = e->parts[p].lease_key;
        epoch_keys[p] = e->parts[p].epoch_key;
    }
    if (!(c = kc(e, rcn, e->hosts_key))) {
        snprintf(err, sizeof err, "no connection for %s", e->hosts_key);
        goto out;
    }
    if (own_heartbeat(c, e->hosts_key, leaving ? NULL : e->consumer, lease, &hosts, &n_hosts, err,
                      sizeof err) != 0)
        goto out;
    if (!(cs = part_conns(e, rcn))) {
        snprintf(err, sizeof err, "no connection for every partition");
        goto out;
    }
    if (own_read(cs, np, lease_keys, epoch_keys, holder, epoch, err, sizeof err) != 0)
        goto out;
    for (unsigned p = 0; p < np; p++)
        owner[p] = index_of(hosts, n_hosts, holder[p]);
    own_assign(np, n_hosts, owner, target);
    int me = leaving ? -1 : index_of(hosts, n_hosts, e->consumer);
    for (unsigned p = 0; p < np; p++) {
        part_t *pt = &e->parts[p];
        int st = atomic_load(&pt->own);
        if (!(c = kc(e, rcn, pt->stream))) {
            snprintf(err, sizeof err, "no connection for %s", pt->stream);
            goto out;
        }
        if (st != OWN_NONE) {
            int r = own_renew(c, pt->lease_key, pt->epoch_key, e->consumer,
                              atomic_load(&pt->epoch), lease, err, sizeof err);
            if (r < 0)
                goto out;
            if (r == 0) {
                own_lose(pt, "another host acquired it");
                continue;
            }
            pt->valid_until = until;
            if ((st == OWN_ACTIVE || st == OWN_ACQUIRED) && (me < 0 || target[p] != me))
                own_revoke(e, pt, clock_mono_ms(),
                           leaving ? "stopping" : "rebalancing: another host's share now");
        } else if (me >= 0 && target[p] == me) {
            char held_by[128];
            long long ep = own_acquire(c, pt->lease_key, pt->epoch_key, e->consumer, lease,
                                       held_by, sizeof held_by, err, sizeof err);
            if (ep < 0)
                goto out;
            if (ep > 0) {
                atomic_store(&pt->epoch, ep);
                pt->valid_until = until;
                atomic_store(&pt->own, OWN_ACQUIRED);
                METRIC_INC(leases_acquired);
                log_info("ownership", "acquired %s (epoch %lld; %zu host%s)", pt->stream, ep,
                         n_hosts, n_hosts == 1 ? "" : "s");
                free(holder[p]);
                holder[p] = strdup(e->consumer);
                epoch[p] = ep;
            }
        }
    }
    rc = 0;
    pthread_mutex_lock(&e->own_lock);
    own_hosts_free(e->hosts, e->n_hosts);
    e->hosts = hosts;
    e->n_hosts = n_hosts;
    hosts = NULL;
    for (unsigned p = 0; p < np; p++) {
        snprintf(e->parts[p].holder, sizeof e->parts[p].holder, "%s", holder[p] ? holder[p] : "");
        e->parts[p].seen_epoch = epoch[p];
    }
    e->own_tick_ms = clock_wall_ms();
    pthread_mutex_unlock(&e->own_lock);
out:
    if (rc != 0)
        log_warn("ownership", "%s", err);
    own_hosts_free(hosts, n_hosts);
    for (unsigned p = 0; holder && p < np; p++)
        free(holder[p]);
    free(holder);
    free(epoch);
    free(owner);
    free(target);
    free(lease_keys);
    free(epoch_keys);
    free(cs);
    own_gauge(e);
    return rc;
}

/*
 * Release the partitions being given up that are drained: none of their
 * chunks is queued or running, and the reader has completed a round that
 * started after the revoke (so no read that included them is still under
 * way) — or the drain timeout passed, or `force`.  0, or -1 on a Redis
 * failure (they stay REVOKING and are tried again).
 */
static int own_release_drained(engine_t *e, evbus_rconn_t **rcn, int64_t now, bool force)
{
    for (unsigned p = 0; p < e->n_parts; p++) {
        part_t *pt = &e->parts[p];
        if (atomic_load(&pt->own) != OWN_REVOKING)
            continue;
        int left = atomic_load(&pt->inflight);
        bool drained = left == 0 && (atomic_load(&e->read_seq) >= pt->revoke_seq + 2 ||
                                     atomic_load(&e->reader_done));
        if (!drained && !force && now < pt->revoke_deadline)
            continue;
        if (!drained)
            log_warn("ownership", "releasing %s with %d chunk%s of it still in flight "
                     "(ownership.drain_timeout_ms passed, or stopping): their writes are fenced "
                     "once another host acquires it", pt->stream, left, left == 1 ? "" : "s");
        char err[300];
        redisContext *c = kc(e, rcn, pt->stream);
        int r = c ? own_release(c, pt->lease_key, pt->epoch_key, e->consumer,
                                atomic_load(&pt->epoch), err, sizeof err)
                  : -1;
        if (!c)
            snprintf(err, sizeof err, "no connection for %s", pt->stream);
        if (r < 0) {
            log_warn("ownership", "%s", err);
            return -1;
        }
        atomic_store(&pt->own, OWN_NONE);
        if (r == 1) {
            METRIC_INC(leases_released);
            log_info("ownership", "released %s (epoch %lld)", pt->stream,
                     atomic_load(&pt->epoch));
        } else {
            own_lose(pt, "another host acquired it before the release");
        }
    }
    own_gauge(e);
    return 0;
}

/*
 * The ownership thread (only with leases): ticks every third of the
 * lease, releases drained partitions every 50 ms, and treats a lease it
 * could not renew in time as lost (stop reading it at once: its writes
 * would be fenced anyway).  On stop it leaves the host set, revokes
 * everything, keeps renewing while the workers finish, releases what they
 * drained and exits once they are done (engine_stop sets workers_done).
 */
static void *own_main(void *arg)
{
    engine_t *e = arg;
    pthread_setname_np(pthread_self(), "evbus-owner");
    evbus_rconn_t *rcn = NULL;
    int64_t next_tick = 0;
    bool leaving = false;
    while (!(atomic_load(&e->stop) && atomic_load(&e->workers_done))) {
        int64_t now = clock_mono_ms();
        if (atomic_load(&e->stop) && !leaving) {
            leaving = true;
            for (unsigned p = 0; p < e->n_parts; p++) {
                int st = atomic_load(&e->parts[p].own);
                if (st == OWN_ACTIVE || st == OWN_ACQUIRED)
                    own_revoke(e, &e->parts[p], now, "stopping");
            }
            char err[300];
            redisContext *c = kc(e, &rcn, e->hosts_key);
            if (c && own_leave(c, e->hosts_key, e->consumer, err, sizeof err) != 0)
                kc_reset(rcn);
        }
        if (now >= next_tick) {
            if (own_tick(e, &rcn, leaving) != 0) {
                kc_reset(rcn);
                next_tick = now + backoff_ms(e);
            } else {
                next_tick = now + LIVE(e, lease_ms) / 3;
            }
        }
        for (unsigned p = 0; p < e->n_parts; p++) {
            part_t *pt = &e->parts[p];
            if (atomic_load(&pt->own) != OWN_NONE && clock_mono_ms() > pt->valid_until)
                own_lose(pt, "not renewed in time (Redis unreachable?)");
        }
        if (own_release_drained(e, &rcn, clock_mono_ms(), false) != 0)
            kc_reset(rcn);
        sleep_ms(50);
    }
    /* the workers are done: what is still held has nothing in flight */
    char err[300];
    for (unsigned p = 0; p < e->n_parts; p++) {
        int st = atomic_load(&e->parts[p].own);
        if (st == OWN_ACTIVE || st == OWN_ACQUIRED)
            own_revoke(e, &e->parts[p], clock_mono_ms(), "stopping");
    }
    own_release_drained(e, &rcn, clock_mono_ms(), true);
    redisContext *c = kc(e, &rcn, e->hosts_key);
    if (c)
        own_leave(c, e->hosts_key, e->consumer, err, sizeof err);
    evbus_rconn_free(rcn);
    atomic_fetch_sub(&e->threads_running, 1);
    return NULL;
}

/* ---- replay ------------------------------------------------------------ */

int engine_dispatch_replay(void *arg, const char *job_id, unsigned partition,
                           const char *stream_id, const char *raw_event, size_t len)
{
    engine_t *e = arg;
    if (partition >= e->n_parts) {
        log_error("replay", "job %s: entry %s of partition %u: the stream has %u partition%s",
                  job_id, stream_id, partition, e->n_parts, e->n_parts == 1 ? "" : "s");
        return 1;
    }
    pthread_mutex_lock(&e->replay_lock);
    if (!e->replay_ctx_ready) {
        dctx_init(&e->replay_ctx, &e->parts[0].link, "replay");
        e->replay_ctx_ready = true;
    }
    /* the entry's partition's keys: its retry schedule, its dead letters.
     * Not fenced by the partition's lease: a replay reads no group and
     * acknowledges nothing, so any host may run a job over partitions
     * other hosts own; its retries reach the owner through the schedule */
    e->replay_link = e->parts[partition].link;
    e->replay_link.epoch_key = NULL;
    dctx_set_link(&e->replay_ctx, &e->replay_link);
    generation_t *g = engine_current(e);
    dctx_begin(&e->replay_ctx, g);
    int rc = dctx_dispatch_replay(&e->replay_ctx, job_id, stream_id, raw_event, len);
    dctx_flush(&e->replay_ctx);
    generation_unref(g);
    pthread_mutex_unlock(&e->replay_lock);
    METRIC_INC(replay_events);
    return rc;
}

/* ---- the link dispatch is handed --------------------------------------- */

static int link_connect_ms(void *e) { return (int)LIVE((engine_t *)e, connect_ms); }
static bool link_stopping(void *e) { return atomic_load(&((engine_t *)e)->stop); }
static void link_redis_failed(void *e, const char *what) { note_redis_error(e, what); }
static void link_redis_recovered(void *e) { note_redis_ok(e); }
static int64_t link_backoff_ms(void *e) { return backoff_ms(e); }
/* read at each flush: the writer starts with engine_start and stops with
 * engine_stop, after the contexts were made */
static store_writer_t *link_metadata(void *e) { return ((engine_t *)e)->meta; }

/* Each partition's keys, held keys, trimmer and link: 0, or -1 when
 * memory runs out. */
static int fill_parts(engine_t *e, const evbus_config_t *cfg)
{
    e->n_parts = cfg->core.partitions ? cfg->core.partitions : 1;
    e->parts = calloc(e->n_parts, sizeof *e->parts);
    if (!e->parts)
        return -1;
    /* the held-keys cap is the host's: each partition gets its share */
    size_t max_keys = cfg->core.ordering_max_keys / e->n_parts;
    if (max_keys < e->n_workers)
        max_keys = e->n_workers;
    bool tagged = e->n_parts > 1;
    e->leases = e->n_parts > 1;
    if (asprintf(&e->hosts_key, "%s:hosts", cfg->core.stream) < 0) {
        e->hosts_key = NULL;
        return -1;
    }
    for (unsigned p = 0; p < e->n_parts; p++) {
        part_t *pt = &e->parts[p];
        pt->stream = core_partition_key(cfg, p, "");
        pt->retry_key = core_partition_key(cfg, p, ":retry");
        pt->paused_key = core_partition_key(cfg, p, ":paused");
        /* dlq.stream names the one partition's; tagged ones are fixed */
        pt->dlq_stream = tagged ? core_partition_key(cfg, p, ":dlq") : strdup(cfg->core.dlq_stream);
        pt->dedup_prefix = tagged ? core_partition_key(cfg, p, ":dedup") : strdup("evbus:dedup");
        pt->lease_key = core_partition_key(cfg, p, ":lease");
        pt->epoch_key = core_partition_key(cfg, p, ":epoch");
        if (!pt->stream || !pt->retry_key || !pt->paused_key || !pt->dlq_stream ||
            !pt->dedup_prefix || !pt->lease_key || !pt->epoch_key)
            return -1;
        /* without leases every partition is this host's for good */
        atomic_init(&pt->own, e->leases ? OWN_NONE : OWN_ACTIVE);
        atomic_init(&pt->epoch, 0);
        atomic_init(&pt->inflight, 0);
        pt->keys = keyorder_new(pt->stream, e->n_workers, max_keys);
        /* partition 0's trimmer leads: the caps are shared, one archiver */
        pt->ret = retention_new(pt->stream, cfg->core.consumer, e->n_parts,
                                p ? e->parts[0].ret : NULL);
        if (!pt->keys || !pt->ret)
            return -1;
        atomic_init(&pt->lag, METRICS_UNSET);
        atomic_init(&pt->pending, METRICS_UNSET);
        atomic_init(&pt->retry_scheduled, METRICS_UNSET);
        atomic_init(&pt->dlq_length, METRICS_UNSET);
        pt->link = (dlink_t){
            .redis_url = e->redis_url,
            .redis_cluster = e->cluster,
            .stream = pt->stream,
            .group = e->group,
            .retry_key = pt->retry_key,
            .dlq_stream = pt->dlq_stream,
            .dedup_prefix = pt->dedup_prefix,
            .epoch_key = e->leases ? pt->epoch_key : NULL,
            .pauses = e->pauses,
            .keys = pt->keys,
            .command_ms = (int)e->command_ms,
            .owner = e,
            .connect_ms = link_connect_ms,
            .stopping = link_stopping,
            .redis_failed = link_redis_failed,
            .redis_recovered = link_redis_recovered,
            .backoff_ms = link_backoff_ms,
            .metadata = link_metadata,
            .stats = e->stats,
        };
    }
    return 0;
}

static void free_parts(engine_t *e)
{
    for (unsigned p = 0; e->parts && p < e->n_parts; p++) {
        part_t *pt = &e->parts[p];
        free(pt->stream);
        free(pt->retry_key);
        free(pt->paused_key);
        free(pt->dlq_stream);
        free(pt->dedup_prefix);
        free(pt->lease_key);
        free(pt->epoch_key);
        keyorder_free(pt->keys);
        retention_free(pt->ret);
    }
    free(e->parts);
    e->parts = NULL;
    free(e->hosts_key);
    e->hosts_key = NULL;
    own_hosts_free(e->hosts, e->n_hosts);
    e->hosts = NULL;
}

/* ---- lifecycle ------------------------------------------------------------ */

engine_t *engine_new(generation_t *gen, const engine_opts_t *opts, char *err, size_t errlen)
{
    const evbus_config_t *cfg = gen->cfg;
    engine_t *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (opts)
        e->opts = *opts;
    e->redis_url = strdup(cfg->core.redis_url);
    e->stream = strdup(cfg->core.stream);
    e->group = strdup(cfg->core.group);
    e->consumer = strdup(cfg->core.consumer);
    e->cluster = core_redis_cluster(cfg) ? strdup(core_redis_cluster(cfg)) : NULL;
    if (asprintf(&e->record_key, "%s" EVBUS_PARTITIONS_RECORD_SUFFIX, cfg->core.stream) < 0)
        e->record_key = NULL;
    e->pauses = pause_table_new();
    e->n_workers = cfg->core.worker_threads;
    e->command_ms = cfg->core.redis_command_timeout_ms;
    e->stats = stats_new();
    e->history = stats_history_new(clock_wall_ms(), clock_mono_ms());
    int parts_rc = fill_parts(e, cfg);
    apply_live(e, gen);
    e->current = gen;
    pthread_mutex_init(&e->gen_lock, NULL);
    pthread_mutex_init(&e->q_lock, NULL);
    pthread_cond_init(&e->q_nonempty, NULL);
    pthread_cond_init(&e->q_nonfull, NULL);
    pthread_mutex_init(&e->inflight_lock, NULL);
    pthread_mutex_init(&e->health_lock, NULL);
    pthread_mutex_init(&e->replay_lock, NULL);
    pthread_mutex_init(&e->own_lock, NULL);
    e->q_cap = (size_t)e->n_workers * 2;
    e->q = calloc(e->q_cap, sizeof *e->q);
    /* queued + running chunks, plus slack for the batch being split */
    e->inflight_cap = e->q_cap + e->n_workers + e->n_workers + 2;
    e->inflight = calloc(e->inflight_cap, sizeof *e->inflight);
    e->workers = calloc(e->n_workers, sizeof *e->workers);
    e->last_reload_ok = true;
    e->started_ms = clock_wall_ms();
    METRIC_SET(generation, gen->number);
    METRIC_SET(redis_up, 1);
    if (!e->q || !e->inflight || !e->workers || parts_rc != 0 || !e->stats || !e->history ||
        !e->pauses || !e->record_key) {
        snprintf(err, errlen, "out of memory");
        e->current = NULL;
        engine_free(e);
        return NULL;
    }
    return e;
}

int engine_start(engine_t *e, char *err, size_t errlen)
{
    const evbus_config_t *cfg = e->current->cfg;
    if (cfg->store.postgres_url && cfg->store.metadata_enabled) {
        e->meta = store_writer_start(cfg);
        if (!e->meta)
            log_warn("metadata", "metadata writer did not start; continuing without metadata");
        else
            log_info("metadata", "recording event status in PostgreSQL (queue %u, batches of %u)",
                     cfg->store.metadata_queue_size, cfg->store.metadata_batch_size);
    }
    if (cfg->store.postgres_url) {
        /* the archiver idles while retention.archive is off (it is live);
         * one serves every partition (the trimmers' family, led by 0), on
         * one server or on each partition's master of a cluster */
        retention_archive_opts_t ao = {.postgres_url = cfg->store.postgres_url,
                                       .redis_url = e->redis_url,
                                       .redis_cluster = e->cluster,
                                       .redis_connect_ms = cfg->core.redis_connect_timeout_ms,
                                       .redis_command_ms = e->command_ms,
                                       .partitions_ahead = cfg->store.metadata_partitions_ahead};
        if (retention_start_archive(e->parts[0].ret, &ao) != 0)
            log_warn("retention", "the archiver did not start: with retention.archive: postgres "
                     "nothing will be trimmed");
    }
    atomic_store(&e->threads_running, (int)e->n_workers + 2 + (e->leases ? 1 : 0));
    for (uint32_t i = 0; i < e->n_workers; i++) {
        e->workers[i].eng = e;
        char name[32];
        snprintf(name, sizeof name, "worker-%u", i);
        dctx_init(&e->workers[i].ctx, &e->parts[0].link, name);
        if (pthread_create(&e->workers[i].tid, NULL, worker_main, &e->workers[i]) != 0) {
            snprintf(err, errlen, "cannot start worker thread: %s", strerror(errno));
            return -1;
        }
    }
    if (pthread_create(&e->reader_tid, NULL, reader_main, e) != 0 ||
        pthread_create(&e->maint_tid, NULL, maint_main, e) != 0 ||
        (e->leases && pthread_create(&e->own_tid, NULL, own_main, e) != 0)) {
        snprintf(err, errlen, "cannot start threads: %s", strerror(errno));
        return -1;
    }
    e->started = true;
    if (cfg->store.postgres_url) {
        /* on a cluster each partition's reads go to its stream's master */
        e->replay = store_replay_worker_start_on(cfg, e->cluster, engine_dispatch_replay, e);
        if (!e->replay)
            log_warn("replay", "replay worker did not start; replay jobs will wait");
    }
    if (e->n_parts > 1)
        log_info("consumer", "consuming %s in %u partitions ({%s:0} .. {%s:%u}) as %s/%s with %u "
                 "worker thread%s", e->stream, e->n_parts, e->stream, e->stream, e->n_parts - 1,
                 e->group, e->consumer, e->n_workers, e->n_workers == 1 ? "" : "s");
    else
        log_info("consumer", "consuming %s as %s/%s with %u worker thread%s", e->stream,
                 e->group, e->consumer, e->n_workers, e->n_workers == 1 ? "" : "s");
    return 0;
}

static bool same(const char *a, const char *b) { return strcmp(a ? a : "", b ? b : "") == 0; }

int engine_swap(engine_t *e, generation_t *gen, char *err, size_t errlen)
{
    const evbus_config_t *n = gen->cfg;
    const char *what = NULL;
    if (!same(n->core.redis_url, e->redis_url))
        what = "redis.url";
    else if (!same(n->core.stream, e->stream))
        what = "stream";
    else if (!same(n->core.group, e->group))
        what = "group";
    else if (!same(n->core.consumer, e->consumer))
        what = "consumer";
    else if (n->core.worker_threads != e->n_workers)
        what = "worker_threads";
    if (what) {
        snprintf(err, errlen, "%s cannot change on reload (restart evbusd to change it)", what);
        return -1;
    }
    pthread_mutex_lock(&e->gen_lock);
    generation_t *old = e->current;
    e->current = gen;
    pthread_mutex_unlock(&e->gen_lock);
    pthread_mutex_lock(&e->health_lock);
    snprintf(e->prev_digest, sizeof e->prev_digest, "%s", old->digest);
    pthread_mutex_unlock(&e->health_lock);
    apply_live(e, gen);
    store_writer_configure(e->meta, gen->cfg);
    store_replay_worker_configure(e->replay, gen->cfg);
    retention_configure_archive(e->parts[0].ret, gen->cfg->store.metadata_partitions_ahead);
    METRIC_SET(generation, gen->number);
    METRIC_SET(reload_pending_restart, gen->pending_restart.count);
    log_set_level(config_log_level(n->daemon.log_level) >= 0 ? config_log_level(n->daemon.log_level) : LOG_INFO);
    generation_unref(old);
    return 0;
}

bool engine_wait_drained(generation_t *old, int timeout_ms)
{
    int64_t end = clock_mono_ms() + timeout_ms;
    while (atomic_load(&old->refs) > 1) {
        if (clock_mono_ms() >= end)
            return false;
        sleep_ms(2);
    }
    return true;
}

void engine_request_stop(engine_t *e) { atomic_store(&e->stop, true); }

stats_t *engine__stats(engine_t *e) { return e->stats; }
stats_history_t *engine__history(engine_t *e) { return e->history; }
int64_t engine__history_period_ms(engine_t *e) { return LIVE(e, history_period_ms); }

bool engine_wants_exit(engine_t *e) { return atomic_load(&e->wants_exit); }

bool engine_failed(engine_t *e) { return atomic_load(&e->failed); }

bool engine_partitions_refused(engine_t *e) { return atomic_load(&e->parts_refused); }

static int join_until(pthread_t t, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - clock_mono_ms();
        if (left < 0)
            left = 0;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        int rc = pthread_timedjoin_np(t, NULL, &ts);
        if (rc == 0)
            return 0;
        if (rc == ETIMEDOUT)
            return -1;
        if (rc != EINTR)
            return -1;
    }
}

int engine_stop(engine_t *e, int timeout_ms)
{
    engine_request_stop(e);
    if (!e->started)
        return 0;
    int64_t deadline = clock_mono_ms() + timeout_ms;
    int rc = 0;
    if (join_until(e->reader_tid, deadline) != 0)
        rc = -1;
    queue_close(e);
    for (uint32_t i = 0; i < e->n_workers && rc == 0; i++)
        if (join_until(e->workers[i].tid, deadline) != 0)
            rc = -1;
    /* nothing is in flight any more: the ownership thread releases what
     * it still holds and leaves */
    atomic_store(&e->workers_done, true);
    if (rc == 0 && join_until(e->maint_tid, deadline) != 0)
        rc = -1;
    if (rc == 0 && e->leases && join_until(e->own_tid, deadline) != 0)
        rc = -1;
    if (rc == 0) {
        retention_stop_archive(e->parts[0].ret);
        store_replay_worker_stop(e->replay);
        e->replay = NULL;
        store_writer_stop(e->meta, 2000);
        e->meta = NULL;
        e->started = false;
    }
    return rc;
}

void engine_free(engine_t *e)
{
    if (!e)
        return;
    if (e->started)
        return; /* threads still running after a stop timeout: leave it to exit() */
    for (uint32_t i = 0; e->workers && i < e->n_workers; i++)
        dctx_release(&e->workers[i].ctx);
    if (e->replay_ctx_ready)
        dctx_release(&e->replay_ctx);
    if (e->current)
        generation_unref(e->current);
    free(e->q);
    free(e->inflight);
    free(e->workers);
    free(e->redis_url);
    free(e->stream);
    free(e->group);
    free(e->consumer);
    free(e->cluster);
    free(e->record_key);
    free_parts(e);
    pause_table_free(e->pauses);
    stats_free(e->stats);
    stats_history_free(e->history);
    free(e);
}

void engine_note_reload(engine_t *e, bool ok, const char *error)
{
    pthread_mutex_lock(&e->health_lock);
    e->last_reload_ok = ok;
    snprintf(e->last_reload_error, sizeof e->last_reload_error, "%s", ok ? "" : error);
    e->last_reload_ms = clock_wall_ms();
    pthread_mutex_unlock(&e->health_lock);
}

static json_t *sampled_json(int64_t v) { return v == METRICS_UNSET ? json_null() : json_integer(v); }

/*
 * With partitions: one object per partition, as the maintenance thread
 * last read it (null until read): its stream, the group's lag and pending
 * entries there, its scheduled retries and dead letters, and its
 * trimmer's view.  The top-level "dlq", "retention" and "group_state"
 * then describe partition 0's names and trimmer (dlq.stream) and the sums
 * over every partition (lengths, lag).
 */
static json_t *partitions_health(engine_t *e)
{
    json_t *a = json_array();
    for (unsigned p = 0; p < e->n_parts; p++) {
        part_t *pt = &e->parts[p];
        json_t *o = json_pack("{s:i, s:s, s:s}", "partition", (int)p, "stream", pt->stream,
                              "dlq_stream", pt->dlq_stream);
        json_object_set_new(o, "lag", sampled_json(atomic_load(&pt->lag)));
        json_object_set_new(o, "pending", sampled_json(atomic_load(&pt->pending)));
        json_object_set_new(o, "retry_scheduled", sampled_json(atomic_load(&pt->retry_scheduled)));
        json_object_set_new(o, "dlq_length", sampled_json(atomic_load(&pt->dlq_length)));
        json_object_set_new(o, "retention", retention_health(pt->ret));
        if (e->leases) {
            pthread_mutex_lock(&e->own_lock);
            json_object_set_new(o, "owner", pt->holder[0] ? json_string(pt->holder) : json_null());
            json_object_set_new(o, "epoch", json_integer(pt->seen_epoch));
            pthread_mutex_unlock(&e->own_lock);
            int st = atomic_load(&pt->own);
            json_object_set_new(o, "state", json_string(own_state_name((own_state_t)st)));
            if (st != OWN_NONE)
                json_object_set_new(o, "held_epoch", json_integer(atomic_load(&pt->epoch)));
        }
        json_array_append_new(a, o);
    }
    return a;
}

/* /health's "ownership": this host's view of the hosts and leases. */
static json_t *ownership_health(engine_t *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "enabled", json_boolean(e->leases));
    if (!e->leases)
        return o;
    json_t *hosts = json_array(), *mine = json_array();
    pthread_mutex_lock(&e->own_lock);
    for (size_t i = 0; i < e->n_hosts; i++)
        json_array_append_new(hosts, json_string(e->hosts[i]));
    int64_t tick = e->own_tick_ms;
    pthread_mutex_unlock(&e->own_lock);
    for (unsigned p = 0; p < e->n_parts; p++)
        if (atomic_load(&e->parts[p].own) != OWN_NONE)
            json_array_append_new(mine, json_integer(p));
    json_object_set_new(o, "hosts", hosts);
    json_object_set_new(o, "owned", mine);
    json_object_set_new(o, "lease_ms", json_integer(LIVE(e, lease_ms)));
    json_object_set_new(o, "last_tick_age_ms", tick ? json_integer(clock_wall_ms() - tick) : json_null());
    return o;
}

json_t *engine_health(engine_t *e)
{
    int failures = atomic_load(&e->redis_failures);
    bool circuit = failures >= (int)LIVE(e, circuit_failures);
    int dlq_level = atomic_load(&e->dlq_level);
    int64_t down_since = atomic_load(&e->redis_down_since);
    int64_t down_ms = down_since ? clock_wall_ms() - down_since : 0;
    /* health says what is true now: Redis unreachable for a few seconds is
     * unhealthy, whatever the circuit breaker's backoff is doing */
    bool redis_down = down_since && down_ms >= (int64_t)LIVE(e, unhealthy_after_ms);
    long long pending;
    int64_t oldest_ms;
    int over;
    json_t *stuck = json_array();
    inhost_scan(e, &pending, &oldest_ms, &over, stuck);
    generation_t *hg = engine_current(e);
    bool lagging = oldest_ms >= (int64_t)hg->cfg->core.health_stuck_after_ms;
    generation_unref(hg);
    bool pg_down = e->meta && !store_writer_connected(e->meta);
    json_t *h = json_object();
    pthread_mutex_lock(&e->health_lock);
    int ret_level = 0;
    for (unsigned p = 0; p < e->n_parts; p++) {
        int l = retention_level(e->parts[p].ret);
        if (l > ret_level)
            ret_level = l;
    }
    const char *status = (circuit || redis_down) ? "unhealthy"
                         : (failures > 0 || down_since || dlq_level > 0 || ret_level > 0 ||
                            !e->last_reload_ok || pg_down || over > 0 || lagging)
                             ? "degraded"
                             : "ok";
    json_object_set_new(h, "status", json_string(status));
    json_object_set_new(h, "generation", json_integer((json_int_t)METRIC_GET(generation)));
    /* which configuration is live: content digest, when, what plugins */
    generation_t *cg = engine_current(e);
    json_t *live = generation_describe(cg);
    generation_unref(cg);
    json_object_set_new(live, "previous_digest",
                        e->prev_digest[0] ? json_string(e->prev_digest) : json_null());
    json_object_set_new(h, "config", live);
    json_object_set_new(h, "consumer", json_string(e->consumer));
    json_object_set_new(h, "stream", json_string(e->stream));
    json_object_set_new(h, "group", json_string(e->group));
    json_t *redis = json_object();
    json_object_set_new(redis, "consecutive_failures", json_integer(failures));
    json_object_set_new(redis, "circuit_open", json_boolean(circuit));
    json_object_set_new(redis, "last_error",
                        e->last_redis_error[0] ? json_string(e->last_redis_error) : json_null());
    json_object_set_new(redis, "reachable", json_boolean(!down_since));
    json_object_set_new(redis, "unreachable_ms", json_integer(down_ms));
    json_object_set_new(h, "redis", redis);
    json_t *reload = json_object();
    json_object_set_new(reload, "last_ok", json_boolean(e->last_reload_ok));
    generation_t *g = engine_current(e);
    /* "partial": the serving generation left settings for a restart */
    json_object_set_new(reload, "status",
                        json_string(!e->last_reload_ok              ? "failed"
                                    : g->pending_restart.count > 0 ? "partial"
                                                                   : "ok"));
    json_t *pend = json_array();
    for (size_t i = 0; i < g->pending_restart.count; i++) {
        const cfg_pending_t *p = &g->pending_restart.items[i];
        json_array_append_new(pend, json_pack("{s:s, s:s, s:s, s:s}", "key", p->key, "at", p->pos,
                                              "running", p->old, "configured", p->now));
    }
    json_object_set_new(reload, "pending_restart", pend);
    generation_unref(g);
    json_object_set_new(reload, "last_error",
                        e->last_reload_error[0] ? json_string(e->last_reload_error) : json_null());
    json_object_set_new(reload, "ok_total", json_integer((json_int_t)METRIC_GET(reloads_ok)));
    json_object_set_new(reload, "failed_total",
                        json_integer((json_int_t)METRIC_GET(reloads_failed)));
    json_object_set_new(reload, "partial_total",
                        json_integer((json_int_t)METRIC_GET(reloads_partial)));
    json_object_set_new(h, "reload", reload);
    pthread_mutex_unlock(&e->health_lock);
    json_t *dlq = json_object();
    json_object_set_new(dlq, "stream", json_string(e->parts[0].dlq_stream));
    json_object_set_new(dlq, "length", json_integer((json_int_t)METRIC_GET(dlq_length)));
    json_object_set_new(dlq, "capacity", json_integer(LIVE(e, dlq_capacity)));
    json_object_set_new(dlq, "level",
                        json_string(dlq_level == 2 ? "error" : dlq_level == 1 ? "warning" : "ok"));
    json_object_set_new(dlq, "warnings_total", json_integer((json_int_t)METRIC_GET(dlq_warn)));
    json_object_set_new(dlq, "errors_total", json_integer((json_int_t)METRIC_GET(dlq_error)));
    json_object_set_new(h, "dlq", dlq);
    json_object_set_new(h, "retention", retention_health(e->parts[0].ret));
    if (e->n_parts > 1) {
        json_object_set_new(h, "partitions", partitions_health(e));
        json_object_set_new(h, "ownership", ownership_health(e));
    }
    /* what this host enforces: the pause hash as of its last poll */
    json_object_set_new(h, "paused", engine_paused_json(e));
    json_t *ev = json_object();
    json_object_set_new(ev, "read", json_integer((json_int_t)METRIC_GET(events_read)));
    json_object_set_new(ev, "acked", json_integer((json_int_t)METRIC_GET(events_acked)));
    json_object_set_new(ev, "inflight_chunks", json_integer(atomic_load(&e->inflight_n)));
    json_object_set_new(h, "events", ev);
    /* in-host lag: read by this host, not acknowledged yet */
    json_t *lag = json_object();
    json_object_set_new(lag, "pending", json_integer(pending));
    json_object_set_new(lag, "oldest_ms", json_integer(oldest_ms));
    json_object_set_new(lag, "workers_over_timeout", json_integer(over));
    json_object_set_new(lag, "stuck", stuck);
    json_object_set_new(h, "inhost", lag);
    /* the consumer group as Redis last reported it (maintenance thread,
     * every few seconds): null until read, and lag null when Redis cannot
     * tell (never a made-up 0) */
    json_t *grp = json_object();
#define SAMPLED_JSON(key, f, div)                                                                  \
    do {                                                                                           \
        int64_t v_ = SAMPLED_GET(f);                                                               \
        json_object_set_new(grp, key, v_ == METRICS_UNSET ? json_null() : json_integer(v_ / (div))); \
    } while (0)
    SAMPLED_JSON("lag", consumer_lag, 1);
    SAMPLED_JSON("pending", pending, 1);
    SAMPLED_JSON("oldest_pending_age_ms", oldest_pending_age_ms, 1);
    SAMPLED_JSON("retry_scheduled", retry_scheduled, 1);
#undef SAMPLED_JSON
    json_object_set_new(h, "group_state", grp); /* "group" is the name */
    json_t *md = json_object();
    json_object_set_new(md, "enabled", json_boolean(e->meta != NULL));
    json_object_set_new(md, "dropped", json_integer((json_int_t)METRIC_GET(metadata_dropped)));
    json_object_set_new(md, "queue", json_integer((json_int_t)METRIC_GET(metadata_queue)));
    json_object_set_new(h, "metadata", md);
    json_object_set_new(h, "postgres", e->meta ? store_writer_health(e->meta) : json_null());
    /* the live settings as the engine's threads read them (not only what
     * the generation says): what the reload test checks against */
    json_t *use = json_object();
    json_object_set_new(use, "batch_size", json_integer(LIVE(e, batch_size)));
    json_object_set_new(use, "block_ms", json_integer(LIVE(e, block_ms)));
    json_object_set_new(use, "redis.connect_timeout_ms", json_integer(LIVE(e, connect_ms)));
    json_object_set_new(use, "reclaim.min_idle_ms", json_integer(LIVE(e, min_idle_ms)));
    json_object_set_new(use, "reclaim.interval_ms", json_integer(LIVE(e, reclaim_interval_ms)));
    /* dispatch reads it from the generation each chunk pinned */
    generation_t *cur = engine_current(e);
    json_object_set_new(use, "reclaim.max_deliveries",
                        json_integer(cur->cfg->core.max_deliveries));
    generation_unref(cur);
    json_object_set_new(use, "reclaim.stale_consumer_ms",
                        json_integer(LIVE(e, stale_consumer_ms)));
    json_object_set_new(use, "circuit.failures", json_integer(LIVE(e, circuit_failures)));
    json_object_set_new(use, "circuit.max_backoff_ms", json_integer(LIVE(e, reconnect_max_ms)));
    json_object_set_new(use, "circuit.stop", json_boolean(LIVE(e, circuit_stop)));
    json_object_set_new(use, "dlq.capacity", json_integer(LIVE(e, dlq_capacity)));
    if (e->meta)
        json_object_set_new(use, "postgres.metadata.flush_ms",
                            json_integer(store_writer_flush_ms(e->meta)));
    json_object_set_new(h, "settings_in_use", use);
    json_object_set_new(h, "process", crash_health());
    json_object_set_new(h, "uptime_ms", json_integer(clock_wall_ms() - e->started_ms));
    return h;
}

/* ---- handler pause ------------------------------------------------------ */

/* Whether `instance` names a plugin instance or a foreign handler of g. */
static bool has_instance(const generation_t *g, const char *instance)
{
    size_t len = strlen(instance);
    for (size_t i = 0; i < g->n_insts; i++)
        if (strcmp(plugin_instance_name(g->insts[i]), instance) == 0)
            return true;
    for (size_t i = 0; i < g->n_handlers; i++) {
        const char *h = g->handlers[i].name;
        if (strncmp(h, instance, len) == 0 && (h[len] == '\0' || h[len] == '/'))
            return true;
    }
    return false;
}

/* "a, b, c" of g's instance names (plugin instances, then foreign handlers). */
static void instance_names(const generation_t *g, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < g->n_insts && used < len; i++)
        used += (size_t)snprintf(out + used, len - used, "%s%s", used ? ", " : "",
                                 plugin_instance_name(g->insts[i]));
    for (size_t i = 0; i < g->n_handlers && used < len; i++)
        if (g->handlers[i].kind == GEN_HANDLER_FOREIGN)
            used += (size_t)snprintf(out + used, len - used, "%s%s", used ? ", " : "",
                                     g->handlers[i].name);
    if (!out[0])
        snprintf(out, len, "none");
}

int engine_handler_pause(engine_t *e, const char *instance, bool paused, const char *by,
                         const char *reason, char *err, size_t errlen)
{
    if (!instance || evbus_handler_name_check(instance) != 0) {
        snprintf(err, errlen, "'%.80s' is not an instance name (1 to 64 characters of a-z A-Z "
                 "0-9 _ - .)", instance ? instance : "");
        return -2;
    }
    generation_t *g = engine_current(e);
    bool known = has_instance(g, instance);
    char names[512];
    instance_names(g, names, sizeof names);
    uint64_t number = g->number;
    generation_unref(g);
    /* resuming a name the configuration dropped is allowed while it is
     * paused: it is how a stale pause is cleared */
    json_t *was = pause_table_record(e->pauses, instance);
    bool stale_resume = !paused && was;
    json_decref(was);
    if (!known && !stale_resume) {
        snprintf(err, errlen, "no handler instance '%s' in generation %llu (instances: %s)",
                 instance, (unsigned long long)number, names);
        return -2;
    }
    char cerr[512] = "";
    evbus_rconn_t *rcn = evbus_rconn_new(e->redis_url, e->cluster, (int)LIVE(e, connect_ms),
                                         (int)e->command_ms, cerr, sizeof cerr);
    if (!rcn) {
        snprintf(err, errlen, "Redis: %s", cerr);
        return -1;
    }
    /* every partition's copy, partition 0's first (sync_pauses reads it);
     * one call per partition, each on that partition's keys only (and
     * connection: on a cluster, its node's) */
    long long released = 0;
    int rc = 0;
    redisContext *c;
    for (unsigned p = 0; p < e->n_parts && rc >= 0; p++) {
        long long k = 0;
        if (!(c = evbus_rconn_get(rcn, e->parts[p].stream, cerr, sizeof cerr))) {
            rc = -1;
            break;
        }
        int prc = paused ? evbus_handler_pause(c, e->parts[p].stream, instance, by, reason, cerr,
                                               sizeof cerr)
                         : evbus_handler_resume(c, e->parts[p].stream, instance, &k, cerr,
                                                sizeof cerr);
        released += k;
        if (p == 0 || prc < 0)
            rc = prc;
    }
    json_t *doc = rc >= 0 && (c = evbus_rconn_get(rcn, e->parts[0].stream, cerr, sizeof cerr))
                      ? evbus_handler_pauses(c, e->parts[0].stream, cerr, sizeof cerr)
                      : NULL;
    evbus_rconn_free(rcn);
    if (rc < 0 || !doc) {
        snprintf(err, errlen, "Redis: %s", cerr);
        return -1;
    }
    /* at once on this host; the others follow within PAUSE_POLL_MS */
    json_t *before = pause_table_json(e->pauses);
    pause_table_apply(e->pauses, doc);
    log_pause_changes(before, doc);
    json_decref(before);
    json_decref(doc);
    if (!paused && released > 0)
        log_info("pause", "%lld deferred deliver%s of %s %s due again", released,
                 released == 1 ? "y" : "ies", instance, released == 1 ? "is" : "are");
    if (rc == 0)
        log_info("pause", "handler instance %s was already %s (asked by '%s')", instance,
                 paused ? "paused" : "running", by ? by : "");
    return 0;
}

json_t *engine_paused_json(engine_t *e) { return pause_table_json(e->pauses); }
