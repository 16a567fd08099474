/*
 * store_internal — helpers shared by the store's .c files; not part of the
 * contract (store.h is).  Names use the store__ prefix.
 */
#ifndef EVBUS_STORE_INTERNAL_H
#define EVBUS_STORE_INTERNAL_H

#include "store/store.h"
#include "util/clock.h"

#include <stdarg.h>

/* snprintf into err (when err is not NULL). */
void store__err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* "where: <libpq message without trailing newline>" into err; uses the
 * result's message when res is not NULL, else the connection's. */
void store__pg_err(char *err, size_t errlen, const char *where, PGconn *c, const PGresult *res);

/* Run one statement (text params); its first value, if any, into value
 * (may be NULL).  0, or -1 with "where: ..." in err. */
int store__exec1(PGconn *c, const char *where, const char *sql, int nparams,
                 const char *const *params, char *value, size_t vlen, char *err, size_t errlen);

/*
 * Run a query whose result is at most one row with one column of JSON text
 * and parse it.  Returns 0 with *out = the value (NULL for zero rows or SQL
 * NULL), or -1 with err prefixed by where.
 */
int store__query_json(PGconn *c, const char *where, const char *sql, int nparams,
                      const char *const *params, json_t **out, char *err, size_t errlen);

/* Run a command (no result rows needed); 0 or -1 with err.  When affected
 * is not NULL it receives PQcmdTuples as a number. */
int store__exec(PGconn *c, const char *where, const char *sql, int nparams,
                const char *const *params, long *affected, char *err, size_t errlen);

/* Makes libpq usable: 0, or -1 with the reason in err.  Linked programs
 * get pq_linked.c (always 0); evbusctl gets pq_lazy.c, which loads libpq
 * here on first use. */
int store__pq_load(char *err, size_t errlen);

/* The time of a stream id "<ms>-<seq>" in Unix epoch ms, or -1 when sid is
 * NULL or not 1-15 digits, '-', 1-20 digits: the rule of
 * evbus_stream_time() in migration 0006, which must stay the same. */
int64_t store__stream_time_ms(const char *sid);

/* A stream id "<ms>-<seq>" whose parts fit bigint into *ms, *seq: 0, or -1
 * for anything else. */
int store__stream_id_parse(const char *sid, int64_t *ms, int64_t *seq);

/* The archive as replay reads it (store_archive.c).  A range of entry ids
 * [lo, hi): hi_ms = INT64_MAX for no upper bound. */
typedef struct store__archive_range {
    int64_t lo_ms, lo_seq, hi_ms, hi_seq;
} store__archive_range_t;

/* Whether events_archive exists (migration 0008).  0/-1. */
int store__archive_present(PGconn *c, bool *present, char *err, size_t errlen);
/* The archive's first entry of stream; *found false when it has none. */
int store__archive_first(PGconn *c, const char *stream, int64_t *ms, int64_t *seq, bool *found,
                         char *err, size_t errlen);
/* Archived entries of stream in the range, or -1. */
int64_t store__archive_count(PGconn *c, const char *stream, const store__archive_range_t *rg,
                             char *err, size_t errlen);
/* Up to limit archived entries of stream in the range, in id order, with
 * binary results: ms (int8), seq (int8), event (bytea, may be NULL) and
 * whether the entry has a `retry` field (bool).  NULL with err. */
PGresult *store__archive_read(PGconn *c, const char *stream, const store__archive_range_t *rg,
                              int limit, char *err, size_t errlen);

/* Monotonic and wall clocks in ms (the host's, util/clock.h), and a sleep. */
#define store__mono_ms clock_mono_ms
#define store__wall_ms clock_wall_ms
void store__sleep_ms(int64_t ms);

#endif
