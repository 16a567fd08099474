/*
 * stats — the numbers behind GET /api/v1/stats and GET /api/v1/handlers:
 * per-event counts by tenant and type, throughput over 1 s / 1 min /
 * 15 min, and each handler instance's counters.  Prometheus output is
 * util/metrics' job; this module keeps what must be split by tenant, which
 * a metric label must not be (unbounded cardinality).
 *
 * Bounds, so that no tenant's traffic can grow memory or leak into another
 * tenant's numbers:
 *  - STATS_MAX_TENANTS tenants are tracked, the first ones seen (events
 *    without a tenantid count as the tenant ""); later tenants' events are
 *    counted in an "untracked" cell that only an all-tenant caller sees, and
 *    a tenant-scoped caller of an untracked tenant gets `tracked: false`
 *    and no counts rather than anyone else's.
 *  - STATS_MAX_PAIRS (tenant, type) pairs in all; a tenant's events of types
 *    beyond that (or with a type longer than STATS_TYPE_MAX) are counted in
 *    its own overflow cell, shown as `other_types` with `types_truncated`.
 *  So a tenant's totals are always exact; only the split by type is bounded.
 *  Tenant names longer than STATS_TENANT_MAX are untracked.
 *
 * Threads: stats_cell() and the stats_cell_* counters from any thread,
 * lock-free (a new pair is published with one compare-and-swap); the hot
 * path is a hash of tenant and type, a probe and relaxed atomic adds.
 * stats_sample() from one thread (the engine's maintenance thread), the
 * *_json readers from any thread (they take the throughput ring's mutex,
 * which only stats_sample() also takes).
 */
#ifndef EVBUS_CORE_STATS_H
#define EVBUS_CORE_STATS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"
#include "core/event.h"
#include "util/metrics.h"

#define STATS_MAX_TENANTS 64
#define STATS_MAX_PAIRS 512
#define STATS_TENANT_MAX 63 /* longest tracked tenant name */
#define STATS_TYPE_MAX 127  /* longest tracked type */

typedef struct stats stats_t;
typedef struct stats_cell stats_cell_t;

/* NULL when out of memory.  Owned by the caller (stats_free). */
stats_t *stats_new(void);
void stats_free(stats_t *s);

/* The cell counting events of (tenant, type); NULL tenant or type count as
 * "" (an envelope that did not parse).  Never NULL for a non-NULL s; NULL
 * s gives NULL, which the stats_cell_* functions ignore. */
stats_cell_t *stats_cell(stats_t *s, const char *tenant, const char *type);
/* Count an event's final status (COMPLETED, RETRYING, DEAD_LETTERED,
 * IGNORED; PROCESSING is not counted). */
void stats_cell_status(stats_cell_t *c, event_status_t st);
/* Count one handler outcome of an event. */
void stats_cell_outcome(stats_cell_t *c, metrics_outcome_t o);

/* Take a throughput sample when a second (and a minute) has passed since
 * the last one; now_ms from clock_mono_ms().  Maintenance thread. */
void stats_sample(stats_t *s, int64_t now_ms);

/*
 * {tenant: name|null, tracked: bool,
 *  throughput: {per_s_1s, per_s_1m, per_s_15m: number|null,
 *               covered_s_1m, covered_s_15m: seconds of history used},
 *  events: {completed, retrying, dead_lettered, ignored,
 *           handler_outcomes: {ok, retry, reject, timeout, dead}},
 *  by_type: {"<type>": {same as events}}, other_types: {same}|null,
 *  types_truncated: bool,
 *  by_tenant: {"<tenant>": {same as events}}, untracked: {same}  -- only
 *      when tenant is NULL}
 * Counts are since the process started.  Throughput counts events whose
 * status was decided (each delivery, retries included); rates are null
 * until two samples exist.  For an untracked tenant (see the bounds)
 * tracked is false and events and throughput are null.  Events without a
 * type (an envelope that did not parse) are under the type "".
 * tenant NULL = every tenant.  Caller decrefs.
 */
json_t *stats_json(stats_t *s, const char *tenant);

/* Cumulative counts per series since the process started: series 0 is
 * every event, 1 + n the n-th tenant seen (stats_series).  events: final
 * statuses decided; outcomes: handler outcomes; failures: the outcomes
 * other than ok (retry, reject, timeout, dead). */
typedef struct stats_totals {
    uint64_t events[1 + STATS_MAX_TENANTS];
    uint64_t dead_lettered[1 + STATS_MAX_TENANTS];
    uint64_t outcomes[1 + STATS_MAX_TENANTS];
    uint64_t failures[1 + STATS_MAX_TENANTS];
} stats_totals_t;

/* A consistent-enough read of every series (relaxed loads).  Any thread. */
void stats_totals(stats_t *s, stats_totals_t *t);

/* The series of tenant (NULL = every tenant: 0); -1 for a tenant with no
 * events yet.  *tracked false for a tenant beyond the bounds (see above),
 * whose numbers are nobody's to show.  Any thread. */
int stats_series(stats_t *s, const char *tenant, bool *tracked);

/* ---- history: the overview's last STATS_HISTORY_POINTS periods --------- */

/*
 * Every period (stats.history_period, a minute by default) the
 * maintenance thread takes a sample: the cumulative totals of every series
 * and the gauges it sampled from Redis.  The history keeps the newest
 * STATS_HISTORY_POINTS + 1 samples, so STATS_HISTORY_POINTS points (the
 * differences of neighbours): a quarter of an hour at the default period.
 *
 * Threads: stats_history_sample() from one thread only (the maintenance
 * thread owns the samples); each sample publishes a new immutable
 * snapshot, swapped whole under a mutex that only guards the pointer, so
 * stats_history_json() from any thread reads a snapshot that never
 * changes under it (reference counted; a slow reader never blocks the
 * sampler for longer than the swap).
 */
#define STATS_HISTORY_POINTS 15

/* The stream's gauges at a sample, as util/metrics' SAMPLED values
 * (METRICS_UNSET: not read yet, or the last read failed). */
typedef struct stats_gauges {
    int64_t lag, pending, oldest_pending_age_ms, dlq_entries, dlq_ratio_ppm;
} stats_gauges_t;

typedef struct stats_history stats_history_t;

/* A history whose first sample is zero counts at (wall_ms, mono_ms): make
 * it with the stats_t it samples, so the first point counts everything
 * before the first sample.  NULL when out of memory.  Owned by the caller
 * (stats_history_free, once no thread uses it). */
stats_history_t *stats_history_new(int64_t wall_ms, int64_t mono_ms);
void stats_history_free(stats_history_t *h);

/* Take a sample now (wall_ms: clock_wall_ms, mono_ms: clock_mono_ms):
 * s's totals and g.  The caller decides when a period has passed.
 * -1 when out of memory (the previous snapshot stays).  One thread. */
int stats_history_sample(stats_history_t *h, stats_t *s, int64_t wall_ms, int64_t mono_ms,
                         const stats_gauges_t *g);

/*
 * GET /api/v1/stats/history:
 * {tenant: name|null, tracked: bool, period_s: the configured period,
 *  points: [{at: RFC 3339 (end of the period), span_s: its real length,
 *            events, per_s, handler_outcomes, failures, failure_ratio
 *            (failures / handler_outcomes, null when none), dead_lettered,
 *            -- the caller's tenant; null when it is not tracked
 *            lag, pending, oldest_pending_age_s, dlq_entries, dlq_ratio
 *            -- the stream's, at the end of the period; null when not read
 *           }, ...]}  oldest first, at most STATS_HISTORY_POINTS.
 * tenant NULL = every tenant.  Caller decrefs.  Any thread.
 */
json_t *stats_history_json(stats_history_t *h, stats_t *s, const char *tenant,
                           int64_t period_ms);

/* ---- the throughput ring (pure; exposed for its unit test) -------------- */

/* Samples of `width` cumulative counters, oldest overwritten first. */
typedef struct stats_ring {
    size_t cap, width;
    size_t n;      /* samples held */
    size_t newest; /* index of the newest sample when n > 0 */
    int64_t *t_ms;
    uint64_t *v;   /* cap rows of width */
} stats_ring_t;

int stats_ring_init(stats_ring_t *r, size_t cap, size_t width);
void stats_ring_free(stats_ring_t *r);
void stats_ring_push(stats_ring_t *r, int64_t t_ms, const uint64_t *values);
/* The newest sample (false when empty). */
bool stats_ring_last(const stats_ring_t *r, int64_t *t_ms, const uint64_t **values);
/*
 * Events per second of `series` between (now_ms, now_value) and the
 * newest sample at least window_ms older (or, with less history, the
 * oldest sample).  -1 when no sample is older than now_ms.  *covered_ms
 * (may be NULL) gets the span actually used.
 */
double stats_ring_rate(const stats_ring_t *r, size_t series, int64_t now_ms, uint64_t now_value,
                       int64_t window_ms, int64_t *covered_ms);

/* ---- the admin API's view of a running engine -------------------------- */

/*
 * GET /api/v1/stats: stats_json(tenant) plus what the engine samples from
 * Redis, which is per stream, not per tenant, and shown to every caller:
 *   consumer_group: {lag: n|null, lag_known: bool, pending: n|null,
 *                    oldest_pending_age_s: number|null},
 *   dlq: {entries: n|null, capacity: n (0 = unbounded), ratio: number|null},
 *   retries_scheduled: n|null
 * (null: not read yet, or the last read failed).  Any thread.  Caller
 * decrefs.
 */
json_t *engine_stats_json(engine_t *e, const char *tenant /* NULL = all */);

/*
 * GET /api/v1/handlers: the serving generation's handler instances:
 * {generation: n, handlers: [{instance, kind: "plugin"|"foreign",
 *   plugin: name|null, configured: true, state: "running"|"paused",
 *   paused: {since, since_ms, by, reason}|null,
 *   subscriptions: [{subscriber: name|null, handler: "inst/sub", pattern,
 *   priority, timeout_ms, max_attempts}],
 *   counters: {ok, retry, reject, timeout, dead},
 *   duration: {count, sum_s}}]}
 * then the paused names the generation lacks (removed by a reload, still
 * resumable): {instance, kind: null, configured: false, state: "paused",
 * paused, subscriptions: []}.
 * Counters are the ones of evbus_events_processed_total and
 * evbus_handler_duration_seconds: per instance, since the process started,
 * kept across reloads.  Any thread.  Caller decrefs.
 */
json_t *engine_handlers_json(engine_t *e);

/* GET /api/v1/stats/history: stats_history_json of the engine's history
 * for tenant (NULL = all).  Any thread.  Caller decrefs. */
json_t *engine_stats_history_json(engine_t *e, const char *tenant);

/* The engine's stats and history (engine.c; for engine_stats_json).  Any
 * thread. */
stats_t *engine__stats(engine_t *e);
stats_history_t *engine__history(engine_t *e);
int64_t engine__history_period_ms(engine_t *e);

#endif
