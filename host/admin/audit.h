/*
 * audit — the operator API's audit log: one record per mutating call
 * (who, which tenant, what, on what, how many, with what result).
 *
 * Two backends, chosen once by audit_start():
 *   - PostgreSQL (postgres.url set): the audit_log table of migration
 *     0009, written in batched INSERTs by the audit's own thread and its
 *     own connection (reconnects with backoff, 100 ms doubling to 5 s);
 *   - otherwise an append-only JSONL file, <state_dir>/admin-audit.jsonl (mode
 *     0600 when created), one JSON object per line, written by the same
 *     kind of thread with O_APPEND and fdatasync per batch.  Renaming the
 *     file away rotates it: the next batch creates a new one.
 *
 * Writing never waits for I/O: audit_write() copies the record into a
 * bounded queue (AUDIT_QUEUE_CAP records); when the queue is full the record
 * is dropped and counted (evbus_audit_dropped_total), with a WARN at most
 * every 10 s.  Records written: evbus_audit_written_total.  A batch the
 * database refuses three times on a live connection (e.g. migration 0009
 * not applied) is counted as dropped and logged as an ERROR.
 *
 * Records never hold a token, only the token's configured name.
 *
 * Record, as audit_list() returns it and as each JSONL line holds it:
 *   {"id": 42, "at": "2026-12-01T10:00:00.123Z", "ts_ms": 1796119200123,
 *    "token": "oncall", "tenant": "*", "action": "dlq.retry",
 *    "target": "1700000000000-0", "count": 1, "result": "ok",
 *    "request_id": "r-1"}
 * "tenant" is "*" for a record made with a token of every tenant; "target",
 * "count" and "request_id" are null when not given.  "id" grows with each
 * record written (the table's bigserial; in the file, the last line's id + 1,
 * found by scanning the file when the thread starts).
 *
 * Result convention (callers follow it so the log reads the same
 * everywhere): "ok" on success, else "error: <short reason>" — e.g.
 * "error: not found", "error: 409 confirm token does not match".
 *
 * Threads: audit_write(), audit_list(), audit_sync() and audit_where() may
 * be called from any thread, concurrently.  audit_start() and audit_stop()
 * from one control thread, with no other call in flight during
 * audit_stop().  The handle is owned by its creator and freed by
 * audit_stop().
 *
 * Errors: functions return 0 on success, -1 with "where: why" in err when
 * the backend fails, AUDIT_EINVAL (-2) with the offending argument named
 * first ("cursor: ...") for bad input.
 */
#ifndef EVBUS_ADMIN_AUDIT_H
#define EVBUS_ADMIN_AUDIT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

enum { AUDIT_EINVAL = -2 };

/* Records the queue holds while the thread writes; admin traffic is far
 * below this, so a full queue means the backend has been stuck for a while. */
#define AUDIT_QUEUE_CAP 4096
/* Records per INSERT / write(2). */
#define AUDIT_BATCH_MAX 256
/* How long audit_stop() keeps writing what is queued. */
#define AUDIT_STOP_TIMEOUT_MS 2000
/* audit_list()'s page size bounds. */
#define AUDIT_LIST_MAX 1000

/* The JSONL backend's file name in state_dir. */
#define AUDIT_FILE_NAME "admin-audit.jsonl" /* not audit.jsonl: conf.d's example file-sink writes that */

typedef struct audit audit_t;

/*
 * One record.  Strings are borrowed for the call (audit_write copies them);
 * token, action and result are required, the others may be NULL.
 */
typedef struct audit_record {
    int64_t ts_ms;          /* Unix epoch ms of the call; 0 = now */
    const char *token;      /* the token's configured name, never the token */
    const char *tenant;     /* the token's tenant; NULL or "*" = every tenant */
    const char *action;     /* "dlq.retry", "dlq.delete", "dlq.redrive", "reload", ... */
    const char *target;     /* an id, or a filter's JSON text */
    int64_t count;          /* entries affected; -1 = not applicable */
    const char *result;     /* "ok" or "error: ..." (see above) */
    const char *request_id; /* the request's id, when the caller has one */
} audit_record_t;

/*
 * Start the audit log for cfg: PostgreSQL when cfg->store.postgres_url is
 * set (the thread connects in the background: a PostgreSQL that is down
 * is not an error here), else the file <cfg->daemon.state_dir>/admin-audit.jsonl
 * (state_dir is created 0700 when missing and must be private, see
 * util/private_dir.h; the file is opened here so that a permission problem
 * is reported at once).  cfg is read only during the call.  NULL with err
 * when neither backend can be set up or the thread cannot start.
 */
audit_t *audit_start(const evbus_config_t *cfg, char *err, size_t errlen);

/*
 * Queue one record; never waits for the backend.  Returns 0, or -1 when
 * the record is dropped (queue full, out of memory, stopping, or a
 * required field missing), counted in evbus_audit_dropped_total.
 * a may be NULL (no audit log): nothing happens, -1.
 */
int audit_write(audit_t *a, const audit_record_t *r);

/*
 * Wait up to timeout_ms until every record queued before the call has been
 * written (or given up).  0, or -1 on timeout.  For tests and for callers
 * that want "read your own write" before audit_list().
 */
int audit_sync(audit_t *a, int timeout_ms);

/*
 * Records newest first (by id), filtered before paging: tenant (NULL = all;
 * "*" = only records of every-tenant tokens; a tenant name = only that
 * tenant's records — never the "*" ones), action (exact, NULL = any),
 * since_ms <= ts < until_ms (0 = no bound), id < cursor (NULL or "" = the
 * first page).  At most limit (1..AUDIT_LIST_MAX) items go to *out_items,
 * a new JSON array the caller owns (decref).  next_cursor (cursor_len
 * bytes) gets the last item's id as decimal text when more records match,
 * else "".  The cursor is opaque to callers: the HTTP layer binds it to
 * the caller's tenant before handing it out.
 *
 * Cost: PostgreSQL answers from the (tenant, id) index or the primary key;
 * the JSONL backend reads and parses the whole file on every call (about
 * 2-5 µs per record: a file of 100,000 records costs a few hundred ms), so
 * rotate it when it grows (rename it: the next write starts a new file).
 * Records still queued are not listed (audit_sync first when it matters).
 * 0, -1 or AUDIT_EINVAL ("limit: ...", "cursor: ...", "until: ...").
 */
int audit_list(audit_t *a, const char *tenant, const char *action, int64_t since_ms,
               int64_t until_ms, size_t limit, const char *cursor, json_t **out_items,
               char *next_cursor, size_t cursor_len, char *err, size_t errlen);

/* "postgres" or the JSONL file's path, for /health and the start log line.
 * Valid until audit_stop(). */
const char *audit_where(const audit_t *a);

/*
 * Write what is queued for up to AUDIT_STOP_TIMEOUT_MS (plus one in-flight
 * round trip, bounded by a 2 s connect timeout and a 5 s statement
 * timeout), drop and count the rest, stop the thread and free a.  NULL is
 * fine.
 */
void audit_stop(audit_t *a);

#endif
