/*
 * partition — which partition of a stream an event belongs to, the key
 * names of a partition, and the partition count recorded in Redis
 * (docs/scale-out.md, "Partitions", "Key layout" and "The recorded
 * partition count").  libevbus publishes with these rules and evbusd
 * consumes with them; not installed (evbus_client.h is the contract that
 * is).
 *
 * The partition hash is part of the wire contract: publishers in any
 * language must reproduce it, so it is fixed and documented with test
 * vectors (docs/scale-out.md): 64-bit FNV-1a of the key's bytes, then
 * Lamping and Veach's jump consistent hash of that value into P buckets.
 * Jump hashing moves only about 1/P of the keys when P grows by one, which
 * keeps a future resize cheap.
 *
 * Threads: every function here may run on any thread; all but
 * evbus_partitions_check are pure, and that one uses the caller's
 * connection (one thread's, as hiredis wants).
 */
#ifndef EVBUS_CLIENT_PARTITION_H
#define EVBUS_CLIENT_PARTITION_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The bounds of the `partitions` setting. */
#define EVBUS_PARTITIONS_MAX 1024

/* 64-bit FNV-1a of buf[0..len) (offset basis 0xcbf29ce484222325, prime
 * 0x100000001b3). */
uint64_t evbus_partition_fnv1a64(const void *buf, size_t len);

/* Jump consistent hash of h into `buckets` (>= 1) buckets: 0..buckets-1. */
unsigned evbus_partition_jump(uint64_t h, unsigned buckets);

/* The partition of key[0..len) among `partitions` (1..EVBUS_PARTITIONS_MAX;
 * 0 when partitions <= 1). */
unsigned evbus_partition_of(const char *key, size_t len, unsigned partitions);

/*
 * The key an event is partitioned by: its CloudEvents `partitionkey`
 * extension attribute, else `tenantid`, else `id` — the first that is a
 * non-empty string.  Returns it (borrowed from ev) with its length in
 * *len and, when attr is not NULL, the attribute's name in *attr; NULL
 * when ev has none of them.
 */
const char *evbus_partition_key(const json_t *ev, size_t *len, const char **attr);

/* The partition of event ev among `partitions`, or -1 when it has no key
 * (evbus_partition_key). */
int evbus_event_partition(const json_t *ev, unsigned partitions);

/*
 * The name of a partition's key: the stream itself (suffix "") or one of
 * its companions (":retry", ":dlq", ":lease", ...).  Untagged — one
 * partition on one server — it is today's name, "<stream><suffix>";
 * tagged — more than one partition, or any cluster — it is
 * "{<stream>:<p>}<suffix>", so that every key of partition p shares one
 * slot and different partitions spread over the masters.  Writes at most
 * len bytes (NUL included) and returns the length snprintf would.
 */
int evbus_partition_key_name(char *out, size_t len, const char *stream, unsigned p, bool tagged,
                             const char *suffix);

/*
 * The partition count recorded for a stream: the string key
 * "<stream>:partitions" (no hash tag: read when a process starts or a
 * publisher connects, never inside a script).  P = 1 writes no record, so
 * a deployment that never partitioned keeps exactly the keys it had.
 *
 * evbus_partitions_check compares `partitions` with what Redis says:
 *   - a record R: the same when R == partitions;
 *   - no record and partitions == 1: the same (nothing written);
 *   - no record and partitions > 1: when the unpartitioned stream
 *     "<stream>" exists, it holds events written with P = 1, so Redis
 *     says 1; otherwise the stream is new and, when `record` is true,
 *     partitions is recorded (SET NX: of two racing writers the first
 *     wins and the other compares with it).
 * Returns 0 when they agree, 1 when they differ (*recorded says what
 * Redis says, and err explains how it knows), -1 on a Redis error (err).
 */
#define EVBUS_PARTITIONS_RECORD_SUFFIX ":partitions"
int evbus_partitions_check(redisContext *c, const char *stream, unsigned partitions, bool record,
                           unsigned *recorded, char *err, size_t errlen);
/* The same with the record's key read on c and the stream's on sc: on a
 * Redis Cluster the two keys live in different slots. */
int evbus_partitions_check_on(redisContext *c, redisContext *sc, const char *stream,
                              unsigned partitions, bool record, unsigned *recorded, char *err,
                              size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* EVBUS_CLIENT_PARTITION_H */
