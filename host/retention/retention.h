/*
 * retention — the stream's trimmer: bounded retention that never drops an
 * entry a consumer group still owes.
 *
 * Each round (retention.interval) the trimmer, holding a short lease in
 * Redis (<stream>:retention:lease, SET NX PX, so one host trims at a time
 * and two racing are still safe), runs one Lua script that computes the
 * floor (see client/retention_lua.h: the smallest id a protected group has
 * not read or not acknowledged) and trims with XTRIM MINID to the largest
 * cut the policy asks for (age: entries older than max_age; caps: oldest
 * first down to max_entries, and to the entry count that fits max_bytes at
 * the sampled bytes per entry; at a cap it trims down to 90 % of it, so a
 * stream whose consumers keep up never meets it) but never past the floor.
 * When a cap is
 * reached and the floor stops the trim, the policy is *blocked*: the group
 * holding the floor is named in health, and the stream is flagged full
 * for max_bytes (<stream>:retention:full, expiring unless renewed) — the
 * publish guard refuses at max_entries by itself.
 *
 * The policy (caps, protected groups, archive mode) is published in the
 * hash <stream>:retention, which publishers (libevbus) read.
 *
 * Partitions (partitions: P > 1, docs/scale-out.md).  Each partition
 * stream {S:p} has its own trimmer: its own lease, floor, policy hash
 * ({S:p}:retention, read by that partition's publish guard) and full flag.
 * The caps are the logical stream's: each partition keeps its share,
 * max_entries / P and max_bytes / P rounded up (as dlq.capacity is
 * shared), and publishes that share as its policy, so a partition is full
 * at its share even while others have room; nothing is moved between
 * partitions (a key's events stay in its partition, in order).  max_age
 * applies to each partition as it is.  The trimmers of one stream form a
 * family led by partition 0's: one archiver serves them all (a slot per
 * partition, see retention_archive.h) and the lead's round sets the
 * stream gauges (evbus_stream_*) to the sums over the partitions.
 *
 * With retention.archive: postgres no trim passes the archive's watermark
 * (the hash's field `archived`, see retention_archive.h): the cut stops
 * there (*waiting*, in health) until the archiver, which the trimmer's
 * round tells what to archive, has stored the entries in PostgreSQL.
 *
 * Thread rules: a retention_t belongs to one thread (the engine's
 * maintenance thread; a family's trimmers all to the same one);
 * retention_health() and retention_level() may be called from any thread;
 * construction, the archive's start and stop from the control thread, with
 * the maintenance thread not running retention_tick().
 */
#ifndef EVBUS_RETENTION_H
#define EVBUS_RETENTION_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdint.h>

#include "retention/retention_archive.h"
#include "retention/retention_settings.h"

typedef struct retention retention_t;

/*
 * The trimmer of `stream`, trimming as `owner` (the consumer name).  With
 * one partition: partitions 1, lead NULL.  With P > 1: `stream` is
 * partition p's stream, `partitions` is P, and `lead` is partition 0's
 * trimmer (NULL for partition 0 itself, which leads); the others join the
 * lead in partition order.  The lead is freed first (it stops the
 * family's archiver), and a member is never freed before its lead.  NULL
 * on OOM.
 */
retention_t *retention_new(const char *stream, const char *owner, unsigned partitions,
                           retention_t *lead);
void retention_free(retention_t *r);

/* Start the archiver of r's family, r being a lead: one thread for every
 * partition's trimmer (the streams in o are taken from the trimmers; it
 * idles while retention.archive is off).  0, or -1 (logged): then an
 * archive that is on stops all trimming and health says so. */
int retention_start_archive(retention_t *r, const retention_archive_opts_t *o);
/* Stop and free the family's archiver (r a lead; no-op without one or on
 * a member). */
void retention_stop_archive(retention_t *r);
/* postgres.metadata.partitions_ahead for the archive's partitions. */
void retention_configure_archive(retention_t *r, uint32_t partitions_ahead);

/*
 * One round, if retention.interval has passed since the last (now_ms is
 * the monotonic clock).  Returns 0, or -1 when a Redis command failed (the
 * connection is then suspect: the caller reconnects).
 */
int retention_tick(retention_t *r, redisContext *c, const retention_settings_t *s,
                   int64_t now_ms);

/* The trimmer's view for /health: policy (this partition's caps, and with
 * partitions the logical stream's in policy.stream), usage, floor, blocked
 * group, last round, the archive.  Caller decrefs.  Any thread. */
json_t *retention_health(retention_t *r);

/* 0 ok, 1 warning (>= 80 % of a cap), 2 error (>= 95 % or blocked at a
 * cap, or the archive is on and failing). */
int retention_level(retention_t *r);

#endif
