/*
 * store — PostgreSQL side of evbus: schema migrations, the per-event
 * metadata table written in batches by a background thread, read queries
 * for the CLI, and replay jobs with the worker that runs them against the
 * Redis stream.  See docs/storage.md for tables, statuses and limits.
 *
 * The store is optional: the bus delivers events without PostgreSQL, and
 * metadata is best-effort by design (a full queue drops and counts rather
 * than slowing the consumer).  The archive (retention.archive: postgres,
 * migration 0008) is not: it holds the stream's entries the trimmer may
 * then remove, and replay reads the part of a window that precedes the
 * stream's first entry from it.
 *
 * Errors: functions return 0 (or a documented non-negative value) on
 * success and -1 with "where: why" in err on failure (err may be NULL
 * nowhere: pass a buffer, 256 bytes is plenty).  Validation failures of
 * user input return STORE_EINVAL (-2) with the offending field named
 * first ("from: ...").
 *
 * Threads: a PGconn is used by one thread at a time (libpq rule); the
 * functions taking a PGconn are otherwise thread-safe.  The writer and the
 * replay worker own their connections.  store_writer_submit() may be called
 * from any number of threads concurrently; start/stop from one control
 * thread.  JSON results (json_t *) belong to the caller (json_decref).
 */
#ifndef EVBUS_STORE_H
#define EVBUS_STORE_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

enum { STORE_EINVAL = -2 };

/* ---------------------------------------------------------------- common */

/*
 * Connect to url and set the session time zone to UTC (so every timestamp
 * the store renders ends in +00:00).  NULL with libpq's message in err.
 * The caller owns the connection (PQfinish).
 */
PGconn *store_connect(const char *url, char *err, size_t errlen);

/* ------------------------------------------------------------ migrations */

/* One embedded migration: generated at build time from migrations/ *.sql. */
typedef struct store_migration {
    int version;       /* the NNNN prefix */
    const char *name;  /* file name, e.g. "0001_init.sql" */
    const char *sql;   /* whole file; may hold several statements */
} store_migration_t;

extern const store_migration_t store_migrations[];
extern const size_t store_migrations_count;

typedef struct store_migration_status {
    int version;
    char name[128];
    bool applied;
    bool applied_now;    /* applied by this call */
    char applied_at[40]; /* RFC 3339 UTC, "" when not applied */
} store_migration_status_t;

/*
 * Bring the schema up to date with the embedded migrations (dry_run: only
 * report).  Holds a session advisory lock for the whole run, so two hosts
 * migrating at once serialise and the second finds nothing to do.  Each
 * migration runs in its own transaction together with its
 * schema_migrations row; a failing one rolls back completely and stops the
 * run with "migration 0003_x.sql failed: <server message>" (earlier ones
 * stay applied).  When out is not NULL it receives a malloc'd array (caller
 * frees) of every known version in order, plus versions found in the
 * database that this binary does not know.  0 or -1.
 */
int store_migrate(PGconn *c, int dry_run, store_migration_status_t **out, size_t *n, char *err,
                  size_t errlen);

/* 1 when migration `version` is applied, 0 when not (or the schema was
 * never migrated), -1 with err when the query fails. */
int store_migration_applied(PGconn *c, int version, char *err, size_t errlen);

/* store_migrate() over an explicit list (sorted by version), for tests. */
int store_migrate_list(PGconn *c, const store_migration_t *list, size_t count, int dry_run,
                       store_migration_status_t **out, size_t *n, char *err, size_t errlen);

/* -------------------------------------------------------- event metadata */

typedef enum store_status {
    STORE_PENDING = 0,
    STORE_PROCESSING,
    STORE_COMPLETED,
    STORE_RETRYING,
    STORE_DEAD_LETTERED,
    STORE_IGNORED,
    STORE_PURGED, /* its dead letter was deleted or purged (migration 0007) */
} store_status_t;

/*
 * The status history of an event's row (migration 0010, column
 * status_history): its transitions oldest first, each {"status", "at" (RFC
 * 3339), "attempts", "error" (text or null)}, as the metadata writer
 * received them (several in one batch each count) plus PURGED; the newest
 * STORE_STATUS_HISTORY_MAX kept, each error cut at
 * STORE_STATUS_HISTORY_ERROR_MAX bytes.  NULL for rows written before it.
 */
#define STORE_STATUS_HISTORY_MAX 20
#define STORE_STATUS_HISTORY_ERROR_MAX 300
/* The migration that adds it; the writer works without it (no history). */
#define STORE_STATUS_HISTORY_MIGRATION 10

/* "PENDING", ...; NULL for an out-of-range value. */
const char *store_status_name(store_status_t s);
/* Accepts the names above case-insensitively; -1 when unknown. */
int store_status_parse(const char *s);
/* COMPLETED, DEAD_LETTERED, IGNORED and PURGED: completed_at is set. */
bool store_status_terminal(store_status_t s);

/*
 * One status change of one event.  Strings are borrowed for the call
 * (submit copies them); NULL means "unknown / keep what is stored".
 * timestamp_ms orders updates: the row keeps the newest status.
 *
 * stream_id ("<ms>-<seq>") anchors the row: its time is the row's
 * created_at, which places it in its day's partition (migration 0006), so
 * every update of one event must carry the same stream id, its original
 * entry's (the consumer reports retries with it).  An update without a
 * usable stream id (NULL, or not "<digits>-<digits>") costs a lookup of
 * the id across every partition; a new row then takes its first update's
 * timestamp as created_at.  An update whose stream id differs from the
 * stored row's starts a second row (see docs/storage.md).
 */
typedef struct store_update {
    const char *id;            /* required */
    const char *type;
    const char *tenant;
    const char *correlation_id;
    const char *source;
    const char *stream_id;
    int schema_version;        /* 0 = unknown */
    store_status_t status;
    int attempts;              /* the stored value only grows */
    const char *last_error;
    const char *handler_outcomes_json; /* JSON object, merged into the row's */
    int64_t timestamp_ms;      /* Unix epoch ms of the status change */
} store_update_t;

typedef struct store_writer store_writer_t;

/*
 * Start the writer thread for cfg->postgres_url with a queue of
 * cfg->metadata_queue_size updates, flushing batches of up to
 * cfg->metadata_batch_size at least every cfg->metadata_flush_ms.  It
 * connects in the background (an unreachable PostgreSQL is not an error
 * here: the writer keeps reconnecting with backoff).  Between batches it
 * runs store_events_upkeep() with cfg->metadata_retention_ms (in seconds) and
 * metadata_partitions_ahead: once connected, then hourly (a minute after a
 * failed round).  cfg is read only during the call.  NULL (logged as
 * ERROR) when there is no URL or the thread cannot start.
 */
store_writer_t *store_writer_start(const evbus_config_t *cfg);

/* Apply cfg's live writer settings (postgres.metadata.flush_ms from the
 * next batch on; retention and partitions_ahead by an upkeep round at once
 * when they changed).  NULL w is fine.  Any thread. */
void store_writer_configure(store_writer_t *w, const evbus_config_t *cfg);
/* The flush interval in force (health). */
int store_writer_flush_ms(const store_writer_t *w);

/* Whether the writer's last contact with PostgreSQL succeeded (a write,
 * a connect, or the idle probe it runs every 2 s).  Any thread. */
bool store_writer_connected(const store_writer_t *w);

/* {connected, last_error, since_ms (of the current state), queue,
 * capacity, dropped} for /health.  Caller decrefs.  Any thread. */
json_t *store_writer_health(const store_writer_t *w);

/*
 * Queue one update; never waits for PostgreSQL.  Returns 0, or -1 when the
 * queue is full (or the writer is stopping): the update is dropped and
 * counted in metadata_dropped, with a WARN at most every 10 s.  Any thread.
 */
int store_writer_submit(store_writer_t *w, const store_update_t *u);

/*
 * Updates copied now and queued later, all under one lock: a consumer
 * thread collects a chunk's updates while it dispatches and submits them
 * once the chunk's acknowledgements are written, instead of taking the
 * queue's lock once per event.  Owned by one thread; zero-initialize it.
 */
typedef struct store_pending {
    void **items;
    size_t n, cap;
} store_pending_t;

/* Copy u into p.  -1 when memory runs out: the update is dropped and
 * counted as store_writer_submit() would. */
int store_pending_add(store_pending_t *p, const store_update_t *u);

/* Queue everything in p (which is emptied) with one lock; what does not
 * fit is dropped and counted.  Returns how many were dropped.  w may be
 * NULL: then everything is discarded without being counted (metadata
 * switched off by a reload in between). */
size_t store_writer_submit_pending(store_writer_t *w, store_pending_t *p);

/* Free p's memory (dropping, uncounted, anything still in it). */
void store_pending_free(store_pending_t *p);

/*
 * True when the queue is at least 3/4 full while the writer is healthy
 * (it wrote a batch within the last second).  The consumer then paces its
 * reads so a merely slower PostgreSQL loses no metadata; a PostgreSQL that
 * is down never reports congestion, so consumption never stalls on it.
 * Any thread.
 */
bool store_writer_congested(store_writer_t *w);

/*
 * Stop the thread: flush for up to flush_timeout_ms, then drop (and count)
 * whatever could not be written.  Frees w; NULL is fine.
 */
void store_writer_stop(store_writer_t *w, int flush_timeout_ms);

/*
 * Insert PENDING rows for events just published (e.g. by evbusctl), in one
 * statement; rows that already exist are left alone.  Only id, type,
 * tenant, correlation_id, source, stream_id, schema_version and
 * timestamp_ms are used.  Returns the number of rows inserted, or -1.
 */
int store_record_published(PGconn *c, const store_update_t *events, size_t n, char *err,
                           size_t errlen);

/* ---------------------------------------------------------------- reads */

/* One event row as a JSON object in *out, or *out = NULL when absent; the
 * newest (by created_at) when the id has several.  0/-1. */
int store_events_get(PGconn *c, const char *id, json_t **out, char *err, size_t errlen);

/*
 * What retention removed, for explaining an id that is not found:
 * *out = {"before": RFC 3339, "retention_s": N, "dropped_at": RFC 3339}
 * (metadata created before `before` may have been dropped, by the
 * retention N in force then), or NULL when nothing was ever dropped or the
 * schema predates migration 0006.  Event ids carry no time, so an absent
 * id can only be said to be possibly expired.  0/-1.
 */
int store_events_expired(PGconn *c, json_t **out, char *err, size_t errlen);

typedef struct store_event_filter {
    const char *tenant;  /* NULL = any */
    const char *type;    /* exact type; NULL = any */
    int status;          /* store_status_t, or -1 = any */
    int64_t since_ms;    /* created_at >= since; 0 = no bound */
    int64_t until_ms;    /* created_at <= until; 0 = no bound */
    int limit;           /* 1..1000; 0 = 100 */
    int offset;
    /* Keyset continuation: only rows after the row (after_created,
     * after_id) in the list's order, i.e. created_at < after_created, or
     * equal and id > after_id.  after_created is a created_at exactly as a
     * listed row renders it; both NULL = from the newest.  Unlike offset,
     * rows written meanwhile never shift a page. */
    const char *after_created;
    const char *after_id;
} store_event_filter_t;

/* Matching rows, newest first (ties by id), as a JSON array in *out.  0,
 * -1 or STORE_EINVAL (limit out of range, only one of the after_ pair). */
int store_events_list(PGconn *c, const store_event_filter_t *f, json_t **out, char *err,
                      size_t errlen);

/* ------------------------------------------------ partitions and retention */

/* What one upkeep round keeps: partitions ahead, and how much history. */
typedef struct store_retention {
    uint32_t retention_s;      /* 0 = keep everything */
    uint32_t partitions_ahead; /* days after today that get a partition */
} store_retention_t;

typedef struct store_upkeep {
    int created;  /* partitions created */
    int dropped;  /* partitions dropped */
    bool skipped; /* another host was doing it: nothing done */
} store_upkeep_t;

/*
 * One upkeep round of the partitioned events table (migration 0006), now_ms
 * being the wall clock: create the partitions of today and the next
 * partitions_ahead UTC days (rows of those days waiting in events_default
 * move in); when retention_s is not 0, drop every partition whose whole day
 * ended more than retention_s before now_ms and delete rows that old from
 * events_default, recording each in events_expired.  One transaction,
 * serialised across hosts by an advisory lock (a round that finds it taken
 * does nothing: out->skipped).  Its DDL waits at most 2 s for locks, so a
 * long read of events fails the round instead of stalling the writers
 * queued behind it.  0 or -1.  The metadata writer runs it (see
 * store_writer_start()).
 */
int store_events_upkeep(PGconn *c, const store_retention_t *r, int64_t now_ms,
                        store_upkeep_t *out, char *err, size_t errlen);

/*
 * The dead letters of these events were removed by an operator (evbusctl
 * dlq delete / purge): rows now DEAD_LETTERED become PURGED, stamped now
 * (never earlier than their status_at).  Rows in any other status are
 * left alone (the event was delivered since, or its row says nothing
 * about the dead letter), and so are ids without a row.  Needs migration
 * 0007.  Returns the number of rows changed, or -1.
 */
int store_events_mark_purged(PGconn *c, const char *const *ids, size_t n, char *err,
                             size_t errlen);

/* ------------------------------------------------------------- archive */

/*
 * One stream entry for the archive: its id and its fields as Redis returned
 * them (name, value, name, value, ...; values may hold any byte).  The
 * `event` field goes to the event column, the others, in their order, to
 * fields.  Borrowed for the call.
 */
typedef struct store_archive_entry {
    const char *id;             /* "<ms>-<seq>" */
    const char *const *fields;
    const size_t *lens;
    size_t n_fields;            /* names + values */
} store_archive_entry_t;

/*
 * Store entries of stream in events_archive (migration 0008) in one binary
 * COPY, committed when this returns 0; *inserted gets the rows that were
 * not there yet.  Entries already archived are left as they are, so
 * writing a chunk again after a crash is harmless.  STORE_EINVAL names an
 * entry whose id cannot be stored ("entries[3]: id ..."; a sequence beyond
 * bigint), -1 with the server's message otherwise (nothing is stored).
 * The connection must not be inside a transaction.
 */
int store_archive_write(PGconn *c, const char *stream, const store_archive_entry_t *entries,
                        size_t n, long *inserted, char *err, size_t errlen);

/*
 * One upkeep round of the archive's day partitions, like
 * store_events_upkeep() for events: with create, the partitions of today
 * and the next r->partitions_ahead UTC days; with r->retention_s, drops
 * every partition whose whole day ended more than retention_s before now_ms
 * and deletes older rows from events_archive_default.  One transaction,
 * serialised across hosts by its own advisory lock (out->skipped when
 * another host holds it, or when migration 0008 is not applied).  0/-1.
 */
int store_archive_upkeep(PGconn *c, const store_retention_t *r, bool create, int64_t now_ms,
                         store_upkeep_t *out, char *err, size_t errlen);

/* ----------------------------------------------------------- replay jobs */

typedef struct store_replay_request {
    int64_t from_ms;           /* inclusive, Unix epoch ms */
    int64_t to_ms;             /* inclusive */
    const char *const *types;  /* patterns (router syntax); none = all */
    size_t n_types;
    const char *tenant;        /* NULL = all tenants */
    int rate;                  /* events/s; 0 = unlimited */
    const char *requested_by;  /* free text, may be NULL */
    unsigned partitions;       /* the stream's `partitions`; 0 and 1: unpartitioned */
} store_replay_request_t;

/* The migration that adds replay_jobs.partitions: jobs on partitioned
 * streams need it, jobs on unpartitioned ones do not. */
#define STORE_REPLAY_PARTITIONS_MIGRATION 11

/*
 * Validate and insert a pending job; its id (a UUID) goes to id_out (37+
 * bytes).  STORE_EINVAL names the field: "from: must be before to",
 * "to: range of N s exceeds replay.max_range_s (M)", "types[1]: ...",
 * "rate: must be > 0".  max_range_s 0 = no limit.  With partitions > 1
 * the job gets one progress record per partition (`partitions`, see
 * store_replay_get); when the schema lacks migration 0011 that fails (-1,
 * the message says to run `evbusctl migrate up`) and nothing is inserted.
 */
int store_replay_create(PGconn *c, const store_replay_request_t *req, uint32_t max_range_s,
                        char *id_out, size_t id_len, char *err, size_t errlen);

/*
 * The job as a JSON object (all columns), *out = NULL when absent.  0/-1.
 * A job on a partitioned stream also has "partitions": an array, in
 * partition order, of {"partition", "status" (pending|running|completed),
 * "total", "processed", "skipped", "failed", "position" (last entry handled
 * in that partition's stream, or null), "warning" (or null)}; its total,
 * processed, skipped and failed are the sums and its position is null.  A
 * job on an unpartitioned stream has no "partitions" member.  The same
 * holds for each job of the lists below.
 */
int store_replay_get(PGconn *c, const char *id, json_t **out, char *err, size_t errlen);

/* Up to limit jobs (0 = 100), newest first, as a JSON array.  0/-1. */
int store_replay_list(PGconn *c, int limit, json_t **out, char *err, size_t errlen);

typedef struct store_replay_filter {
    const char *tenant;        /* only this tenant's jobs; NULL = every job */
    int limit;                 /* 1..1000; 0 = 100 */
    /* Keyset continuation as store_event_filter_t's: jobs after
     * (after_created, after_id) in the list's order (created_at DESC, id). */
    const char *after_created;
    const char *after_id;
} store_replay_filter_t;

/* Jobs matching f, newest first (ties by id), as a JSON array.  0, -1 or
 * STORE_EINVAL.  A tenant filter matches the job's tenant exactly: jobs
 * of every tenant (tenant NULL) are not a tenant's. */
int store_replay_list_filtered(PGconn *c, const store_replay_filter_t *f, json_t **out,
                               char *err, size_t errlen);

/*
 * pending/running -> cancelled (a running job notices at its next check).
 * 0, or -1 with "no replay job ID" / "job ID is already <status>".
 */
int store_replay_cancel(PGconn *c, const char *id, char *err, size_t errlen);

/* Delete all but the newest keep_completed completed and keep_failed
 * failed jobs (cancelled ones count as failed).  Returns rows deleted or -1. */
int store_replay_prune(PGconn *c, uint32_t keep_completed, uint32_t keep_failed, char *err,
                       size_t errlen);

/*
 * Atomically take the oldest claimable job (FOR UPDATE SKIP LOCKED, so
 * several hosts never claim the same job) and mark it running with a fresh
 * heartbeat, counting the claim: a pending job, or a running one whose
 * heartbeat is older than lease_ms (its host died; migration 0005).  *out
 * is the job's JSON object (with position and claims), or NULL when none
 * is claimable.  0/-1.
 */
int store_replay_claim_next(PGconn *c, uint32_t lease_ms, json_t **out, char *err,
                            size_t errlen);

/* ---------------------------------------------------------- replay worker */

/*
 * Called by the worker thread for each event of a job that passed the
 * filters.  raw_event is the entry's `event` field (len bytes, also
 * NUL-terminated), stream_id its "ms-seq" id in the stream of `partition`
 * (0 for an unpartitioned stream): the host routes a failure to that
 * partition's retry schedule or dead-letter stream.  Return 0 when
 * handled, 1 when it failed (the host has already routed it to retry /
 * dead-letter).
 */
typedef int (*store_replay_dispatch_fn)(void *ud, const char *job_id, unsigned partition,
                                        const char *stream_id, const char *raw_event,
                                        size_t len);

typedef struct store_replay_worker store_replay_worker_t;

/*
 * Start the thread that polls for pending jobs every 500 ms and runs them
 * one at a time against cfg->stream on cfg->core.redis_url (its own
 * connection, XRANGE only: the consumer group is never touched).  A read
 * that fails in a way that may pass (no connection, an I/O error) is
 * retried after a backoff for up to 3 x redis.command_timeout_ms, the
 * job's heartbeat kept; then the job fails with the reason (a read given
 * up because the worker stops hands the job back).  With partitions P > 1
 * a job reads partition 0's stream {S:0} over its window, then {S:1}, ...,
 * each in stream order (so each key's events keep their order), keeping
 * each partition's progress; a job whose partition count is not the
 * worker's (created before the stream's count changed) fails, saying
 * both.  Finished jobs are
 * pruned to cfg->replay_keep_completed / replay_keep_failed.  The needed
 * settings are copied.  NULL (logged as ERROR) when there is no PostgreSQL
 * URL or the thread cannot start.
 */
store_replay_worker_t *store_replay_worker_start(const evbus_config_t *cfg,
                                                 store_replay_dispatch_fn fn, void *ud);

/*
 * The same on a Redis Cluster when redis_cluster (the seeds, as
 * core_redis_cluster gives them; copied) is not NULL: each partition's
 * reads go to the master serving its stream's slot ({S:p}: the job reads
 * one partition at a time, every key of it in that slot), and a redirect
 * (MOVED, ASK, TRYAGAIN, CLUSTERDOWN: a reshard or a failover) is retried
 * like an I/O error, the slot map read again first.  NULL: as
 * store_replay_worker_start.
 */
store_replay_worker_t *store_replay_worker_start_on(const evbus_config_t *cfg,
                                                    const char *redis_cluster,
                                                    store_replay_dispatch_fn fn, void *ud);

/* Apply cfg's live replay settings (replay.keep_completed, keep_failed,
 * lease_ms, chunk) from the worker's next round.  NULL w is fine. */
void store_replay_worker_configure(store_replay_worker_t *w, const evbus_config_t *cfg);

/* Stop the thread and free w.  A running job is handed back: pending
 * again, with its counts and position, so the next host (or this one after
 * a restart) resumes it; handing back does not use up a claim.  NULL is
 * fine. */
void store_replay_worker_stop(store_replay_worker_t *w);

/* ---------------------------------------------------------------- times */

/* Parse RFC 3339 ("2024-05-01T10:00:00Z", fraction and offsets allowed)
 * into Unix epoch ms.  0 or -1. */
int store_parse_rfc3339(const char *s, int64_t *ms);

#endif /* EVBUS_STORE_H */
