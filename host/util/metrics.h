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
      "Audit records lost: queue full, stopping, or refused by the backend")

#define METRICS_GAUGES(X)                                                                  \
    X(inflight, "evbus_inflight_events", "Events being dispatched")                        \
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

/* Render all metrics in Prometheus text format into a malloc'd string. */
char *metrics_render(void);

#endif
