/*
 * dispatch — what happens to one entry: parse, check, route, validate,
 * upcast, call the handlers in priority order, then record every outcome.
 *
 * For each entry dispatch gathers facts and asks the verdict
 * (core/verdict.h) what they mean, then performs it: the effects step
 * queues the retry schedule entries, the dead letter, the ack and the
 * metadata, and counts and logs.  Deciding apart from acting keeps the
 * decision table testable without Redis.
 *
 * A dctx_t (dispatch context) belongs to one thread.  It owns a write
 * connection, a routing cache, a reusable event and the list of writes owed
 * for the entries dispatched since dctx_begin(): acks, retries, dead
 * letters.  dctx_flush() writes them in one MULTI/EXEC and retries the same
 * writes after a reconnect until they land or the link says stop, so an
 * outcome is never half-recorded and a Redis failure never becomes an
 * event failure.
 *
 * Dispatch calls down only: what it needs from the runtime that drives it
 * (the engine) comes in a dlink_t, and its settings come from the
 * generation it dispatches with.
 *
 * Entry pointers (redisReply) passed in must stay valid until dctx_flush()
 * returns: ack ids are borrowed from them.
 */
#ifndef EVBUS_CORE_DISPATCH_H
#define EVBUS_CORE_DISPATCH_H

#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "client/rconn.h"
#include "core/event.h"
#include "core/generation.h"
#include "core/stats.h"
#include "core/pause.h"
#include "core/keyorder.h"
#include "core/verdict.h"
#include "jsonschema/jsonschema.h"
#include "router/router.h"
#include "store/store.h"

/*
 * The link to the runtime that drives dispatch: where to write, how to
 * connect, and callbacks for what only the runtime knows (whether it is
 * stopping, its Redis health and backoff, its metadata writer).  The
 * runtime fills one, owns it and its strings, and keeps it alive and
 * unchanged while any dctx holds it.  Callbacks get `owner` and may be
 * called from every dispatching thread at once.
 */
typedef struct dlink {
    const char *redis_url;
    const char *redis_cluster; /* seeds of a Redis Cluster (client/rconn.h), or NULL */
    const char *stream;      /* acks and the dead letters' `stream` field */
    const char *group;       /* acks, XPENDING, dedup keys */
    const char *retry_key;   /* the retry schedule (ZSET) */
    const char *dlq_stream;
    const char *dedup_prefix; /* dedup marks: <prefix>:<group>:<handler>:<event id> */
    /* the partition's fencing epoch key (core/ownership.h), or NULL when
     * hosts do not hold partitions: with it, the owed writes land only
     * while the key still holds the epoch set by dctx_set_fence */
    const char *epoch_key;
    /* which instances are paused (NULL: none ever is); read once per
     * handler call, lock-free (core/pause.h) */
    const pause_table_t *pauses;
    /* the held keys of per_key handlers (NULL: no ordering); a context
     * touches only the lanes of the entries it is handed (core/keyorder.h) */
    keyorder_t *keys;
    int command_ms;          /* command timeout of the write connection */
    void *owner;
    int (*connect_ms)(void *owner);      /* read at every connect: it may change live */
    bool (*stopping)(void *owner);       /* give up reconnecting; entries stay pending */
    void (*redis_failed)(void *owner, const char *what);
    void (*redis_recovered)(void *owner);
    int64_t (*backoff_ms)(void *owner);  /* wait before the next connect attempt */
    store_writer_t *(*metadata)(void *owner); /* NULL when metadata is off */
    stats_t *stats;          /* per tenant and type counts; NULL = not kept */
} dlink_t;

typedef struct dctx {
    const dlink_t *link;
    char name[32];
    int crash_slot;           /* crash_slot_claim: what a fatal signal names */
    evbus_rconn_t *rc;        /* the write connections (one server, or a cluster's) */
    redisContext *wc;         /* rc's for link->stream, set by ensure_wc */
    router_cache_t *cache;
    const router_t *cache_router;
    generation_t *gen;        /* borrowed for the current chunk */
    struct evbus_event ev;
    jarena_t arena;           /* ev's envelope trees live here */
    js_errors_t jerrs;
    /* per handler of the event being dispatched: why it did not succeed */
    char why[EVENT_MAX_HANDLERS][512];

    /* writes owed since dctx_begin: formatted commands + ack ids */
    char **cmds;
    size_t *cmd_lens;
    size_t n_cmds, cap_cmds;
    const char **acks;
    size_t n_acks, cap_acks;
    /* the ack ids again as RESP bulk strings ("$<len>\r\n<id>\r\n" each),
     * written as they come: the XACK is sent pre-formatted, without
     * hiredis formatting every id of the chunk at the flush */
    char *ack_resp;
    size_t ack_len, ack_cap;
    store_pending_t meta;     /* metadata updates, queued once per flush */

    /* what the thread is running now, for the overrun watchdog and
     * /health; cur_handler points into the chunk's generation, so other
     * threads read it between generation_peek_begin() and _end() */
    _Atomic(const char *) cur_handler;
    atomic_llong cur_start_ms;
    atomic_uint cur_timeout_ms;
    atomic_bool cur_reported;
    /* the ordering key of the event being dispatched, read on first use
     * by a per_key handler: 0 not yet, 1 read, -1 the event has none */
    keyorder_key_t key;
    int key_state;
    unsigned rand_state;
    bool warned_too_many;     /* more than EVENT_MAX_HANDLERS matched once */
    int64_t wait_warned_ms;   /* last "replicas fell short" warning (clock_mono_ms) */
    long long fence_epoch;    /* the epoch the entries were read under (link->epoch_key) */
    int64_t fence_warned_ms;  /* last "fenced" warning (clock_mono_ms) */

    /* Calls of isolated instances made ahead, all at once, for the chunk
     * being dispatched (dctx_dispatch_chunk), in the order the per-entry
     * dispatch then asks for their outcomes. */
    struct dctx_ahead {
        size_t entry;            /* index in the chunk */
        const gen_handler_t *h;
        void *call;
        bool taken;
    } *ahead;
    size_t n_ahead, cap_ahead, next_ahead;
    size_t cur_entry;            /* index + 1 of the entry being dispatched; 0: none */

    /* While the chunk's generation has an isolated instance, the planning
     * pass parses each entry and learns its facts once, into planned[k]
     * for entry k, and the dispatch pass goes on from there: an entry is
     * never parsed twice.  Their envelope trees live in plan_arenas (the
     * chunk's trees side by side; a tree that does not fit goes to the
     * heap), all dropped when the chunk is done.  The records are reused
     * from chunk to chunk: about 6 KiB each, as many as the largest chunk
     * had entries (batch_size / worker_threads). */
    struct dctx_planned {
        bool used;               /* entry k was planned (it has fields) */
        struct evbus_event ev;
        verdict_input_t in;      /* in.handlers is hin (set again at use) */
        verdict_t v;
        const gen_handler_t *hs[EVENT_MAX_HANDLERS];
        verdict_handler_in_t hin[EVENT_MAX_HANDLERS];
    } *planned;
    size_t cap_planned;
#define DCTX_PLAN_ARENAS 8
    jarena_t plan_arenas[DCTX_PLAN_ARENAS];
    size_t cur_plan_arena;
} dctx_t;

/* link is borrowed: it must outlive the context. */
void dctx_init(dctx_t *d, const dlink_t *link, const char *name);
void dctx_release(dctx_t *d);

/* The link of the next chunk (a partition's keys: the engine hands each
 * chunk the link of the partition it was read from).  Only between a
 * flush and the next begin: the owed writes go to one link's keys. */
void dctx_set_link(dctx_t *d, const dlink_t *link);

/* The fencing epoch the next chunk's entries were read under, when the
 * link has an epoch_key.  dctx_flush then writes in a MULTI/EXEC under
 * WATCH of that key, after checking it still holds `epoch`; when another
 * host has taken the partition over since, nothing is written (the
 * entries stay pending for the new owner, which claims them), the writes
 * are counted in evbus_fenced_writes_total and logged.  Same rule as
 * dctx_set_link: only between a flush and the next begin. */
void dctx_set_fence(dctx_t *d, long long epoch);

/* Start a chunk dispatched with generation g (borrowed until flush). */
void dctx_begin(dctx_t *d, generation_t *g);

/* Dispatch one stream entry ([id, [field, value, ...]] or [id, nil]). */
void dctx_dispatch_entry(dctx_t *d, redisReply *entry);

/*
 * Dispatch n entries read together, as n dctx_dispatch_entry calls, except
 * that the calls of isolated (`isolation: process`) instances are made
 * ahead, all in one exchange per instance.  When the generation has an
 * isolated instance, a planning pass parses every entry and learns its
 * facts (planned[], above); for each entry whose handlers are all handlers
 * of one isolated instance (no dedup, no pause, no per-key order, no
 * upcast) it prepares their calls; the calls go to the child together;
 * then each entry is dispatched from its learnt facts (the same verdicts
 * as alone: same bytes, same generation) and takes its outcomes instead
 * of calling.  Other entries call as usual.
 */
void dctx_dispatch_chunk(dctx_t *d, redisReply **entries, size_t n);

/* Dispatch an entry claimed again (own pending at start, or reclaimed):
 * reads its delivery count first and dead-letters it as `poison` when the
 * count exceeds reclaim.max_deliveries of the chunk's generation. */
void dctx_dispatch_recovered(dctx_t *d, redisReply *entry);

/* Dispatch raw bytes of a stream entry as a replay of job_id (nothing to
 * ack).  Returns 0 when every handler succeeded, 1 otherwise. */
int dctx_dispatch_replay(dctx_t *d, const char *job_id, const char *stream_id, const char *raw,
                         size_t len);

/* Write everything owed.  Retries through reconnects until done or the
 * link says stop (then the entries simply stay pending). */
void dctx_flush(dctx_t *d);

/* Log (once per call) a handler running past its timeout; now is
 * clock_coarse_ms(), the clock handler starts are taken with. */
void dctx_check_overrun(dctx_t *d, int64_t now_coarse_ms);

#endif
