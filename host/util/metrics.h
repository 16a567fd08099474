/*
 * metrics — process-wide counters and gauges, present from day one so that
 * every module counts what it does and the Prometheus endpoint only has to
 * render them.
 *
 * Every field is a relaxed atomic: any thread may bump any counter without a
 * lock; readers see a value that is at most slightly stale.  Counters only
 * grow; gauges are set by the thread that owns the measured thing.
 */
#ifndef EVBUS_METRICS_H
#define EVBUS_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_COUNTERS(X)                                                                \
    X(events_read, "evbus_events_read_total", "Entries read from the stream")             \
    X(events_acked, "evbus_events_acked_total", "Entries acknowledged")                    \
    X(events_ignored, "evbus_events_ignored_total", "Events no subscription matched")     \
    X(events_invalid_envelope, "evbus_events_invalid_envelope_total", "Entries with a bad envelope") \
    X(events_schema_invalid, "evbus_events_schema_invalid_total", "Payloads failing their schema") \
    X(events_schema_advisory, "evbus_events_schema_advisory_total", "Schema failures delivered in advisory mode") \
    X(events_dedup_skipped, "evbus_events_dedup_skipped_total", "Deliveries skipped by id dedup") \
    X(handler_ok, "evbus_handler_ok_total", "Handler calls that returned OK")              \
    X(handler_retry, "evbus_handler_retry_total", "Handler calls that returned RETRY")     \
    X(handler_reject, "evbus_handler_reject_total", "Handler calls that returned REJECT")  \
    X(handler_timeout, "evbus_handler_timeouts_total", "Handler calls that overran their timeout") \
    X(handler_late_ok, "evbus_handler_late_ok_total",                                    \
      "Handler calls that overran their timeout but succeeded (counted OK, not retried)")   \
    X(retries_scheduled, "evbus_retries_scheduled_total", "Retries written to the schedule") \
    X(retries_due, "evbus_retries_due_total", "Retries moved back to the stream")        \
    X(dlq_written, "evbus_dlq_written_total", "Entries written to the dead-letter stream") \
    X(dlq_archived, "evbus_dlq_archived_total", "Dead letters archived before trimming") \
    X(dlq_warn, "evbus_dlq_capacity_warnings_total", "DLQ passed 80% of capacity")        \
    X(dlq_error, "evbus_dlq_capacity_errors_total", "DLQ passed 95% of capacity")         \
    X(reclaimed, "evbus_pending_reclaimed_total", "Pending entries claimed from other consumers") \
    X(ghosts, "evbus_pending_ghosts_total", "Pending entries whose stream entry was gone") \
    X(poison, "evbus_poison_pills_total", "Entries dead-lettered for too many deliveries") \
    X(leases, "evbus_leases_renewed_total", "Lease renewals for slow handlers")          \
    X(stale_consumers, "evbus_stale_consumers_removed_total", "Idle consumers removed")  \
    X(redis_errors, "evbus_redis_errors_total", "Redis command or connection errors")     \
    X(reconnects, "evbus_redis_reconnects_total", "Redis reconnections")                 \
    X(nogroup, "evbus_group_recreated_total", "Consumer group recreated after NOGROUP")  \
    X(reloads_ok, "evbus_reloads_total{result=\"ok\"}", "Reloads by result")            \
    X(reloads_failed, "evbus_reloads_total{result=\"failed\"}", "Reloads by result")     \
    X(reloads_partial, "evbus_reloads_total{result=\"partial\"}", "Reloads by result")   \
    X(metadata_written, "evbus_metadata_rows_written_total", "Metadata rows written")     \
    X(metadata_batches, "evbus_metadata_batches_total", "Metadata batch round trips")    \
    X(metadata_dropped, "evbus_metadata_dropped_total", "Metadata updates dropped on a full queue") \
    X(metadata_giveups, "evbus_metadata_giveups_total", "Metadata batches given up after retries") \
    X(replay_events, "evbus_replay_events_total", "Events dispatched by replay jobs")     \
    X(published, "evbus_published_total", "Events published through the host API")       \
    X(stream_trimmed, "evbus_stream_trimmed_total", "Entries trimmed by the retention policy") \
    X(publish_refused_full, "evbus_publish_refused_total{reason=\"stream_full\"}",          \
      "Publishes refused by the host API")                                                 \
    X(archived, "evbus_archive_entries_total", "Stream entries archived to PostgreSQL")    \
    X(archive_errors, "evbus_archive_errors_total",                                         \
      "Archive steps that failed (Redis or PostgreSQL); trimming waits meanwhile")           \
    X(audit_written, "evbus_audit_written_total", "Audit records written (admin API)")      \
    X(audit_dropped, "evbus_audit_dropped_total",                                           \
      "Audit records lost: queue full, stopping, or refused by the backend")                \
    X(runner_starts, "evbus_plugin_runner_starts_total",                                    \
      "Plugin runner children started (isolation: process), restarts included")            \
    X(runner_crashes, "evbus_plugin_runner_crashes_total",                                  \
      "Plugin runner children that died, hung past a timeout or failed to restart")         \
    X(redis_waits, "evbus_redis_waits_total",                                               \
      "WAITs for replicas after writes (redis.wait_replicas)")                               \
    X(redis_wait_short, "evbus_redis_wait_short_total",                                     \
      "WAITs that timed out before redis.wait_replicas replicas had the writes")            \
    X(fenced_writes, "evbus_fenced_writes_total",                                           \
      "Acknowledgements and other writes not made because another host took the partition over") \
    X(leases_acquired, "evbus_partition_leases_acquired_total",                              \
      "Partition leases this host acquired (a takeover each)")                               \
    X(leases_released, "evbus_partition_leases_released_total",                              \
      "Partition leases this host released after draining (rebalancing, stopping)")         \
    X(leases_lost, "evbus_partition_leases_lost_total",                                      \
      "Partition leases this host lost: not renewed in time, or taken over")                 \
    X(keyorder_events_held, "evbus_keyorder_events_held_total",                             \
      "Deliveries of a per_key handler held back behind their key's retrying event")        \
    X(keyorder_table_full, "evbus_keyorder_table_full_total",                               \
      "Keys not held because the per-key table was at its cap (order not kept for them)")

#define METRICS_GAUGES(X)                                                                  \
    X(inflight, "evbus_inflight_events", "Events being dispatched")                        \
    X(partitions_owned, "evbus_partitions_owned",                                          \
      "Partitions this host holds the lease of (partitions > 1)")                           \
    X(keyorder_keys_held, "evbus_keyorder_keys_held",                                       \
      "Keys of per_key handlers held behind a retrying event (this host's table)")          \
    X(dlq_length, "evbus_dlq_length", "Entries in the dead-letter stream")                  \
    X(circuit_open, "evbus_redis_circuit_open", "1 when the Redis circuit breaker is open") \
    X(redis_up, "evbus_redis_up", "0 while Redis is unreachable")                          \
    X(process_starts, "evbus_process_starts_recorded",                                         \
      "evbusd starts recorded in the state dir (survives restarts)")                        \
    X(process_crashes, "evbus_process_crashes_recorded",                                       \
      "Fatal signals recorded in the state dir (survives restarts)")                        \
    X(postgres_up, "evbus_postgres_up", "0 while the metadata writer cannot reach PostgreSQL") \
    X(inhost_pending, "evbus_inhost_pending_events",                                        \
      "Entries read by this host and not yet acknowledged")                                 \
    X(inhost_oldest_age_ms, "evbus_inhost_oldest_pending_age_milliseconds",                 \
      "Age of the oldest entry read by this host and not yet acknowledged")                 \
    X(workers_over_timeout, "evbus_workers_over_timeout",                                   \
      "Worker threads whose handler call is past its timeout")                              \
    X(generation, "evbus_generation", "Current configuration generation number")          \
    X(reload_pending_restart, "evbus_reload_pending_restart_settings",                     \
      "Settings changed in the files that keep their running value until a restart")      \
    X(dlq_capacity, "evbus_dlq_capacity", "dlq.capacity in force")                        \
    X(stream_entries, "evbus_stream_entries", "Entries in the event stream")              \
    X(stream_bytes, "evbus_stream_bytes", "Memory of the event stream (sampled)")         \
    X(stream_oldest_age_s, "evbus_stream_oldest_entry_age_seconds",                       \
      "Age of the stream's first entry")                                                  \
    X(stream_retention_blocked, "evbus_stream_retention_blocked",                         \
      "1 while a consumer group's floor stops the retention policy")                      \
    X(stream_retention_archive_waiting, "evbus_stream_retention_archive_waiting",           \
      "1 while the archive's watermark stops a trim the policy wants")                     \
    X(archive_lag_entries, "evbus_archive_lag_entries",                                     \
      "Entries below the trim floor not archived yet (estimated beyond one chunk)")        \
    X(archive_lag_ms, "evbus_archive_lag_milliseconds",                                     \
      "Time span between the archive's watermark and the trim floor while behind")         \
    X(metadata_queue, "evbus_metadata_queue_length", "Metadata updates waiting")

typedef struct evbus_metrics {
#define X(field, name, help) atomic_uint_fast64_t field;
    METRICS_COUNTERS(X)
    METRICS_GAUGES(X)
#undef X
} evbus_metrics_t;

extern evbus_metrics_t g_metrics;

#define METRIC_INC(f) atomic_fetch_add_explicit(&g_metrics.f, 1, memory_order_relaxed)
#define METRIC_ADD(f, n) atomic_fetch_add_explicit(&g_metrics.f, (n), memory_order_relaxed)
#define METRIC_SET(f, v) atomic_store_explicit(&g_metrics.f, (v), memory_order_relaxed)
#define METRIC_GET(f) atomic_load_explicit(&g_metrics.f, memory_order_relaxed)

/* ---- sampled gauges ------------------------------------------------------
 * Values read from Redis by the maintenance thread (or set at each ack),
 * stored in a fixed unit and shown divided by `scale`.  Until a value has
 * been read, and after a failed read, it is METRICS_UNSET and its series is
 * left out of the exposition: a gauge nobody measured is absent, never 0. */
#define METRICS_UNSET INT64_MIN
#define METRICS_SAMPLED(X)                                                                 \
    X(consumer_lag, "evbus_consumer_lag_messages", 1,                                      \
      "Entries of the stream not yet delivered to the consumer group (XINFO GROUPS lag)")  \
    X(pending, "evbus_pending_messages", 1,                                                \
      "Entries delivered to the group and not acknowledged (all consumers)")              \
    X(oldest_pending_age_ms, "evbus_oldest_pending_age_seconds", 1000,                     \
      "Age of the group's oldest pending entry by its stream id (0 when none is pending)") \
    X(retry_scheduled, "evbus_retry_scheduled", 1, "Retries waiting in the retry schedule") \
    X(dlq_entries, "evbus_dlq_entries", 1, "Entries in the dead-letter stream")            \
    X(dlq_capacity_ratio_ppm, "evbus_dlq_capacity_ratio", 1000000,                         \
      "Dead-letter stream length over dlq.capacity (absent when the capacity is unbounded)") \
    X(last_processed_ms, "evbus_last_processed_timestamp_seconds", 1000,                   \
      "Unix time of the last acknowledgement written by this host")

typedef struct metrics_sampled {
#define X(field, name, scale, help) _Atomic int64_t field;
    METRICS_SAMPLED(X)
#undef X
} metrics_sampled_t;

extern metrics_sampled_t g_sampled;

#define SAMPLED_SET(f, v) atomic_store_explicit(&g_sampled.f, (int64_t)(v), memory_order_relaxed)
#define SAMPLED_GET(f) atomic_load_explicit(&g_sampled.f, memory_order_relaxed)

/* ---- histograms -----------------------------------------------------------
 * Fixed buckets over integer milliseconds; each observation is two relaxed
 * atomic adds (its bucket and the sum).  The count is the sum of the
 * buckets, computed when rendering, so _count always equals the +Inf
 * bucket. */
#define METRICS_HIST_MAX_BOUNDS 16

typedef struct metrics_hist {
    atomic_uint_fast64_t bucket[METRICS_HIST_MAX_BOUNDS + 1]; /* last: above every bound */
    atomic_uint_fast64_t sum_ms;
} metrics_hist_t;

/* Handler call durations.  Measured with the coarse monotonic clock the
 * handler timeouts already read (clock_coarse_ms), so faster calls than its
 * tick (1-10 ms) land in the first bucket; bounds in ms. */
#define METRICS_DURATION_BOUNDS_MS                                                         \
    {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000}
/* Now minus the stream id's time, at the acknowledgement; bounds in ms. */
#define METRICS_LATENCY_BOUNDS_MS                                                          \
    {1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000}

/* End-to-end latency, binned by the caller so a chunk of acks costs one
 * atomic add per non-empty bucket: metrics_latency_bucket() gives the index
 * of ms (negative: clocks apart, counted as 0), metrics_latency_add() adds
 * counts[0..METRICS_HIST_MAX_BOUNDS] and their sum (any thread). */
size_t metrics_latency_bucket(int64_t ms);
void metrics_latency_add(const uint64_t *counts, uint64_t sum_ms);

/* ---- per-handler-instance series -----------------------------------------
 * evbus_events_processed_total{handler,outcome[,tenant]} and
 * evbus_handler_duration_seconds{handler}.  `handler` is a plugin instance
 * name or a foreign handler name: its slot is found once, when a generation
 * is built (metrics_handler_slot), and kept in gen_handler_t, so the hot
 * path indexes an array and never takes a lock.  Slots are keyed by name
 * and never freed, so a reload that keeps an instance keeps its counters
 * (they never go backwards); at most METRICS_MAX_HANDLERS names, later ones
 * share slot 0, shown as handler="(overflow)".  Only the slots of the
 * serving generation are shown (metrics_handler_set_live). */
#define METRICS_OUTCOMES(X)                                                                \
    X(OK, "ok")           /* returned OK (late or not) */                                 \
    X(RETRY, "retry")     /* returned RETRY; a retry was scheduled */                     \
    X(REJECT, "reject")   /* returned REJECT: the event is dead-lettered */               \
    X(TIMEOUT, "timeout") /* overran its timeout and failed; a retry was scheduled */     \
    X(DEAD, "dead")       /* failed with no attempt left, or no data version it accepts */

typedef enum metrics_outcome {
#define X(id, name) METRICS_OUTCOME_##id,
    METRICS_OUTCOMES(X)
#undef X
    METRICS_N_OUTCOMES
} metrics_outcome_t;

/* "ok", ... (static), or NULL out of range. */
const char *metrics_outcome_name(metrics_outcome_t o);

#define METRICS_MAX_HANDLERS 256
/* Tenants named in admin.metrics.tenant_label ever (a reload may add
 * some); later names count as "other", with a warning. */
#define METRICS_MAX_TENANT_LABELS 32

/* The slot of instance `name` (created on first use).  Control thread
 * (generation_build); never fails: slot 0 past the bound. */
uint16_t metrics_handler_slot(const char *name);
/* Show slot's series as part of generation `gen` (control thread, before
 * the generation gauge is set to gen). */
void metrics_handler_set_live(uint16_t slot, uint64_t gen);

/* Count one handler call (any thread): tenant_label from
 * metrics_tenant_label(), 0 = other / no label. */
void metrics_handler_outcome(uint16_t slot, unsigned tenant_label, metrics_outcome_t o);
/* Add one duration (any thread). */
void metrics_handler_duration_ms(uint16_t slot, int64_t ms);

/* Read a slot's counters (any thread; relaxed, possibly slightly stale):
 * outcomes summed over tenant labels, durations as count and sum. */
typedef struct metrics_handler_counts {
    uint64_t outcome[METRICS_N_OUTCOMES];
    uint64_t duration_count, duration_sum_ms;
} metrics_handler_counts_t;
void metrics_handler_read(uint16_t slot, metrics_handler_counts_t *out);

/* Set the tenants that get their own label value, "a,b,c" or NULL for no
 * tenant label at all (control thread; live from the next event and the
 * next scrape). */
void metrics_set_tenant_labels(const char *csv);
/* The label index of tenant (any thread): 0 = "other" (or labels off),
 * else 1 + its index among the names set so far. */
unsigned metrics_tenant_label(const char *tenant);

/* Render all metrics in Prometheus text format into a malloc'd string
 * (caller frees).  Any thread. */
char *metrics_render(void);

#endif
