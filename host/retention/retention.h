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
 * The policy (caps, protected groups) is published in the hash
 * <stream>:retention, which publishers (libevbus) read.
 *
 * Thread rules: a retention_t belongs to one thread (the engine's
 * maintenance thread); retention_health() may be called from any thread.
 */
#ifndef EVBUS_RETENTION_H
#define EVBUS_RETENTION_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdint.h>

#include "retention/retention_settings.h"

typedef struct retention retention_t;

/* For `stream`, trimming as `owner` (the consumer name).  NULL on OOM. */
retention_t *retention_new(const char *stream, const char *owner);
void retention_free(retention_t *r);

/*
 * One round, if retention.interval has passed since the last (now_ms is
 * the monotonic clock).  Returns 0, or -1 when a Redis command failed (the
 * connection is then suspect: the caller reconnects).
 */
int retention_tick(retention_t *r, redisContext *c, const retention_settings_t *s,
                   int64_t now_ms);

/* The trimmer's view for /health: policy, usage, floor, blocked group,
 * last round.  Caller decrefs.  Any thread. */
json_t *retention_health(retention_t *r);

/* 0 ok, 1 warning (>= 80 % of a cap), 2 error (>= 95 % or blocked at a cap). */
int retention_level(retention_t *r);

#endif
