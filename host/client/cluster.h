/*
 * cluster — a Redis Cluster client on hiredis 0.14, which has none (and
 * hiredis-cluster is not packaged for Debian 12).  The whole contract of
 * host/client/cluster.c.  In the tree only for now: built into libevbus's
 * objects, not installed as a header.
 *
 * What it does:
 *   - key slots: CRC16 (XMODEM) of the key, or of its hash tag — the bytes
 *     between the first '{' and the first '}' after it, when not empty —
 *     modulo 16384, as the Redis Cluster specification says;
 *   - the slot map, read with CLUSTER SLOTS (slot numbers and ports as
 *     integers or as strings: some 7.0 builds send strings);
 *   - routing: each command goes to the master serving its key's slot;
 *     a multi-key command or script whose keys hash to different slots is
 *     refused before anything is sent (EVBUS_CLIENT_EINVAL, naming both
 *     keys and their slots), so Redis never answers CROSSSLOT;
 *   - redirects: MOVED updates the map for that slot and retries there
 *     (and, when the named node served no slot before — a promoted
 *     replica — the whole map is read again before the next command);
 *     ASK sends ASKING and the command to the named node once, and leaves
 *     the map alone; TRYAGAIN and CLUSTERDOWN are retried after a backoff
 *     (10 ms doubling to 500 ms) until opts.retry_budget_ms has passed;
 *     at most opts.max_redirects MOVED/ASK per command;
 *   - failures of a node: a node that cannot be connected to makes the
 *     handle read the map again from any node it knows (the seeds last)
 *     and retry, within the retry budget (a failover promotes a replica
 *     and the new map names it).  An idle connection is checked with one
 *     poll() before each use, so a node that died between two commands
 *     counts as unreachable, not as a lost reply.  A command that was sent
 *     but whose reply was lost (timeout, reset) is NOT retried — it may
 *     have run, and only the caller knows whether running it twice is
 *     acceptable — but the map is read again so that the next command
 *     finds the new master;
 *   - pipelines: commands appended to a pipe are grouped by node, written
 *     to every node before any reply is read, and their replies handed back
 *     in append order (see evbus_cluster_pipe_exec for what a redirect in
 *     a pipeline does to ordering).
 *
 * What it does not do: MULTI/EXEC (atomic groups are Lua scripts whose keys
 * share a hash tag), pub/sub, reading from replicas, RESP3.
 *
 * Threads: an evbus_cluster_t is owned by one thread at a time and is not
 * thread-safe.  It holds at most one connection per node, so "one handle
 * per thread" is "one connection per node per thread".  Handles share
 * nothing: each learns the map from its own CLUSTER SLOTS and redirects.
 * evbus_cluster_crc16, evbus_cluster_keyslot, evbus_cluster_same_slot,
 * evbus_cluster_command_keys and evbus_cluster_seeds_check are pure and
 * may run on any thread.
 *
 * Errors: functions return NULL or a negative code (EVBUS_CLIENT_EINVAL:
 * the caller's input, nothing sent; EVBUS_CLIENT_EREDIS: the cluster)
 * with a message in the caller's err buffer (may be NULL), also kept in
 * the handle (evbus_cluster_error).  Messages name the node ("redis
 * 127.0.0.1:7001: ...") and, for routed commands, the command and slot.
 * A Redis error reply that is not a redirect (WRONGTYPE, NOSCRIPT, ...) is
 * not a failure here: it is returned as a REDIS_REPLY_ERROR reply, as
 * hiredis does.
 */
#ifndef EVBUS_CLIENT_CLUSTER_H
#define EVBUS_CLIENT_CLUSTER_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EVBUS_CLUSTER_SLOTS 16384

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0, no reflection) of
 * buf[0..len), the checksum Redis Cluster hashes keys with. */
uint16_t evbus_cluster_crc16(const void *buf, size_t len);

/* The slot (0..16383) of key[0..len), honouring a non-empty hash tag. */
unsigned evbus_cluster_keyslot(const char *key, size_t len);

/*
 * The common slot of keys[0..n) (lens may be NULL: strlen), or
 * EVBUS_CLIENT_EINVAL with a message naming the first two keys that
 * differ and their slots (what Redis would refuse with CROSSSLOT).
 * n == 0 returns EVBUS_CLIENT_EINVAL too ("no key").
 */
int evbus_cluster_same_slot(size_t n, const char *const *keys, const size_t *lens, char *err,
                            size_t errlen);

/*
 * Where the keys of a command are: writes the argv indexes of its keys
 * into idx (at most max of them) and returns how many there are; 0 for a
 * command known to take no key (PING, INFO, SCRIPT, WAIT, CLUSTER, ...);
 * EVBUS_CLIENT_EINVAL with a message for a command not in the built-in
 * table (those evbus sends: strings, hashes, sorted sets, lists, sets,
 * streams, key expiry, EVAL/EVALSHA/FCALL by numkeys, XREAD/XREADGROUP
 * after STREAMS, DEL/EXISTS/MGET/MSET/...), for malformed arguments
 * (numkeys out of range) or when there are more than max keys.  The
 * command name is matched case-insensitively.  Pure.
 */
int evbus_cluster_command_keys(int argc, const char *const *argv, const size_t *lens, int *idx,
                               int max);

/*
 * Checks a comma-separated list of seed URLs, each
 * redis://[[user]:password@]host[:port][/0] (a cluster has only database
 * 0; no unix://).  0, or EVBUS_CLIENT_EINVAL with a message naming the
 * bad entry.  The first seed that carries a password gives it (and its
 * user) to every node.  Pure.
 */
int evbus_cluster_seeds_check(const char *seeds, char *err, size_t errlen);

typedef struct evbus_cluster_opts {
    int connect_timeout_ms; /* per connect; <= 0: 2000 */
    int command_timeout_ms; /* per command on a connection; <= 0: 5000 */
    int max_redirects;      /* MOVED + ASK followed per command; <= 0: 16 */
    int retry_budget_ms;    /* how long TRYAGAIN, CLUSTERDOWN and unreachable
                               nodes are retried per command; <= 0: 5000 */
} evbus_cluster_opts_t;

typedef struct evbus_cluster evbus_cluster_t;

/*
 * A handle on the cluster the seeds (as evbus_cluster_seeds_check takes
 * them) belong to; o may be NULL (defaults).  Does not connect: the first
 * command reads the map.  NULL with a message in err for bad seeds or no
 * memory.  Free with evbus_cluster_free (closes every connection).
 */
evbus_cluster_t *evbus_cluster_new(const char *seeds, const evbus_cluster_opts_t *o, char *err,
                                   size_t errlen);
void evbus_cluster_free(evbus_cluster_t *c);

/* The last failure's message ("" when none yet); valid until the next
 * call. */
const char *evbus_cluster_error(const evbus_cluster_t *c);
/* The last failure's code (EVBUS_CLIENT_EINVAL or EVBUS_CLIENT_EREDIS; 0
 * when none yet): what a NULL from a command function meant. */
int evbus_cluster_errcode(const evbus_cluster_t *c);

/*
 * Reads the slot map again (CLUSTER SLOTS) from the first node that
 * answers: the masters of the current map, then every other node known,
 * then the seeds.  The new map replaces the old one whole.  0, or
 * EVBUS_CLIENT_EREDIS naming every node tried and why (the old map is
 * kept).
 */
int evbus_cluster_refresh(evbus_cluster_t *c, char *err, size_t errlen);

/* "host:port" of the master serving `slot` in the current map, into out;
 * 0, or -1 when the slot is not served (or no map has been read yet). */
int evbus_cluster_slot_owner(const evbus_cluster_t *c, unsigned slot, char *out, size_t len);

/* The i-th distinct master of the current map (in slot order) as
 * "host:port", into out; 0, or -1 when there are not i + 1 masters.  To
 * run a command on every master (SCRIPT LOAD, a merge over partitions). */
int evbus_cluster_master(const evbus_cluster_t *c, size_t i, char *out, size_t len);

/* What the handle has done so far, for tests, logs and metrics. */
typedef struct evbus_cluster_stats {
    uint64_t moved;       /* MOVED redirects followed */
    uint64_t ask;         /* ASK redirects followed */
    uint64_t tryagain;    /* TRYAGAIN replies retried */
    uint64_t clusterdown; /* CLUSTERDOWN replies retried */
    uint64_t refreshes;   /* maps read (CLUSTER SLOTS answered) */
    uint64_t connects;    /* connections opened */
    uint64_t conn_errors; /* connects and commands that failed on I/O */
} evbus_cluster_stats_t;
void evbus_cluster_stats(const evbus_cluster_t *c, evbus_cluster_stats_t *out);

/*
 * Runs one command, routed by its keys (evbus_cluster_command_keys; all
 * in one slot, else EVBUS_CLIENT_EINVAL and nothing sent); a keyless
 * command goes to the master of the lowest slot.  lens may be NULL
 * (strlen).  Returns the reply (the caller frees it with
 * freeReplyObject), or NULL with a message: unknown command, CROSSSLOT,
 * too many redirects, retry budget spent, node unreachable, reply lost.
 */
redisReply *evbus_cluster_command(evbus_cluster_t *c, int argc, const char *const *argv,
                                  const size_t *lens, char *err, size_t errlen);

/* The same, routed to `slot` whatever the command's keys: for commands
 * the table does not know, and for keyless commands that belong to a
 * slot's master (WAIT after a write to that slot). */
redisReply *evbus_cluster_command_slot(evbus_cluster_t *c, unsigned slot, int argc,
                                       const char *const *argv, const size_t *lens, char *err,
                                       size_t errlen);

/* The same, sent to the node "host:port" as it is (no routing, no
 * redirects followed: a MOVED comes back as the reply): for per-node
 * commands such as SCRIPT LOAD on every master, INFO, CLUSTER INFO. */
redisReply *evbus_cluster_command_node(evbus_cluster_t *c, const char *addr, int argc,
                                       const char *const *argv, const size_t *lens, char *err,
                                       size_t errlen);

/*
 * For callers that speak to the nodes themselves (evbusd's threads, whose
 * code sends commands and pipelines on a hiredis connection): the
 * connection to the master serving `slot`, connected and authenticated,
 * the map read first when there is none or it is stale.  Owned by the
 * handle, valid until evbus_cluster_reset or evbus_cluster_free, or until
 * a later call finds that node's connection broken.  Nothing is followed
 * on it: a MOVED, ASK, TRYAGAIN or CLUSTERDOWN comes back as an error
 * reply (evbus_cluster_reply_is_redirect), and the caller then calls
 * evbus_cluster_reset and tries again (after a backoff).  NULL with a
 * message when no node serves the slot or it cannot be reached.
 */
redisContext *evbus_cluster_slot_conn(evbus_cluster_t *c, unsigned slot, char *err,
                                      size_t errlen);

/* Close every connection and read the map again before the next command:
 * after an I/O error or a redirect on a connection from
 * evbus_cluster_slot_conn. */
void evbus_cluster_reset(evbus_cluster_t *c);

/* Whether r is an error reply saying the key is elsewhere or the cluster
 * is not ready (MOVED, ASK, TRYAGAIN, CLUSTERDOWN): a reason to read the
 * map again and retry, never an answer.  Pure. */
bool evbus_cluster_reply_is_redirect(const redisReply *r);

/*
 * A pipeline: commands appended, then sent together.  Owned by the thread
 * that owns its handle; the handle must outlive it.
 */
typedef struct evbus_cluster_pipe evbus_cluster_pipe_t;

evbus_cluster_pipe_t *evbus_cluster_pipe_new(evbus_cluster_t *c);
/* Frees the pipe and any replies it still holds. */
void evbus_cluster_pipe_free(evbus_cluster_pipe_t *p);

/* Appends a command (the strings are copied), routed as
 * evbus_cluster_command routes it.  0, or EVBUS_CLIENT_EINVAL (unknown
 * command, CROSSSLOT: nothing appended). */
int evbus_cluster_pipe_append(evbus_cluster_pipe_t *p, int argc, const char *const *argv,
                              const size_t *lens, char *err, size_t errlen);
/* The same, routed to `slot`. */
int evbus_cluster_pipe_append_slot(evbus_cluster_pipe_t *p, unsigned slot, int argc,
                                   const char *const *argv, const size_t *lens, char *err,
                                   size_t errlen);

/*
 * Sends every appended command: grouped by the node serving its slot, each
 * node's commands written in append order, every node written to before
 * any reply is read.  Replies are kept in append order
 * (evbus_cluster_pipe_reply).  A command answered with a redirect,
 * TRYAGAIN or CLUSTERDOWN is then run again alone as evbus_cluster_command
 * would (so it runs after the pipeline's other commands for its node: put
 * commands whose order matters into one slot, and expect a reshard to
 * reorder them only when the slot moves mid-pipeline).  A command whose
 * node could not be reached is run alone too (it was not sent); a command
 * sent but whose reply was lost is not retried.
 * Returns how many commands have no reply (0: all answered; each failure
 * has evbus_cluster_pipe_error), or < 0 when nothing could be attempted.
 * The appended commands are cleared: the pipe can be filled again (the
 * replies stay until the next exec or free).
 */
int evbus_cluster_pipe_exec(evbus_cluster_pipe_t *p, char *err, size_t errlen);

/* How many commands the last exec ran. */
size_t evbus_cluster_pipe_count(const evbus_cluster_pipe_t *p);
/* Reply i of the last exec (borrowed: valid until the next exec or free),
 * NULL when that command failed. */
redisReply *evbus_cluster_pipe_reply(const evbus_cluster_pipe_t *p, size_t i);
/* Why command i of the last exec has no reply ("" when it has one). */
const char *evbus_cluster_pipe_error(const evbus_cluster_pipe_t *p, size_t i);

#ifdef __cplusplus
}
#endif

#endif /* EVBUS_CLIENT_CLUSTER_H */
