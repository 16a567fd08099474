/*
 * libevbus — publish CloudEvents to an evbus stream and manage its
 * dead-letter queue.  Installed as <evbus/client.h> with libevbus.so and
 * evbus.pc; inside the tree it is "client/evbus_client.h".
 *
 * Threads: an evbus_client_t owns one hiredis context (on a Redis Cluster,
 * evbus_client_new_cluster: one per master) and is NOT thread-safe; use
 * one client per thread.  The id and time helpers
 * (evbus_uuid4, evbus_ulid, evbus_time_now_rfc3339) are thread-safe.
 *
 * Connection: evbus_client_new() only parses the URL.  The connection is
 * opened by the first command and re-opened by the next command after an
 * I/O error, so a client survives a Redis restart.  (A cluster client
 * reads the slot map on its first command, and again after a redirect or
 * an I/O error.)
 *
 * Errors: functions return 0 (or a count) on success and a negative code on
 * failure, with a message in the caller's err buffer (err may be NULL) that
 * is also kept in the client (evbus_client_error()).  Two failure classes
 * stay distinct:
 *   EVBUS_CLIENT_EINVAL (-2)  the caller's input is wrong (bad event, bad
 *                             filter, malformed id); nothing was sent;
 *   EVBUS_CLIENT_EREDIS (-1)  Redis could not be reached or replied with an
 *                             error;
 *   EVBUS_CLIENT_EFULL  (-3)  the stream is full: its retention cap is
 *                             reached and every entry left is still owed to
 *                             a consumer group (nothing was written; see
 *                             "Retention" below);
 *   EVBUS_CLIENT_EIO    (-4)  a local file could not be written (the DLQ
 *                             archive); nothing was removed.
 *
 * Stream entry layout written by the publish functions:
 *   XADD <stream> * event <compact JSON> [extra fields...]
 * (<stream> is the event's partition stream when the client has more than
 * one partition: evbus_client_set_partitions.)
 * Publishers never trim the stream: evbusd's trimmer does, never past an
 * entry a consumer group still owes (docs/operations.md, Retention).
 *
 * Retention: when the stream has a cap (evbusd publishes its policy in the
 * hash <stream>:retention, or with partitions one per partition stream,
 * {<stream>:<p>}:retention, holding that partition's share of the caps;
 * the client reads it each time it connects), or one was set with
 * evbus_client_set_retention(), every XADD runs through a guard script
 * (EVALSHA) on the event's (partition) stream that first trims entries
 * every protected group is done with and refuses the event with
 * EVBUS_CLIENT_EFULL when that cannot make room.  With on_full: block, evbus_publish and evbus_publish_fields
 * wait (up to the policy's block timeout) for room before they report
 * EVBUS_CLIENT_EFULL; the batch and pipeline calls report it per event at
 * once (events refused in the middle of a batch may be followed by
 * accepted ones when room appeared meanwhile).
 */
#ifndef EVBUS_CLIENT_H
#define EVBUS_CLIENT_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    EVBUS_CLIENT_OK = 0,
    EVBUS_CLIENT_EREDIS = -1,
    EVBUS_CLIENT_EINVAL = -2,
    EVBUS_CLIENT_EFULL = -3,
    EVBUS_CLIENT_EIO = -4
};

/* Buffer size that fits any stream id this library writes ("ms-seq"). */
#define EVBUS_STREAM_ID_LEN 32

typedef struct evbus_client evbus_client_t;

typedef enum { EVBUS_ID_UUID4 = 0, EVBUS_ID_ULID = 1 } evbus_id_kind_t;

/*
 * A client for `stream` on the Redis at redis_url:
 *   redis://[[user]:password@]host[:port][/db]   (port 6379, db 0 by default)
 *   unix:///path/to/redis.sock[?db=N]
 * Returns NULL with a message in err when the URL or stream is invalid or
 * memory runs out; does not connect.  Free with evbus_client_free().
 */
evbus_client_t *evbus_client_new(const char *redis_url, const char *stream, char *err,
                                 size_t errlen);
void evbus_client_free(evbus_client_t *c);

/*
 * A client for `stream` on a Redis Cluster: seeds is a comma-separated list
 * of seed nodes, each redis://[[user]:password@]host[:port] (database 0;
 * the first seed with a password gives it to every node), as
 * redis.cluster / EVBUS_REDIS_CLUSTER take them.  Does not connect: the
 * first command reads the slot map.  On a cluster the stream must be
 * partitioned (evbus_client_set_partitions, 2 or more, the count evbusd
 * records): each partition's keys share the hash tag "{<stream>:<p>}", so
 * every command goes to the master serving its partition's slot, and the
 * events of one key keep their publish order.  The publish functions, the
 * batches, the pipelines and the dead-letter functions work as on one
 * server, with these differences:
 *   - a command answered MOVED, ASK, TRYAGAIN or CLUSTERDOWN did not run:
 *     the client reads the slot map again and retries it (bounded: 16
 *     redirects, 5 s of retries); a command whose reply was lost is
 *     reported, never retried (it may have run);
 *   - the retention guard is loaded on every master, and again on a node
 *     that answers NOSCRIPT;
 *   - a batch or a pipeline writes each node's events in order on that
 *     node's connection (one connection per node), so replies of
 *     different nodes are not in publish order on the wire; callbacks and
 *     rc[] still are;
 *   - evbus_client_set_wait_replicas sends one WAIT to every node a call
 *     wrote to;
 *   - evbus_client_redis returns NULL (there is no one connection).
 * NULL with a message in err for bad seeds, an empty stream or no memory.
 */
evbus_client_t *evbus_client_new_cluster(const char *seeds, const char *stream, char *err,
                                         size_t errlen);
/* Whether c was made by evbus_client_new_cluster. */
bool evbus_client_is_cluster(const evbus_client_t *c);
/* Connects when needed (one server: its connection; a cluster: the map
 * read, the partition count compared, the node of the stream's slot) and
 * says whether Redis can be reached: 0, or EVBUS_CLIENT_EREDIS with the
 * reason (err and evbus_client_error). */
int evbus_client_check(evbus_client_t *c, char *err, size_t errlen);

/*
 * Enforce a retention cap from this side instead of reading the policy
 * evbusd publishes: max_entries (0: the policy hash's), whether to wait for
 * room (on_full_block, up to block_ms) or refuse at once.  Call before the
 * first publish.  (evbusctl uses it with the configuration's retention:.)
 * max_entries is the logical stream's, like the setting: with partitions
 * (evbus_client_set_partitions) each partition stream is refused at its
 * share, max_entries / partitions rounded up, as evbusd trims it.
 */
void evbus_client_set_retention(evbus_client_t *c, uint32_t max_entries, int on_full_block,
                                uint64_t block_ms);
/*
 * Publish to a stream split into `partitions` partition streams
 * (docs/scale-out.md, "Partitions"; 1..1024, 1 by default: the stream
 * itself, today's layout).  With more than one, every publish function
 * sends each event to the stream "{<stream>:<p>}" of its partition p: the
 * jump hash of its `partitionkey`, else `tenantid`, else `id` (after
 * completion), so events of one key keep their publish order in one
 * partition.  The count must be the one recorded in Redis
 * (<stream>:partitions; none recorded means 1, or a new stream, which the
 * first publisher with a count above 1 records): the client compares when
 * it connects and, while they differ, every command fails with
 * EVBUS_CLIENT_EREDIS and a message giving both counts — nothing is
 * written to a partition the consumers do not read.  Call before the first
 * command.  0, or EVBUS_CLIENT_EINVAL when out of range.
 */
int evbus_client_set_partitions(evbus_client_t *c, unsigned partitions);
/*
 * Durability knob (redis.wait_replicas, docs/scale-out.md): after each
 * publish call's writes land (one event, or a whole batch, or everything a
 * pipeline wrote when evbus_pipeline_wait returns), send WAIT replicas
 * timeout_ms (0: 1000) on the same connection.  The publish still succeeds
 * when fewer replicas confirm in time: the event is on the master, and
 * Redis replication stays asynchronous (a failover can still lose it);
 * evbus_client_wait_short() counts those WAITs (and *waits, when not NULL,
 * all of them).  replicas 0 turns it off (the default).
 */
void evbus_client_set_wait_replicas(evbus_client_t *c, unsigned replicas, uint32_t timeout_ms);
uint64_t evbus_client_wait_short(const evbus_client_t *c, uint64_t *waits);
/* Kind of id generated for events without one; UUIDv4 by default. */
void evbus_client_set_id_kind(evbus_client_t *c, evbus_id_kind_t k);
/* Source given to events without one; default "/evbus/<hostname>".  The
 * string is copied; NULL or "" restores the default. */
void evbus_client_set_source(evbus_client_t *c, const char *source);
/* Text of the last error on this client ("" when none).  Valid until the
 * next call on the client. */
const char *evbus_client_error(const evbus_client_t *c);
/* The client's stream name (borrowed). */
const char *evbus_client_stream(const evbus_client_t *c);
/* The client's hiredis context, connecting first if needed; NULL when Redis
 * cannot be reached or the client is on a Redis Cluster (see
 * evbus_client_error).  Borrowed: do not free, and do not keep it across
 * calls that may reconnect. */
redisContext *evbus_client_redis(evbus_client_t *c);
/* The connection the commands on `key` go to: evbus_client_redis on one
 * server; on a Redis Cluster the master serving the key's slot (after the
 * partition count was compared).  Every key of one command, MULTI/EXEC or
 * script sent on it must share the key's slot (docs/scale-out.md, "Key
 * layout"); a MOVED or ASK reply means the slot moved: ask again after
 * the next call.  NULL with evbus_client_error.  Borrowed as
 * evbus_client_redis's. */
redisContext *evbus_client_redis_key(evbus_client_t *c, const char *key);

/*
 * A new connection to a redis://[[user]:password@]host[:port][/db] (IPv6 in
 * brackets, %XX escapes in the password) or unix:///path[?db=N] URL, with
 * AUTH and SELECT done, the connect bounded by connect_timeout_ms and every
 * later command by command_timeout_ms (<= 0: 2000 / 5000).  The caller owns
 * it (redisFree).  NULL with a message in err.  Any thread.
 */
redisContext *evbus_redis_connect(const char *url, int connect_timeout_ms,
                                  int command_timeout_ms, char *err, size_t errlen);

/*
 * Completes the CloudEvent object `ev` in place, then checks it.
 * Filled when absent: specversion "1.0"; id (UUIDv4 or ULID per the
 * client); time (now, "2026-11-26T22:06:42.123Z"); source (the client's);
 * correlationid (a new UUIDv4).  Checked: ev is an object; specversion is
 * "1.0"; type is lowercase dot-separated segments of [a-z0-9_-]+; tenantid,
 * id, source and correlationid are non-empty strings; time is an RFC 3339
 * date-time.  All checks run before anything is filled, so on failure ev
 * is unchanged.  Returns 0, or EVBUS_CLIENT_EINVAL with a message that
 * starts with the attribute's name ("type: missing").  c may be NULL
 * (UUIDv4 ids and the default source then).
 */
int evbus_event_complete(evbus_client_t *c, json_t *ev, char *err, size_t errlen);

/*
 * Completes and publishes one event.  On success writes the new stream id
 * into out_id (out_len >= EVBUS_STREAM_ID_LEN recommended) and returns 0.
 * Returns EVBUS_CLIENT_EINVAL for a bad event (nothing sent) or
 * EVBUS_CLIENT_EREDIS when Redis failed.  ev is completed even on a Redis
 * failure, so a retry publishes the same id.
 */
int evbus_publish(evbus_client_t *c, json_t *ev, char *out_id, size_t out_len, char *err,
                  size_t errlen);

/*
 * Completes and publishes n events with pipelining on one connection:
 * commands are written while replies are read, with at most
 * EVBUS_PIPELINE_MAX_INFLIGHT commands awaiting a reply, so memory stays
 * bounded whatever n is; events land in the stream in index order.  For
 * each i, rc[i] is 0 with the stream id in out_ids[i], or
 * EVBUS_CLIENT_EINVAL / EVBUS_CLIENT_EREDIS (reply error, e.g. WRONGTYPE)
 * with out_ids[i] = "".  Returns the number published, or -1 when the
 * connection failed (then items not yet confirmed have rc
 * EVBUS_CLIENT_EREDIS; some of them may still have been written).  err
 * holds the first failure's message.  The event text is what
 * json_dumps(ev, JSON_COMPACT) gives.
 */
#define EVBUS_PIPELINE_WINDOW 1000
/* Most commands a pipeline (and a batch) leaves unanswered before it
 * waits for replies. */
#define EVBUS_PIPELINE_MAX_INFLIGHT (16 * EVBUS_PIPELINE_WINDOW)
ssize_t evbus_publish_batch(evbus_client_t *c, json_t *const *evs, size_t n,
                            char (*out_ids)[EVBUS_STREAM_ID_LEN], int *rc, char *err,
                            size_t errlen);

/*
 * Events that arrive as JSON text (NDJSON lines, HTTP bodies): checked
 * and completed without building a json_t when possible.
 *
 * evbus_event_text_complete() applies exactly the rules of
 * evbus_event_complete() to the object in text[0..len) (same messages;
 * text that jansson does not accept fails with "invalid JSON: <jansson's
 * message> (column N)").  The published bytes are the caller's bytes
 * without surrounding whitespace, with the missing attributes inserted
 * right after the opening '{'; text that needs jansson to decide (escapes
 * in attributes, duplicate attributes, huge numbers, deep nesting) is
 * re-serialized instead.  The tail of the event may point into `text`:
 * it must stay valid and unchanged until the event is published or
 * cleared.  Returns 0 or EVBUS_CLIENT_EINVAL (*ev is then zeroed).  *ev
 * owns memory after success: release it with evbus_text_event_clear().
 * Thread rules as evbus_event_complete (c may be NULL).
 */
typedef struct evbus_text_event {
    /* Read-only: the event as published is head_len bytes at head followed
     * by tail_len bytes at tail. */
    const char *head, *tail;
    size_t head_len, tail_len;
    /* Read-only: the completed attributes, NUL-terminated. */
    const char *id, *type, *tenantid, *source, *correlationid, *time;
    /* Private. */
    char *mem;
} evbus_text_event_t;

int evbus_event_text_complete(evbus_client_t *c, const char *text, size_t len,
                              evbus_text_event_t *ev, char *err, size_t errlen);
/* 0 when evbus_event_text_complete() would accept the text, else
 * EVBUS_CLIENT_EINVAL with its message; generates and keeps nothing (a
 * cheap first pass over input that must be all valid before any of it is
 * published). */
int evbus_event_text_check(evbus_client_t *c, const char *text, size_t len, char *err,
                           size_t errlen);
/*
 * evbus_event_text_check(), and on success the hash of the event's
 * partition key in *key_hash: its `partitionkey` attribute (the CloudEvents
 * partitioning extension) when that is a string, else its tenantid.  The
 * hash is 64-bit FNV-1a of the key's decoded UTF-8 bytes, so equal keys
 * hash alike however the JSON spells them, in every run and build
 * (*key_hash is unspecified on failure).  Callers that publish over
 * several connections send all events of one hash through the same
 * connection to keep their relative order.
 */
int evbus_event_text_check_key(evbus_client_t *c, const char *text, size_t len,
                               uint64_t *key_hash, char *err, size_t errlen);
/*
 * Two passes over text that must be all valid before any of it is
 * published, without checking each text twice.
 * evbus_event_text_check_keep() is evbus_event_text_check_key() (key_hash
 * may be NULL) that also fills *chk with what the check learned: where the
 * object and its attributes are, and a 64-bit fingerprint of the bytes.
 * evbus_event_text_complete_checked() then gives exactly what
 * evbus_event_text_complete() gives for the same text (same bytes, fields,
 * messages and codes) but, when text[0..len) still has the fingerprint
 * of the checked text, only splices the missing attributes in instead of
 * scanning it again.  Text that changed in between, or that the check
 * sent to jansson, is simply completed by evbus_event_text_complete().
 * The fingerprint is not cryptographic: it catches a file edited between
 * the passes, not a forged collision.  chk holds offsets, no pointers, so
 * the text may be copied elsewhere (a chunk buffer) between the passes.
 * Thread rules as evbus_event_text_complete; a chk may be read by several
 * threads at once.
 */
typedef struct evbus_text_checked {
    /* Private. */
    uint64_t sum;
    uint32_t len, open, close;
    uint32_t off[8];
    uint8_t alen[8];
    uint8_t present, fast;
} evbus_text_checked_t;

int evbus_event_text_check_keep(evbus_client_t *c, const char *text, size_t len,
                                uint64_t *key_hash, evbus_text_checked_t *chk, char *err,
                                size_t errlen);
int evbus_event_text_complete_checked(evbus_client_t *c, const char *text, size_t len,
                                      const evbus_text_checked_t *chk, evbus_text_event_t *ev,
                                      char *err, size_t errlen);
/* Frees what ev owns and zeroes it (a zeroed ev is fine). */
void evbus_text_event_clear(evbus_text_event_t *ev);

/*
 * Publishes n completed text events: rc, out_ids, return value and err
 * as evbus_publish_batch.  An event that was not completed (zeroed) gets
 * EVBUS_CLIENT_EINVAL and is not sent.  evs are not modified.
 */
ssize_t evbus_publish_batch_text(evbus_client_t *c, const evbus_text_event_t *evs, size_t n,
                                 char (*out_ids)[EVBUS_STREAM_ID_LEN], int *rc, char *err,
                                 size_t errlen);

/*
 * Completes and publishes n events given as JSON text, in one call: what
 * evbus_event_text_complete() on each and then evbus_publish_batch_text()
 * would publish (same bytes, checks and messages), but each text is
 * completed as it is written to the connection, so completing the next
 * ones overlaps Redis appending those before them, and no completed copy
 * is kept.  Use the two calls when you need the generated attributes (id,
 * correlationid) before publishing; this one when the stream id is enough.
 * A text that evbus_event_text_complete() refuses gets rc
 * EVBUS_CLIENT_EINVAL and is not sent (err: "event I: <its message>" for
 * the first); the others are published.  rc, out_ids, return value and
 * err otherwise as evbus_publish_batch; texts are not modified and need
 * not be NUL-terminated.
 */
typedef struct evbus_text {
    const char *text;
    size_t len;
} evbus_text_t;
ssize_t evbus_publish_texts(evbus_client_t *c, const evbus_text_t *texts, size_t n,
                            char (*out_ids)[EVBUS_STREAM_ID_LEN], int *rc, char *err,
                            size_t errlen);

/*
 * A publishing pipeline: a stream of events (completed text, or json_t
 * completed on the way in) over one connection, sent as they are added
 * and answered while later ones are added.  A batch call returns only when its last reply is in, so a
 * caller that prepares the next batch leaves Redis idle meanwhile; with a
 * pipeline the caller's work on the next event overlaps Redis' work on the
 * previous ones (evbusctl publish streams files this way).
 *
 * fn hears about every added event exactly once, in the order added, with
 * seq counting from 0: rc 0 and the new stream id in text, or
 * EVBUS_CLIENT_EREDIS and the reason in text (a reply error such as
 * WRONGTYPE, or the connection failing).  It runs inside
 * evbus_pipeline_add / _add_text / _wait / _free on the calling thread,
 * must not call any evbus_pipeline_* function itself, and text is valid
 * only during the call.  Events land in the stream in the order added.  A
 * pipeline, like its client, belongs to one thread; the client must not be
 * used for anything else until the pipeline is freed.
 *
 * evbus_pipeline_new: connects; NULL with the reason in err.
 * evbus_pipeline_add_text: copies ev's bytes (ev may be cleared right
 *   after) and moves bytes without blocking, unless
 *   EVBUS_PIPELINE_MAX_INFLIGHT events are unanswered: then it waits until
 *   half of them are.  0 when queued; EVBUS_CLIENT_EINVAL when ev is not
 *   completed or memory ran out (not queued, fn not told); or
 *   EVBUS_CLIENT_EREDIS when the connection failed: every unanswered event,
 *   this one included, has then been reported to fn, and further adds fail.
 * evbus_pipeline_add: the same for a json_t event, which is first
 *   completed in place as evbus_publish does (so a retry after a failure
 *   publishes the same id); a bad event is EVBUS_CLIENT_EINVAL with the
 *   attribute named in err (not queued, fn not told).  ev is not kept.
 * evbus_pipeline_wait: until every added event is answered; 0, or
 *   EVBUS_CLIENT_EREDIS as above.
 * evbus_pipeline_unanswered: events added and not yet reported to fn.
 * evbus_pipeline_free: when events are still unanswered they are reported
 *   as EVBUS_CLIENT_EREDIS (their fate is unknown; call _wait first) and
 *   the connection is dropped (the client reconnects at its next call);
 *   else the client keeps its connection.  NULL is fine.
 */
typedef struct evbus_pipeline evbus_pipeline_t;
typedef void (*evbus_pipeline_fn)(void *ud, uint64_t seq, int rc, const char *text);
evbus_pipeline_t *evbus_pipeline_new(evbus_client_t *c, evbus_pipeline_fn fn, void *ud,
                                     char *err, size_t errlen);
int evbus_pipeline_add_text(evbus_pipeline_t *pl, const evbus_text_event_t *ev, char *err,
                            size_t errlen);
int evbus_pipeline_add(evbus_pipeline_t *pl, json_t *ev, char *err, size_t errlen);
int evbus_pipeline_wait(evbus_pipeline_t *pl, char *err, size_t errlen);
uint64_t evbus_pipeline_unanswered(const evbus_pipeline_t *pl);
void evbus_pipeline_free(evbus_pipeline_t *pl);

/*
 * Publishes `len` raw bytes as the event field, unchecked (tests, DLQ
 * retry).  extra_fields is NULL or a NULL-terminated list of key, value
 * strings appended as further fields.  0 or EVBUS_CLIENT_EREDIS.
 */
int evbus_publish_raw(evbus_client_t *c, const char *json, size_t len,
                      const char *const *extra_fields, char *out_id, size_t out_len, char *err,
                      size_t errlen);

/* Thread-safe id and time helpers.
 * evbus_uuid4: "xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx" (V in 89ab), lowercase.
 * evbus_ulid: 26 Crockford base32 chars; monotonic within one thread and
 *   millisecond.
 * evbus_time_now_rfc3339: UTC with milliseconds, "2026-11-26T22:06:42.123Z". */
void evbus_uuid4(char out[37]);
void evbus_ulid(char out[27]);
void evbus_time_now_rfc3339(char out[32]);

/* Checks an event type (same rule as evbus_event_complete); 0 or -1. */
int evbus_type_check(const char *type);
/* Checks an RFC 3339 date-time string; 0 or -1. */
int evbus_time_check(const char *s);

/*
 * ---------------------------------------------------------------------
 * Dead-letter queue.
 *
 * WIRE FORMAT.  The daemon writes one stream entry per dead letter:
 *   XADD <dlq_stream> * event <original raw event bytes, unchanged>
 *        stream <original stream> id <original entry id>
 *        event_id <CloudEvent id or ""> type <type or "">
 *        tenant <tenantid or "">
 *        reason <a name from EVBUS_DLQ_REASONS below>
 *        handlers <JSON array of failing handlers "instance/subscriber">
 *        attempts <int> error <last error text>
 *        first_failure <RFC 3339> last_failure <RFC 3339>
 *        attempt_errors <JSON array, see ATTEMPT ERRORS>
 *        [replay_job <id>]
 * Readers tolerate missing fields (empty strings, attempts 0) and ignore
 * unknown ones.
 *
 * ATTEMPT ERRORS.  Every failed attempt's error, oldest first:
 *   [{"attempt": n, "handler": "instance/subscriber" or null (a failure
 *     before any handler ran), "at": RFC 3339, "error": text}, ...]
 * The last item is the failure that dead-lettered the event (its error is
 * the `error` field's).  Bounded: the newest EVBUS_DLQ_ERRORS_MAX attempts
 * (older ones are dropped; their attempt numbers are missing), each text
 * cut to EVBUS_DLQ_ERROR_MAX bytes at a character boundary.  Entries an
 * older evbusd wrote have no such field (read as "").  The retry schedule carries the list along in its members' meta
 * ("ae") from attempt to attempt.
 *
 * TENANCY.  Every operation takes an optional tenant (NULL = all).  With a
 * tenant, entries of any other tenant (or with no tenant) behave exactly
 * as if they did not exist: not listed, not counted, "not found" for get,
 * retry and delete, never purged.
 *
 * TYPE FILTER.  NULL = any type; "a.b" matches that exact type; "a.b.**"
 * matches "a.b" and every type below it ("a.b.c", "a.b.c.d"); "**" matches
 * everything.  Any other use of '*' is EVBUS_CLIENT_EINVAL.
 *
 * TIME.  An entry's dead-letter time is the milliseconds of its DLQ id
 * (the daemon's XADD), so time filters narrow the range Redis reads
 * instead of being checked entry by entry.
 *
 * ORDER AND CURSORS.  Reads go newest first.  A cursor is the DLQ id of
 * the last entry a page returned; the next page holds the matching entries
 * strictly older than it, so entries added or removed meanwhile never
 * shift a page (unlike an offset).
 *
 * ARCHIVE.  Dead letters removed on purpose (evbusd's capacity trimming,
 * evbusctl's purge) are first appended to an archive file in JSON Lines:
 * one compact object per entry, "dlq_id" first, then every field of the
 * stream entry in stream order, each value a string (attempts too); a
 * value that is not UTF-8 (an unparseable event's bytes) is written as
 * "<field>_base64" instead, so the archive keeps every byte.
 * ---------------------------------------------------------------------
 */
/*
 * DEAD-LETTER REASONS: X(ID, "name", "meaning").  The one list of them:
 * the daemon writes these names in the `reason` field, and the reason
 * table of docs/operations.md is these rows in this order (meanings are
 * Markdown; tests/unit/verdict fails when the two differ).  A new reason
 * goes at the end, so the enum values of the others never change.
 */
#define EVBUS_DLQ_REASONS(X)                                                                       \
    X(REJECT, "reject", "a handler returned `EVBUS_REJECT` (permanent failure)")                   \
    X(RETRIES_EXHAUSTED, "retries_exhausted",                                                      \
      "a handler kept returning `RETRY` (or timing out) until `max_attempts`")                     \
    X(UNPARSEABLE, "unparseable",                                                                  \
      "no `event` field, not a JSON object, or malformed retry metadata")                          \
    X(INVALID_ENVELOPE, "invalid_envelope",                                                        \
      "a required CloudEvents attribute is missing or malformed (or holds U+0000), or a member "    \
      "name appears twice anywhere in the event")                                                  \
    X(SCHEMA_INVALID, "schema_invalid",                                                            \
      "the payload fails its schema and a matching subscription enforces")                         \
    X(NO_SCHEMA, "no_schema",                                                                      \
      "no schema for the type, `schemas.unknown_type: reject`, and a subscription checks")         \
    X(UNKNOWN_VERSION, "unknown_version",                                                          \
      "the event claims a malformed schema version or one the catalog does not have")              \
    X(UPCAST_FAILED, "upcast_failed",                                                              \
      "an upcaster failed, or none reaches a version the subscription accepts")                    \
    X(POISON, "poison",                                                                            \
      "delivered more than `reclaim.max_deliveries` times (it crashed or hung the host)")          \
    X(HANDLER_GONE, "handler_gone",                                                                \
      "a retry's handler was removed by a reload or no longer subscribes to the type")            \
    X(QUARANTINED, "quarantined",                                                                  \
      "an operator moved the pending entry to the DLQ by hand (`evbusctl pending quarantine`)")

typedef enum evbus_dlq_reason {
    EVBUS_DLQ_NONE = 0, /* not a reason: not dead-lettered */
#define EVBUS_DLQ_REASON_ENUM(id, name, meaning) EVBUS_DLQ_##id,
    EVBUS_DLQ_REASONS(EVBUS_DLQ_REASON_ENUM)
#undef EVBUS_DLQ_REASON_ENUM
} evbus_dlq_reason_t;

/* The reason's name as written in the `reason` field ("reject", ...), or
 * NULL for EVBUS_DLQ_NONE and values out of range.  Static storage. */
const char *evbus_dlq_reason_name(evbus_dlq_reason_t r);

/* The bounds of ATTEMPT ERRORS. */
#define EVBUS_DLQ_ERRORS_MAX 16
#define EVBUS_DLQ_ERROR_MAX 512

typedef struct evbus_dlq_entry {
    char dlq_id[EVBUS_STREAM_ID_LEN];
    /* Owned strings, never NULL except replay_job (NULL when absent). */
    char *event;
    size_t event_len; /* the raw event may contain NUL bytes */
    char *stream, *orig_id, *event_id, *type, *tenant, *reason, *handlers, *error,
        *first_failure, *last_failure, *replay_job;
    long attempts;
    char *attempt_errors; /* owned JSON text (see ATTEMPT ERRORS), "" when absent */
} evbus_dlq_entry_t;

typedef struct evbus_dlq_filter {
    const char *tenant;  /* NULL = every tenant */
    const char *type;    /* NULL = every type; see TYPE FILTER */
    const char *reason;  /* NULL = every reason; else a name of EVBUS_DLQ_REASONS */
    const char *handler; /* NULL = any; "instance/subscriber" (one handler) or
                            "instance" (any of its subscribers) among `handlers` */
    int64_t since_ms;    /* dead-lettered at or after (Unix ms, see TIME); 0 = no bound */
    int64_t until_ms;    /* dead-lettered before (Unix ms); 0 = no bound */
    const char *event_id; /* NULL = any; else the CloudEvent id, exactly (1..256 bytes,
                             no control characters) */
} evbus_dlq_filter_t;

/*
 * 0 when f (NULL = all) is a valid filter, else EVBUS_CLIENT_EINVAL with a
 * message naming the field ("reason \"x\": ...", "since: ...", "event_id: ...").  Every
 * function taking a filter checks it first; this lets a caller check one
 * before it does anything else.  c may be NULL.
 */
int evbus_dlq_filter_check(evbus_client_t *c, const evbus_dlq_filter_t *f, char *err,
                           size_t errlen);

/* Largest page evbus_dlq_list and evbus_dlq_page return, and most ids
 * evbus_dlq_remove takes. */
#define EVBUS_DLQ_LIST_MAX 10000

/*
 * Up to `limit` entries matching f (NULL = all), newest first, after
 * skipping `offset` matching ones.  *out is a new array of *n entries
 * (NULL when 0), freed with evbus_dlq_list_free().  Returns 0,
 * EVBUS_CLIENT_EINVAL when limit is not 1..EVBUS_DLQ_LIST_MAX or the filter
 * is invalid, EVBUS_CLIENT_EREDIS on Redis failure.  Prefer
 * evbus_dlq_page() for walking the whole queue.
 */
int evbus_dlq_list(evbus_client_t *c, const char *dlq_stream, const evbus_dlq_filter_t *f,
                   size_t offset, size_t limit, evbus_dlq_entry_t **out, size_t *n, char *err,
                   size_t errlen);
void evbus_dlq_list_free(evbus_dlq_entry_t *entries, size_t n);

/*
 * One page of a walk over the entries matching f, newest first (see ORDER
 * AND CURSORS): up to `limit` entries older than `cursor` (NULL or "":
 * from the newest).  *out and *n as evbus_dlq_list.  next (at least
 * EVBUS_STREAM_ID_LEN bytes) receives the cursor of the following page, or
 * "" when no matching entry is left after this one.  Returns as
 * evbus_dlq_list; a cursor that is not a stream id is EVBUS_CLIENT_EINVAL.
 */
int evbus_dlq_page(evbus_client_t *c, const char *dlq_stream, const evbus_dlq_filter_t *f,
                   const char *cursor, size_t limit, evbus_dlq_entry_t **out, size_t *n,
                   char *next, char *err, size_t errlen);

/*
 * Calls fn for each entry matching f, newest first, reading the stream in
 * pages.  e is valid only during the call.  fn returns 0 to go on, 1 to
 * stop (the scan then returns 0), or a negative code to stop with it.
 * Entries added after the scan started are not seen.  Returns 0 or as
 * evbus_dlq_list.
 */
/*
 * evbus_dlq_page over several dead-letter streams read as one: the
 * partitions of a partitioned stream ({S:0}:dlq .. {S:P-1}:dlq, in
 * partition order; docs/scale-out.md).  Entries come newest first by
 * dead-letter id; the same id in two streams (two partitions dead-lettered
 * within one millisecond) comes in descending stream index.  A cursor is
 * "<dlq id>:<stream index>" of the last entry a page returned (next, at
 * least EVBUS_DLQ_MERGED_CURSOR_LEN bytes; "" after the last page); the
 * next page holds the matching entries after it in that order.  When
 * `streams` is not NULL, streams[i] (room for `limit`) receives the index
 * of the stream (*out)[i] came from.  Reads up to `limit` + 1 entries of
 * every stream per page.  Returns as evbus_dlq_page; a cursor of another
 * form is EVBUS_CLIENT_EINVAL.
 */
#define EVBUS_DLQ_MERGED_CURSOR_LEN (EVBUS_STREAM_ID_LEN + 8)
int evbus_dlq_page_merged(evbus_client_t *c, const char *const *dlq_streams, size_t n_streams,
                          const evbus_dlq_filter_t *f, const char *cursor, size_t limit,
                          evbus_dlq_entry_t **out, size_t *n, size_t *streams, char *next,
                          char *err, size_t errlen);

/* A dead letter's id in a merged list, "<dlq id>:<stream index>" (the form
 * evbusctl and the operator API show for partitioned streams): the plain
 * id into plain (EVBUS_STREAM_ID_LEN bytes) and the index into *index.
 * 0, or EVBUS_CLIENT_EINVAL when id has another form or the index is not
 * below n_streams. */
int evbus_dlq_merged_id(const char *id, size_t n_streams, char *plain, size_t *index);

/* A stream id "<ms>-<seq>" as its two numbers, to order ids of different
 * streams (partitions) by time; 0 for what does not parse. */
void evbus_stream_id_split(const char *id, unsigned long long *ms, unsigned long long *seq);

typedef int (*evbus_dlq_scan_fn)(const evbus_dlq_entry_t *e, void *ud);
int evbus_dlq_scan(evbus_client_t *c, const char *dlq_stream, const evbus_dlq_filter_t *f,
                   evbus_dlq_scan_fn fn, void *ud, char *err, size_t errlen);

/* Number of entries in the dead-letter stream (XLEN on its node: cheap,
 * no filter), or EVBUS_CLIENT_EREDIS. */
long long evbus_dlq_length(evbus_client_t *c, const char *dlq_stream, char *err, size_t errlen);

/* Number of entries matching f (NULL = all); -1/-2 as evbus_dlq_list. */
ssize_t evbus_dlq_count(evbus_client_t *c, const char *dlq_stream, const evbus_dlq_filter_t *f,
                        char *err, size_t errlen);

/*
 * One entry by DLQ id.  Returns 0 (out filled; release with
 * evbus_dlq_entry_free), 1 when not found (or another tenant's),
 * EVBUS_CLIENT_EINVAL when dlq_id is not a stream id, EVBUS_CLIENT_EREDIS.
 */
int evbus_dlq_get(evbus_client_t *c, const char *dlq_stream, const char *dlq_id,
                  const char *tenant, evbus_dlq_entry_t *out, char *err, size_t errlen);

/*
 * Re-publishes the entry's original bytes as a NEW entry of its original
 * stream (the client's stream when the entry names none), with extra
 * fields retried_from <dlq_id> and orig_id <original entry id>, and
 * deletes the DLQ entry, in one MULTI/EXEC under WATCH of the DLQ stream
 * (so two concurrent retries cannot both publish).  When the stream has
 * a retention cap and is full, nothing changes and EVBUS_CLIENT_EFULL is
 * returned; when the target key holds something other than a stream,
 * nothing changes and EVBUS_CLIENT_EREDIS is returned.  Writes the new
 * stream id.  Returns as evbus_dlq_get.
 */
int evbus_dlq_retry(evbus_client_t *c, const char *dlq_stream, const char *dlq_id,
                    const char *tenant, char *new_id, size_t len, char *err, size_t errlen);

/* Deletes one entry.  Returns as evbus_dlq_get. */
int evbus_dlq_delete(evbus_client_t *c, const char *dlq_stream, const char *dlq_id,
                     const char *tenant, char *err, size_t errlen);

/*
 * Removes the dead letters ids[0..n) (n <= EVBUS_DLQ_LIST_MAX), reading and
 * deleting them with one pipeline each.  Ids that are gone, or another
 * tenant's, are skipped.  With archive_path, the entries found are first
 * appended to that file (see ARCHIVE, evbus_dlq_archive_append), and
 * nothing is deleted when that fails (EVBUS_CLIENT_EIO).  When out is not
 * NULL it receives the entries this call deleted, in ids order (*n_out of
 * them; free with evbus_dlq_list_free): an entry removed by someone else
 * between the read and the delete is archived but not among them.
 * Returns how many were deleted, or EVBUS_CLIENT_EINVAL (a malformed id
 * or n too large; nothing done), EVBUS_CLIENT_EIO, EVBUS_CLIENT_EREDIS.
 */
ssize_t evbus_dlq_remove(evbus_client_t *c, const char *dlq_stream, const char *const *ids,
                         size_t n, const char *tenant, const char *archive_path,
                         evbus_dlq_entry_t **out, size_t *n_out, char *err, size_t errlen);

/* Deletes every entry matching f (NULL = all), without archiving; returns
 * how many, or -1/-2. */
ssize_t evbus_dlq_purge(evbus_client_t *c, const char *dlq_stream, const evbus_dlq_filter_t *f,
                        char *err, size_t errlen);

/*
 * Appends n stream entries (elements of an XRANGE reply: [id, [field,
 * value, ...]]) to the archive file at path (created 0644 when missing) as
 * described under ARCHIVE, then flushes and fsyncs it.  0, or
 * EVBUS_CLIENT_EIO with the file and the reason in err (a malformed entry
 * is EVBUS_CLIENT_EINVAL, before anything is written).  Any thread.
 */
int evbus_dlq_archive_append(const char *path, redisReply *const *entries, size_t n, char *err,
                             size_t errlen);

/* Frees the strings inside *e (not e itself) and zeroes it. */
void evbus_dlq_entry_free(evbus_dlq_entry_t *e);

/*
 * The entry as a new JSON object: dlq_id, stream, orig_id, event_id, type,
 * tenant, reason, attempts (integer), error, first_failure, last_failure,
 * replay_job (string or null), handlers (array, or the raw string when it
 * is not a JSON array), attempt_errors (the array of ATTEMPT ERRORS; []
 * when the entry has none, the raw string when it is not a JSON array), raw (the event bytes as a string) and event (the
 * parsed event, or null when the bytes are not JSON).  NULL on OOM.
 */
json_t *evbus_dlq_entry_json(const evbus_dlq_entry_t *e);

/*
 * ---------------------------------------------------------------------
 * Handler pause (docs/operations.md, "Pausing a handler").
 *
 * LAYOUT.  The paused handler instances of a stream are the fields of the
 * hash <stream>:paused: field = instance name (a plugin instance or a
 * foreign handler, as in the configuration), value = compact JSON
 * {"since": RFC 3339, "since_ms": ms since the epoch, "by": who paused it,
 * "reason": why, maybe ""}.  Every evbusd consuming the stream reads it, so
 * a pause holds on every host, across restarts and reloads, for as long as
 * Redis keeps the key.
 *
 * evbusd's retry schedule is the ZSET <stream>:retry: each member is
 * "<meta JSON>\n<raw event>" with meta {"h": "instance/subscriber",
 * "a": attempt, ...}, scored by its due time (ms since the epoch).  While
 * an instance is paused evbusd does not call it: its deliveries go to the
 * schedule without spending an attempt, and when one falls due it is
 * *parked*: its score becomes EVBUS_RETRY_PARKED_MS + its due time, beyond
 * any clock, so nothing moves it.  Unparking subtracts the offset again,
 * so an entry that fell due while paused is due at once.
 *
 * These functions take a connected hiredis context (evbus_client_redis()
 * or evbus_redis_connect()) so that evbusd and evbusctl share them; they
 * never reconnect.  Any thread, one context per thread.  Errors as above:
 * EVBUS_CLIENT_EINVAL (bad name, nothing sent), EVBUS_CLIENT_EREDIS.
 * ---------------------------------------------------------------------
 */
#define EVBUS_RETRY_PARKED_MS 1000000000000000LL

/* 0 when `instance` is a valid instance name (1 to 64 characters of
 * a-z A-Z 0-9 _ - .), else -1. */
int evbus_handler_name_check(const char *instance);

/* Pause `instance` of `stream`, recording who (`by`, NULL: "") and why
 * (`reason`, NULL: "").  1 when it is now paused, 0 when it already was
 * (the first record is kept: `since` says when the pause began). */
int evbus_handler_pause(redisContext *c, const char *stream, const char *instance,
                        const char *by, const char *reason, char *err, size_t errlen);

/* Resume `instance`: remove it from the pause hash, then unpark the
 * schedule (evbus_retry_unpark), so its deferred deliveries are due now.
 * 1 when it was paused, 0 when it was not (the sweep runs either way);
 * *released (may be NULL) gets how many entries were unparked. */
int evbus_handler_resume(redisContext *c, const char *stream, const char *instance,
                         long long *released, char *err, size_t errlen);

/* The pause hash as a new JSON object {instance: {since, since_ms, by,
 * reason}} (a value that is not such JSON shows as {"raw": text}).
 * Caller decrefs.  NULL with err on failure. */
json_t *evbus_handler_pauses(redisContext *c, const char *stream, char *err, size_t errlen);

/* Unpark every parked schedule entry whose instance is not paused (in
 * batches: each script call is short).  Idempotent and safe to run from
 * several hosts at once.  Returns how many were unparked, or < 0. */
long long evbus_retry_unpark(redisContext *c, const char *stream, char *err, size_t errlen);

/* How many parked schedule entries each instance has, as a new JSON object
 * {instance: count} (entries whose meta cannot be read count under "?").
 * Reads the whole parked range: for listings, not for hot paths. */
json_t *evbus_retry_parked_counts(redisContext *c, const char *stream, char *err,
                                  size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* EVBUS_CLIENT_H */
