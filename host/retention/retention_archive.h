/*
 * retention_archive — the archiver: with retention.archive: postgres it
 * copies the stream's entries into PostgreSQL (events_archive, migration
 * 0008) before the trimmer may remove them, so replay can go further back
 * than Redis keeps.
 *
 * The watermark.  The policy hash's field `archived` (<stream>:retention)
 * is the id of the last entry archived: every entry of the stream up to it
 * is committed in PostgreSQL.  The archiver records it only after the
 * COPY's commit, and only ever raises it (retention_archive_mark), except
 * when it finds PostgreSQL holding less than the watermark says (a
 * restored or truncated archive): then it lowers it to what is there and
 * archives again from there.  The trim script and the publish guard
 * (client/retention_lua.h) never cut past it, in the same atomic script
 * that computes the floor.  The trimmer also never cuts past the watermark
 * its own archiver has seen in PostgreSQL (retention_archive_confirmed: what
 * it committed, or, after it connected, what it found there), so a
 * watermark that PostgreSQL lost behind the archiver's back is not trusted
 * before the archiver has checked it.  So an entry leaves Redis only once
 * it is in PostgreSQL; PostgreSQL down stops trimming, never the other way
 * round.
 *
 * What is archived: once the policy has any limit (max_age, max_entries or
 * max_bytes), every entry below the floor, i.e. that every protected group
 * is done with, within about a round of it being acknowledged.  Archiving
 * all of it rather than only the cut the policy wants now costs the same
 * in the end (every entry is trimmed some day) and leaves the publish
 * guard, which trims at a cap between the trimmer's rounds, the room it
 * would have without the archive.
 *
 * The thread.  The archiver has its own thread and its own Redis and
 * PostgreSQL connections, so a slow or unreachable PostgreSQL never holds
 * up the maintenance thread (retries, leases, reclaims): only trimming
 * waits.  One archiver serves every partition of a stream (partitions: P,
 * docs/scale-out.md): it holds a slot per partition stream, each with its
 * own offer, watermark (in that partition's policy hash) and health, and
 * its rows carry the partition stream's name ({S:p}) in events_archive's
 * `stream` column, so replay reads one partition's history as it reads
 * one stream's.  One thread and one PostgreSQL session whatever P is:
 * PostgreSQL sees one session per host, not one per partition.  It
 * archives a slot only while this host holds that partition's trimmer
 * lease.  Each step is one XRANGE of at most RETENTION_ARCHIVE_CHUNK
 * entries of one partition after its watermark, one binary COPY
 * transaction, then the new watermark; the thread takes the partitions in
 * turn, a chunk each, without pausing while any is behind, and looks at a
 * caught-up partition again at its next offer or retention.interval.  A
 * failure (PostgreSQL or Redis) backs the whole archiver off and puts
 * every partition it was archiving in error: their trimming waits.  While
 * a consumer group is catching up (its lag is above
 * RETENTION_ARCHIVE_BUSY_LAG) and no cap is near, it takes one chunk per
 * interval: a backlog drains at full speed and is archived right after,
 * instead of the two sharing the CPUs, Redis and PostgreSQL; near a cap
 * (the trimmer says `urgent`) it runs flat out, as room depends on it.
 *
 * Redis.  Its connections are a client/rconn.h: one server, or on a Redis
 * Cluster one per master it needs, each slot's commands going to the
 * master of its stream's slot (a partition's stream and policy hash share
 * its hash tag, so each script stays in one slot).  A redirect (MOVED,
 * ASK: a reshard or a failover moved the slot; TRYAGAIN, CLUSTERDOWN) or
 * an I/O error fails the step like any Redis failure: the connections are
 * closed, the slot map is read again and the step is retried after the
 * backoff.  Nothing is lost meanwhile: only trimming waits.
 *
 * It also runs the archive's partition upkeep (store_archive_upkeep) at
 * start, hourly and when its settings change, whatever the mode: archived
 * days keep expiring after the archive is switched off.
 *
 * Thread rules: retention_archive_offer/configure from the thread that
 * owns the trimmers; retention_archive_health, _level and _confirmed from
 * any thread;
 * start/stop from one control thread.  The step functions are for a
 * caller that owns both connections (the thread, tests).
 */
#ifndef EVBUS_RETENTION_ARCHIVE_H
#define EVBUS_RETENTION_ARCHIVE_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Entries per step: one XRANGE, one COPY (about 2.5 MB of typical events). */
enum { RETENTION_ARCHIVE_CHUNK = 5000 };
/* A consumer group this far behind (XINFO GROUPS lag) is draining a
 * backlog: the archiver paces itself meanwhile. */
enum { RETENTION_ARCHIVE_BUSY_LAG = 2 * RETENTION_ARCHIVE_CHUNK };

typedef struct retention_archive retention_archive_t;

typedef struct retention_archive_opts {
    const char *postgres_url;
    const char *redis_url;
    /* a Redis Cluster's seeds (core_redis_cluster), which win when not
     * NULL: each slot's commands go to the master of its stream's slot */
    const char *redis_cluster;
    /* the streams it archives: the stream, or its partitions' streams in
     * partition order (slot p is streams[p]); n_streams >= 1 */
    const char *const *streams;
    unsigned n_streams;
    uint32_t redis_connect_ms, redis_command_ms;
    uint32_t partitions_ahead; /* postgres.metadata.partitions_ahead */
} retention_archive_opts_t;

/* What a trimmer's round hands over for its slot (retention_tick). */
typedef struct retention_archive_offer {
    bool on;                   /* retention.archive: postgres */
    bool leased;               /* this host holds the trimmer's lease */
    const char *upto;          /* archive every entry below this id; "" = nothing */
    bool urgent;               /* a cap is (nearly) reached: archive at full pace */
    uint64_t interval_ms;      /* retention.interval */
    uint64_t retention_ms;     /* retention.archive_retention */
} retention_archive_offer_t;

/* Start the thread (options and stream names copied).  NULL, logged, on
 * failure. */
retention_archive_t *retention_archive_start(const retention_archive_opts_t *o);

/* Stop the thread (it finishes the step it is in) and free a.  NULL is
 * fine. */
void retention_archive_stop(retention_archive_t *a);

/* Slot's trimmer's latest view; wakes the thread when there is new work. */
void retention_archive_offer(retention_archive_t *a, unsigned slot,
                             const retention_archive_offer_t *o);

/* postgres.metadata.partitions_ahead changed (an upkeep round follows). */
void retention_archive_configure(retention_archive_t *a, uint32_t partitions_ahead);

/* Slot's {mode, state, connected, watermark, upto, lag_entries, lag_ms,
 * archived_total, errors_total, last_error, error_for_ms} for /health.
 * Caller decrefs. */
json_t *retention_archive_health(retention_archive_t *a, unsigned slot);

/* The watermark of slot's stream this archiver has seen committed in
 * PostgreSQL into out ("" = none yet, or a is NULL): the trimmer's cut
 * never passes it. */
void retention_archive_confirmed(retention_archive_t *a, unsigned slot, char *out, size_t len);

/* 0 ok; 2 when the archive is on and failing for slot (trimming waits). */
int retention_archive_level(retention_archive_t *a, unsigned slot);

/* ------------------------------------------------------------- steps */

typedef struct retention_archive_step {
    size_t read;           /* entries read from the stream */
    long inserted;         /* of which new to the archive */
    char first[48];        /* id of the first entry read ("" when none) */
    char last[48];         /* id of the last entry read ("" when none) */
    bool caught_up;        /* fewer than asked for: nothing more below upto */
} retention_archive_step_t;

/*
 * Archive one chunk: up to max entries of stream after `after` (exclusive;
 * "" = from the start) and below `upto` (exclusive), read with XRANGE on c
 * and written with store_archive_write() on pg (committed on return 0).
 * Does not record the watermark: retention_archive_mark() does, after.
 * 0, or -1 with "redis: ..." or the store's message in err.
 */
int retention_archive_chunk(redisContext *c, PGconn *pg, const char *stream, const char *after,
                            const char *upto, size_t max, retention_archive_step_t *out,
                            char *err, size_t errlen);

/* Raise stream's watermark to id (never lowers it).  0, or -1 when Redis
 * failed. */
int retention_archive_mark(redisContext *c, const char *stream, const char *id);

/* stream's watermark into out ("" when none).  0 or -1. */
int retention_archive_watermark(redisContext *c, const char *stream, char *out, size_t len);

#endif
