/*
 * keyorder — per-key ordering of a subscription with `ordering: per_key`
 * (docs/plugins.md, "Per-key ordering"): the events of one key are handled
 * by that handler one at a time in stream order; a key whose event is
 * waiting for a retry holds that handler's later events of the key back.
 *
 * THE KEY of an event is its CloudEvents extension attribute
 * `partitionkey`, else `tenantid`, else its `id`: the first of them that is
 * a non-empty string, as client/partition.h chooses the partition (so a
 * key never spans partitions).  keyorder_key_of() reads it from the raw
 * JSON text without parsing the event (it runs on the reader thread for
 * every entry), decoding escapes only when the string has any.  Keys longer
 * than KEYORDER_KEY_MAX bytes are compared on their first KEYORDER_KEY_MAX
 * bytes (events that share that prefix are ordered together: less
 * concurrency, never less order).  Reader and dispatch both use this one
 * function, so they cannot disagree about a key.
 *
 * TWO MECHANISMS.
 *  1. Lanes (in memory, no state): while the serving generation has a
 *     per_key subscription, the engine's reader sends every entry to lane
 *     keyorder_lane(key) and each lane is dispatched by one worker thread
 *     in stream order.  Events of one key thus never run concurrently;
 *     different keys spread over the workers.
 *  2. Holds (durable, in Redis): when a per_key handler's call on an event
 *     of key K is scheduled again (a retry, or a deferral while its
 *     instance is paused), the event becomes K's *owner* for that handler
 *     (its schedule entry carries "ko":1) and the key is *held*: the hash
 *     field "<handler>\n<K>" of <stream>:keyhold exists, its value the
 *     number of followers.  A later event of K for that handler that is not
 *     the owner is not called: it is appended (as a schedule member, same
 *     attempt, "ko":1) to the list <stream>:keyq:<handler>:<K> and its
 *     entry acknowledged (outcome `held`).  When the owner completes or is
 *     dead-lettered for that handler, keyorder_release() queues a script
 *     that moves the first follower straight back into the stream (it is
 *     the next owner) or, with none left, deletes the hold.  Every one of
 *     these writes goes in the MULTI/EXEC that acknowledges the entry, so a
 *     crash never leaves a follower acknowledged but not queued, or a hold
 *     without its owner.
 *
 * THIS MODULE keeps each lane's table of held keys (the cache of the hold
 * hash that dispatch consults once per per_key handler call, with no
 * Redis round trip), formats the Redis writes of each transition and hands
 * them to the caller's emit function (dispatch queues them with the
 * chunk's owed writes), and loads the holds from Redis at start.  It
 * decides nothing about results: dispatch calls the transition that the
 * verdict implies.
 *
 * MEMORY.  A table holds at most max_keys held keys over all lanes (each
 * lane max_keys / lanes, at least 1; evbusd passes the setting
 * ordering.max_keys), each one node of about 50 bytes plus its handler
 * name and key (at most KEYORDER_KEY_MAX bytes), plus 8 KiB of buckets
 * per lane.  AT THE CAP a new hold is refused
 * (keyorder_hold() returns -1): dispatch then schedules the retry without
 * holding the key, so that key's later events are not held back until
 * the table has room again; evbus_keyorder_table_full_total counts each
 * refusal and dispatch logs it.  The same applies to holds found in Redis
 * at start beyond the cap.  Keys that are not held cost nothing.
 *
 * THREADS.  Lane i's table is read and written only by the thread that
 * dispatches lane i: worker i, or the reader while it recovers its own
 * pending entries before it queues any chunk.  keyorder_key_of,
 * keyorder_lane and keyorder_held_total may be called from any thread.
 * new and free on the engine's control thread; load on the reader, at
 * start or at a partition's takeover, before any entry of that partition
 * is dispatched (none of its lanes is busy).
 *
 * SCOPE: the holds are per stream (per partition), and a lane is per host,
 * so per-key order across several hosts of one group rests on partition
 * ownership (core/ownership.h, partitions > 1): keyorder_load runs again
 * when a partition is taken over, while none of its chunks is in flight
 * here.  Replays ignore ordering.
 */
#ifndef EVBUS_CORE_KEYORDER_H
#define EVBUS_CORE_KEYORDER_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYORDER_KEY_MAX 256

typedef struct keyorder_key {
    uint64_t hash; /* FNV-1a 64 of text, as client/partition.h hashes a key */
    size_t len;
    char text[KEYORDER_KEY_MAX];
} keyorder_key_t;

/* The ordering key of the event whose raw JSON is raw[0..len).  0 when
 * found, -1 when the text is not a JSON object with any of the three
 * attributes (then key->len is 0). */
int keyorder_key_of(const char *raw, size_t len, keyorder_key_t *key);

/* Make key the key text[0..len) (cut at KEYORDER_KEY_MAX). */
void keyorder_key_set(keyorder_key_t *key, const char *text, size_t len);

/* The lane of `key` among `lanes` (its hash modulo lanes; stable). */
unsigned keyorder_lane(const keyorder_key_t *key, unsigned lanes);

typedef struct keyorder keyorder_t;

/* A table of `lanes` lanes (>= 1) holding at most max_keys held keys
 * (>= lanes) for `stream` (copied).  NULL when memory runs out. */
keyorder_t *keyorder_new(const char *stream, unsigned lanes, size_t max_keys);
void keyorder_free(keyorder_t *ko);

unsigned keyorder_lanes(const keyorder_t *ko);

/* Read <stream>:keyhold into the lanes' tables (replacing what they held;
 * holds beyond the cap are counted in evbus_keyorder_table_full_total and
 * left out).  0, or -1 with err (Redis failed; the tables are then empty). */
int keyorder_load(keyorder_t *ko, redisContext *c, char *err, size_t errlen);

/* Whether `key` is held for `handler` (lane of key's thread only). */
bool keyorder_held(const keyorder_t *ko, const char *handler, const keyorder_key_t *key);

/* Held keys in every lane (any thread; a relaxed count). */
size_t keyorder_held_total(const keyorder_t *ko);

/* Where a transition's Redis writes go: one command per call, arguments
 * borrowed for the call only. */
typedef void (*keyorder_emit_fn)(void *arg, int argc, const char **argv, const size_t *lens);

/* The owner of `key` for `handler` was scheduled again: hold the key
 * unless it is held.  0 held (now or already), -1 at the cap: not held. */
int keyorder_hold(keyorder_t *ko, const char *handler, const keyorder_key_t *key,
                  keyorder_emit_fn emit, void *arg);

/* A later event of a held key: append its schedule member
 * ("<meta json>\n<raw event>", with "ko":1) behind the key's owner. */
void keyorder_enqueue(keyorder_t *ko, const char *handler, const keyorder_key_t *key,
                      const char *member, size_t member_len, keyorder_emit_fn emit, void *arg);

/* The owner of `key` for `handler` is done (completed, dead-lettered or
 * dropped): hand the key to its first follower, or free it. */
void keyorder_release(keyorder_t *ko, const char *handler, const keyorder_key_t *key,
                      keyorder_emit_fn emit, void *arg);

#endif
