/*
 * dispatch — what happens to one entry: parse, check, route, validate,
 * upcast, call the handlers in priority order, then record every outcome.
 *
 * A dctx_t (dispatch context) belongs to one thread.  It owns a write
 * connection, a routing cache, a reusable event and the list of writes owed
 * for the entries dispatched since dctx_begin(): acks, retries, dead
 * letters.  dctx_flush() writes them in one MULTI/EXEC and retries the same
 * writes after a reconnect until they land or the engine stops, so an
 * outcome is never half-recorded and a Redis failure never becomes an
 * event failure.
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

#include "core/engine.h"
#include "core/event.h"
#include "core/generation.h"
#include "jsonschema/jsonschema.h"
#include "router/router.h"
#include "store/store.h"

typedef struct dctx {
    engine_t *eng;
    char name[32];
    redisContext *wc;
    router_cache_t *cache;
    const router_t *cache_router;
    generation_t *gen;        /* borrowed for the current chunk */
    struct evbus_event ev;
    jarena_t arena;           /* ev's envelope trees live here */
    js_errors_t jerrs;

    /* writes owed since dctx_begin: formatted commands + ack ids */
    char **cmds;
    size_t *cmd_lens;
    size_t n_cmds, cap_cmds;
    const char **acks;
    size_t n_acks, cap_acks;
    store_pending_t meta;     /* metadata updates, queued once per flush */

    /* what the thread is running now, for the overrun watchdog */
    _Atomic(const char *) cur_handler;
    atomic_llong cur_start_ms;
    atomic_uint cur_timeout_ms;
    atomic_bool cur_reported;
    unsigned rand_state;
    bool warned_too_many;     /* more than EVENT_MAX_HANDLERS matched once */
} dctx_t;

void dctx_init(dctx_t *d, engine_t *e, const char *name);
void dctx_release(dctx_t *d);

/* Start a chunk dispatched with generation g (borrowed until flush). */
void dctx_begin(dctx_t *d, generation_t *g);

/* Dispatch one stream entry ([id, [field, value, ...]] or [id, nil]). */
void dctx_dispatch_entry(dctx_t *d, redisReply *entry);

/* Dispatch an entry claimed again (own pending at start, or reclaimed):
 * reads its delivery count first and dead-letters it as `poison` when the
 * count exceeds max_deliveries. */
void dctx_dispatch_recovered(dctx_t *d, redisReply *entry);

/* Dispatch raw bytes of a stream entry as a replay of job_id (nothing to
 * ack).  Returns 0 when every handler succeeded, 1 otherwise. */
int dctx_dispatch_replay(dctx_t *d, const char *job_id, const char *stream_id, const char *raw,
                         size_t len);

/* Write everything owed.  Retries through reconnects until done or the
 * engine stops (then the entries simply stay pending). */
void dctx_flush(dctx_t *d);

/* Log (once per call) a handler running past its timeout; now is
 * clock_coarse_ms(), the clock handler starts are taken with. */
void dctx_check_overrun(dctx_t *d, int64_t now_coarse_ms);

/* Engine internals dispatch needs (implemented in engine.c). */
const char *engine_stream(const engine_t *e);
const char *engine_group(const engine_t *e);
const char *engine_consumer(const engine_t *e);
const char *engine_retry_key(const engine_t *e);
const char *engine_dlq_stream(const engine_t *e);
const char *engine_redis_url(const engine_t *e);
int engine_connect_ms(const engine_t *e);
int engine_command_ms(const engine_t *e);
uint32_t engine_max_deliveries(const engine_t *e);
store_writer_t *engine_metadata(const engine_t *e);
bool engine_stopping(const engine_t *e);
void engine_redis_failed(engine_t *e, const char *what);
void engine_redis_recovered(engine_t *e);
int64_t engine_backoff_ms(engine_t *e);

/* Retry delay for the n-th attempt (1-based) of a policy; jitter applied
 * with the given random value in [0,1).  Exposed for tests. */
int64_t dispatch_backoff_ms(const retry_policy_t *p, int attempt, double rnd);

#endif
