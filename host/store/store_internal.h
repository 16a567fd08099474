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

/* Monotonic and wall clocks in ms (the host's, util/clock.h), and a sleep. */
#define store__mono_ms clock_mono_ms
#define store__wall_ms clock_wall_ms
void store__sleep_ms(int64_t ms);

#endif
