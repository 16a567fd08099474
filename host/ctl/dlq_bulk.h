/*
 * dlq_bulk — evbusctl's work on many dead letters at once: the summary,
 * and retry / delete / purge of every entry a filter matches, paced at a
 * rate, with a progress bar on a terminal, the archive before a purge and
 * the PURGED status in PostgreSQL after a removal.  cmd_dlq.c parses the
 * arguments and prints; this unit does the work and reports counts.
 *
 * A run first collects the matching ids, then works through that list
 * oldest first: dead letters written meanwhile (a retried event failing
 * again) are never picked up by the same run, and the count a dry run
 * prints is the list the real run starts from.
 *
 * Threads: evbusctl's one thread; nothing here is shared.
 */
#ifndef EVBUS_CTL_DLQ_BULK_H
#define EVBUS_CTL_DLQ_BULK_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "client/evbus_client.h"

typedef enum { DLQ_BULK_RETRY, DLQ_BULK_DELETE, DLQ_BULK_PURGE } dlq_bulk_action_t;

/* "retry", "delete", "purge". */
const char *dlq_bulk_action_name(dlq_bulk_action_t a);

/* The ids a run works through, oldest first.  Owned; dlq_ids_free. */
typedef struct dlq_ids {
    char (*id)[EVBUS_STREAM_ID_LEN];
    size_t n, cap;
    size_t matching; /* how many matched before the limit cut the list */
} dlq_ids_t;

/*
 * The ids of the entries matching f (every entry when f is NULL), oldest
 * first, at most `limit` of them (the oldest; 0 = all).  0, or the
 * library's code with its message in err.
 */
int dlq_ids_collect(evbus_client_t *c, const char *dlq, const evbus_dlq_filter_t *f,
                    size_t limit, dlq_ids_t *out, char *err, size_t errlen);
void dlq_ids_free(dlq_ids_t *ids);

typedef struct dlq_bulk_opts {
    dlq_bulk_action_t action;
    const char *tenant;       /* the filter's tenant: every operation is scoped to it */
    uint32_t rate;            /* entries per second; 0 = unlimited */
    const char *archive_path; /* purge: where entries go before they are removed */
    PGconn *pg;               /* delete/purge: marks events PURGED; NULL = no metadata */
    /* Told about each entry that failed (the run goes on); may be NULL. */
    void (*on_failure)(void *ud, const char *dlq_id, const char *why);
    void *ud;
} dlq_bulk_opts_t;

typedef struct dlq_bulk_result {
    size_t done;    /* retried / deleted / purged */
    size_t failed;  /* tried and failed; they are still in the DLQ */
    size_t gone;    /* already removed by someone else */
    size_t skipped; /* not tried: the run stopped (see stop) */
    long marked;    /* events marked PURGED in PostgreSQL; -1 without it */
    char stop[320]; /* why the run stopped before the end; "" when it did not */
} dlq_bulk_result_t;

/*
 * Works through ids with the action.  Per-entry failures are counted and
 * reported to on_failure; the run stops early (res->stop) when going on
 * cannot help: Redis unreachable, the target stream full, the archive not
 * writable, PostgreSQL failing.  A removal is archived (purge) before it
 * happens and marked in PostgreSQL right after each chunk.
 */
void dlq_bulk_run(evbus_client_t *c, const char *dlq, const dlq_bulk_opts_t *o,
                  const dlq_ids_t *ids, dlq_bulk_result_t *res);

/*
 * For delete/purge with PostgreSQL configured: a connection whose schema
 * has the PURGED status (migration 0007).  NULL with err when it cannot be
 * had.  The caller owns it (PQfinish).
 */
PGconn *dlq_metadata_connect(const char *url, char *err, size_t errlen);

/*
 * Counts of the entries matching f in the n dead-letter streams dlqs (one,
 * or a partitioned stream's partitions, counted together), as a new
 * object: total, oldest and newest (dead-letter times, RFC 3339, null when
 * empty), and by_tenant, by_type, by_reason, by_handler (name -> count; an
 * entry with several failing handlers counts for each).  0, or the
 * library's code.
 */
int dlq_summary(evbus_client_t *c, const char *const *dlqs, size_t n, const evbus_dlq_filter_t *f,
                json_t **out, char *err, size_t errlen);

/* ms since the Unix epoch as "2026-11-26T22:06:42.123Z". */
void dlq_time_text(int64_t ms, char out[32]);

#endif
