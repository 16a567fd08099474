/*
 * client_internal — what the files of host/client share.  Private to
 * host/client: not installed, not part of the contract (evbus_client.h is).
 * Internal non-static names use the evbus__ prefix.
 *
 * Who defines what; each file uses only the ones listed before it, so no
 * two files call each other:
 *   error.c     the client's last error (evbus__fail);
 *   jsontext.c  the buffer, the JSON writer and the text scanner;
 *   event.c     completion and checks (evbus__source, evbus__text_emit);
 *   partition.c the partition hash, key names and recorded count
 *               (partition.h);
 *   url.c       the redis:// and unix:// URLs (evbus__parse_url);
 *   cluster.c   the Redis Cluster client (cluster.h);
 *   client.c    the connection (one server, or the nodes of a cluster),
 *               XADD and the publish paths;
 *   dlq_archive.c  the DLQ archive file (evbus_dlq_archive_append);
 *   dlq.c       the dead-letter queue;
 *   pause.c     the handler pause hash and the unpark sweep (pause_lua.h).
 */
#ifndef EVBUS_CLIENT_INTERNAL_H
#define EVBUS_CLIENT_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>

#include "evbus_client.h"

struct evbus_client {
    /* Parsed URL: either a TCP host/port or a unix socket path. */
    char *host;
    int port;
    char *unix_path;
    char *user;     /* NULL: AUTH <password> only */
    char *password; /* NULL: no AUTH */
    int db;
    char *stream;
    /* partitions (evbus_client_set_partitions): 1, the stream itself; more,
     * each event to its partition's stream part_names[p] ("{<stream>:<p>}",
     * made on first use).  parts_ok: the count agrees with the one recorded
     * in Redis (compared when a connection opens). */
    unsigned partitions;
    char **part_names;
    bool parts_ok;
    /* a Redis Cluster (evbus_client_new_cluster), or NULL: one server.  On
     * a cluster every command goes to the node of its key's slot
     * (evbus__conn_key), the handle holds the connections, and parts_ok
     * says the count was compared and the policy read (once, and again
     * after evbus_client_set_partitions). */
    struct evbus_cluster *cl;
    /* One server: the connection, owned, NULL until the first command and
     * replaced after I/O errors.  Cluster: borrowed from cl, the node of
     * the last evbus__conn_key's key (valid until evbus__drop). */
    redisContext *ctx;
    /* retention guard: 0 plain XADD, 1 every XADD through the guard
     * (EVALSHA guard_sha); decided when a connection opens from the policy
     * evbusd publishes in <stream>:retention, unless guard_explicit */
    int guard;
    char guard_sha[48];   /* SCRIPT LOAD's answer on this connection */
    bool guard_explicit;  /* evbus_client_set_retention() decided */
    uint32_t guard_max;   /* max_entries the guard enforces (0: the policy hash's) */
    bool block;           /* on_full: block */
    uint64_t block_ms;
    evbus_id_kind_t id_kind;
    char *source; /* NULL: the default "/evbus/<hostname>" */
    char *default_source; /* "/evbus/<hostname>", looked up at first use */
    /* evbus_client_set_wait_replicas: WAIT after each publish call's
     * writes; wait_short counts the WAITs that fell short */
    unsigned wait_n;
    uint32_t wait_ms;
    uint64_t wait_short, waits;
    char errbuf[256];
};

/* The max_entries the guard of one stream enforces (0: its policy
 * hash's): an explicit cap is the logical stream's, so with partitions
 * each partition's guard enforces its share, rounded up, as evbusd's
 * trimmers do (host/retention/retention.h). */
static inline uint32_t evbus__guard_max(const evbus_client_t *c)
{
    if (c->partitions <= 1 || !c->guard_max)
        return c->guard_max;
    return (uint32_t)(((uint64_t)c->guard_max + c->partitions - 1) / c->partitions);
}

/* The WAIT of evbus_client_set_wait_replicas after a publish call's writes
 * landed (nothing when none is set).  Never fails the publish: a shortfall
 * is counted, a lost connection dropped for the next call to reopen. */
void evbus__wait_replicas(evbus_client_t *c);

/* The source given to events without one: the client's, else the default
 * (cached in c when c is not NULL, else formatted into buf). */
const char *evbus__source(evbus_client_t *c, char buf[300]);

/* A growable byte buffer (publish output, JSON text). */
typedef struct evbus__buf {
    char *p;
    size_t len, cap;
} evbus__buf_t;

/* Makes room for n more bytes; 0, or -1 when memory runs out. */
int evbus__buf_grow(evbus__buf_t *b, size_t n);
static inline int evbus__buf_reserve(evbus__buf_t *b, size_t n)
{
    return b->cap - b->len >= n ? 0 : evbus__buf_grow(b, n);
}

/* Appends the compact JSON text of v, byte for byte what
 * json_dumps(v, JSON_COMPACT) writes.  Returns -1 (b->len unchanged) for
 * what it does not handle itself: invalid UTF-8 in a string, nesting deeper
 * than 256 (so also reference cycles), out of memory.  The caller then
 * uses json_dumps, which decides. */
int evbus__json_write(evbus__buf_t *b, const json_t *v);

/* Appends s as a JSON string (quotes and escapes as json_dumps); -1 on
 * invalid UTF-8 or out of memory. */
int evbus__json_write_string(evbus__buf_t *b, const char *s, size_t n);

/* The CloudEvent attributes the text scanner reports. */
enum {
    EVBUS__A_SPECVERSION,
    EVBUS__A_ID,
    EVBUS__A_SOURCE,
    EVBUS__A_TYPE,
    EVBUS__A_TIME,
    EVBUS__A_TENANTID,
    EVBUS__A_CORRELATIONID,
    EVBUS__A_PARTITIONKEY, /* the CloudEvents partitioning extension */
    EVBUS__A_COUNT
};

/* Which EVBUS__A_* attribute the key k[0..n) names (bytes and length, so
 * a key holding a NUL names none), -1 for none: one comparison picked by
 * length, since every key of every event comes here. */
int evbus__attr_index(const char *k, size_t n);

/* What evbus__scan_event found in one JSON text. */
typedef struct evbus__scan {
    const char *open;  /* the object's '{' */
    const char *close; /* one past its '}' */
    /* Raw bytes of each top-level attribute's string value (no escapes in
     * them); NULL when absent. */
    const char *val[EVBUS__A_COUNT];
    size_t len[EVBUS__A_COUNT];
} evbus__scan_t;

/*
 * A conservative scanner for the fast path of text events: returns 0 only
 * when json_loadb(text, len, 0) would accept the text, it is one object,
 * and every top-level attribute of EVBUS__A_* present appears once, with a
 * string value without backslashes, and is at most 255 bytes long.  -1
 * means "not sure": the caller takes the slow path (jansson), which gives
 * the real verdict and message.
 */
int evbus__scan_event(const char *text, size_t len, evbus__scan_t *out);

/* Appends the completed text of text[0..len): the bytes
 * evbus_event_text_complete() would publish, written straight into b
 * (nothing kept).  0; EVBUS_CLIENT_EINVAL with its message in msg; -1 when
 * memory runs out.  b->len is unchanged on failure. */
int evbus__text_emit(evbus_client_t *c, const char *text, size_t len, evbus__buf_t *b, char *msg,
                     size_t msglen);

/* Records a message in the client (when c, for evbus_client_error) and in
 * err (when err); returns code.  In error.c, which depends on nothing else
 * here, so event.c reports errors without depending on client.c. */
int evbus__fail(evbus_client_t *c, char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Parses a redis:// or unix:// URL (evbus_client_new's forms) into c's
 * host, port, unix_path, user, password and db.  0, or -1 with a message
 * in err (c may then hold some fields: evbus__url_free frees them). */
int evbus__parse_url(evbus_client_t *c, const char *url, char *err, size_t errlen);
/* Frees (and clears) the fields evbus__parse_url fills. */
void evbus__url_free(evbus_client_t *c);

/* The connected context, (re)connecting when needed; NULL with the reason
 * recorded via evbus__fail.  On a cluster: evbus__conn_key of the stream. */
redisContext *evbus__conn(evbus_client_t *c, char *err, size_t errlen);

/* The connection the commands on `key` go to (c->ctx is set to it): on one
 * server evbus__conn's; on a cluster the master serving the key's slot,
 * after the partition count was compared and the policy read (first
 * call).  NULL with the reason recorded.  Every key of one MULTI/EXEC or
 * script must share the key's slot (docs/scale-out.md, "Key layout"). */
redisContext *evbus__conn_key(evbus_client_t *c, const char *key, char *err, size_t errlen);

/* Drops c->ctx after an I/O error, a reply out of step or a redirect: one
 * server closes it, a cluster closes every connection and reads the slot
 * map again before the next command. */
void evbus__drop(evbus_client_t *c);

/* The stream an event goes to: c->stream with one partition, else the
 * name of partition evbus_event_partition(ev) (NULL when memory runs out;
 * ev must be complete: an event without partitionkey and tenantid goes by
 * its id). */
const char *evbus__event_stream(evbus_client_t *c, const json_t *ev);
/* The same for an event's compact JSON text[0..len) (NULL: not an event
 * with a key, or out of memory). */
const char *evbus__text_stream(evbus_client_t *c, const char *text, size_t len);

/* Whether the reply-less failure of redisCommand/redisGetReply broke the
 * connection: records "redis: <errstr>" and drops the context so the next
 * call reconnects.  Returns EVBUS_CLIENT_EREDIS. */
int evbus__io_fail(evbus_client_t *c, char *err, size_t errlen, const char *what);

/* The head of an XADD of c's to `stream`, appended to argv/lens at argc:
 * "XADD stream *" or, when the retention guard is on, "EVAL <guard> 3
 * stream <stream>:retention <stream>:retention:full max" (the fields then
 * follow as ARGV).  h holds the strings; returns the new argc. */
typedef struct evbus__head {
    char policy[512], full[512], max[24];
} evbus__head_t;
int evbus__xadd_head(const evbus_client_t *c, const char *stream, const char **argv,
                     size_t *lens, int argc, evbus__head_t *h);

/* An error reply of the guard ("EVBUSFULL ..."): the stream is full. */
bool evbus__is_full(const char *s, size_t len);

/* XADD <stream> * <fields...> (key/value pairs, at most 16 strings with
 * their lengths; through the retention guard when it is on); writes the new
 * id.  0, EVBUS_CLIENT_EFULL or EVBUS_CLIENT_EREDIS. */
int evbus__xadd(evbus_client_t *c, const char *stream, const char *const *fields,
                const size_t *flens, int nfields, char *out_id, size_t out_len, char *err,
                size_t errlen);

#endif
