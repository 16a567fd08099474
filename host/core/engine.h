/*
 * engine — the consumer runtime: reads the stream through the consumer
 * group, dispatches events to the current generation's handlers on worker
 * threads, and makes every outcome durable (ack, retry schedule, DLQ).
 *
 * Threads and what each owns:
 *  - reader (1): the read connection; XREADGROUP, NOGROUP recovery,
 *    reconnect with capped backoff, the circuit breaker, recovery of this
 *    consumer's own pending entries at start.  Pins the current generation
 *    for each chunk it queues.
 *  - workers (cfg worker_threads): one write connection each, a routing
 *    cache and a reusable event.  Dispatch a chunk, then write its acks,
 *    retries and dead letters in one MULTI/EXEC.
 *  - maintenance (1): its own connection; moves due retries back to the
 *    stream (Lua, atomic; parking those of paused instances), polls the
 *    pause hash into the pause table, renews leases of slow chunks, reclaims idle
 *    pending entries of dead consumers (poison pills, ghosts), removes stale
 *    consumers, watches DLQ capacity.  With leases, only on the partitions
 *    this host holds (reading work, the samples for /health, on all).
 *  - ownership (1, only with partitions > 1; core/ownership.h): its own
 *    connection; the heartbeat, the partition leases (acquire, renew,
 *    revoke, release once drained) and the target assignment, every third
 *    of ownership.lease_ms.  It writes each partition's state; the reader
 *    takes an acquired partition over (claims its pending entries, reads
 *    its holds, handles those entries first) before reading it.
 *  - the control thread (the caller: evbusd's main): start, swap, stop,
 *    health.  Generations retired by a swap are destroyed there.
 *
 * With `partitions` above 1 (docs/scale-out.md) the engine consumes the
 * partition streams {S:p} of one server whose lease this host holds: the
 * reader reads them all in one XREADGROUP, each chunk holds entries of one
 * partition, carries the partition's fencing epoch and is written with
 * that partition's keys under that epoch (dctx_set_fence), and the
 * maintenance work runs per partition.
 *
 * The only lock on the dispatch path is the chunk queue's.
 */
#ifndef EVBUS_CORE_ENGINE_H
#define EVBUS_CORE_ENGINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/generation.h"

typedef struct engine engine_t;

typedef struct engine_opts {
    int exit_idle_ms; /* >0: stop once nothing arrived for this long (--exit-idle) */
} engine_opts_t;

/* Create an engine serving `gen` (takes over the caller's reference).
 * Connection settings (Redis URL, stream, group, consumer, threads) come
 * from gen->cfg and are fixed for the engine's life: a reload that changes
 * them is refused by engine_swap(). */
engine_t *engine_new(generation_t *gen, const engine_opts_t *opts, char *err, size_t errlen);

/* Start the threads.  0 or -1 with err. */
int engine_start(engine_t *e, char *err, size_t errlen);

/*
 * Make `gen` current (takes over the caller's reference).  Chunks already
 * queued or running keep the generation they pinned.  Returns 0, or -1 with
 * err when gen changes a setting that cannot change at run time (then the
 * caller still owns gen).
 */
int engine_swap(engine_t *e, generation_t *gen, char *err, size_t errlen);

/* A new reference to the current generation (caller unrefs). */
generation_t *engine_current(engine_t *e);

/* Wait until `old` has no reference but the caller's, up to timeout_ms.
 * true when drained. */
bool engine_wait_drained(generation_t *old, int timeout_ms);

/* Ask every thread to stop: stop reading, finish in-flight work, ack it. */
void engine_request_stop(engine_t *e);

/* True once the engine stopped by itself (--exit-idle or circuit stop). */
bool engine_wants_exit(engine_t *e);

/* True when it stopped because the Redis circuit opened with circuit.stop
 * set: a failure, not a clean end. */
bool engine_failed(engine_t *e);

/* Whether the engine stopped because the stream's recorded partition count
 * differs from the setting (checked when the reader first reaches Redis,
 * if evbusd could not check before starting): evbusd exits with status 2. */
bool engine_partitions_refused(engine_t *e);

/* Join the threads, up to timeout_ms.  0 when everything in flight was
 * finished and acked, -1 when the timeout hit (entries stay pending). */
int engine_stop(engine_t *e, int timeout_ms);

void engine_free(engine_t *e);

/* The health document (GET /health, evbusctl status).  Caller decrefs. */
json_t *engine_health(engine_t *e);

/* Record the outcome of the last reload for health. */
void engine_note_reload(engine_t *e, bool ok, const char *error);

/*
 * Handler pause (docs/operations.md, "Pausing a handler").  The state is
 * the hash <stream>:paused in Redis ("Handler pause" in
 * client/evbus_client.h): every host consuming the stream reads it (its
 * maintenance thread, every 250 ms) and its workers check it once per
 * handler call without a lock (core/pause.h).  A paused instance's
 * deliveries go to the retry schedule without spending an attempt; resume
 * makes them due at once.
 *
 * These may be called from any thread but the engine's own (the admin
 * API's, the control thread) between engine_new and engine_free; they
 * block on Redis for up to the command timeout.
 */

/*
 * Pause (paused true) or resume one instance, recording `by` (who asks:
 * a token name, "evbusctl", ...; may be NULL).  The instance must exist in
 * the current generation (a plugin instance or a foreign handler's name),
 * except that a paused name the configuration no longer has may be
 * resumed.  Takes effect on this host before it returns, on the others
 * within their next poll.  Idempotent: pausing a paused instance keeps its
 * first record (`since` is when the pause began); resuming a running one
 * changes nothing.  `reason` (may be NULL) is kept with a pause.  Returns 0
 * when the instance is now in the state asked for, -2 with err for an
 * unknown instance or a bad name, -1 with err when Redis is unreachable;
 * callers that must tell "changed" from "already so" compare
 * engine_paused_json() before and after.
 */
int engine_handler_pause(engine_t *e, const char *instance, bool paused, const char *by,
                         const char *reason, char *err, size_t errlen);

/* {instance: {since, since_ms, by, reason}} of the paused instances as this
 * host enforces them now.  A new object; caller decrefs. */
json_t *engine_paused_json(engine_t *e);

/* (engine_handlers_json, the list of GET /api/v1/handlers with each
 * instance's pause state, is in core/stats.h.) */

/* Replay dispatch callback (store_replay_dispatch_fn shape): dispatches one
 * entry of partition `partition`'s stream as a replay of job_id on the
 * current generation, a failure going to that partition's retry schedule
 * or dead-letter stream.  Returns 0 handled, 1 failed (routed to
 * retry/DLQ, or a partition the engine does not have). */
int engine_dispatch_replay(void *engine, const char *job_id, unsigned partition,
                           const char *stream_id, const char *raw_event, size_t len);

#endif
