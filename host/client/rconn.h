/*
 * rconn — one thread's connections to Redis, on one server or on a Redis
 * Cluster, behind one call: "the connection for this key".  The whole
 * contract of rconn.c.  In the tree only (built into libevbus's objects,
 * not installed), for evbusd's threads, which send their own commands and
 * pipelines on hiredis connections.
 *
 * On one server there is one connection, opened by the first get and kept
 * until a reset.  On a cluster (host/client/cluster.h) a get returns the
 * connection to the master serving the key's slot; every key one script,
 * MULTI/EXEC or pipeline touches must share a hash tag (docs/scale-out.md,
 * "Key layout"), so one get per group is enough.
 *
 * Errors: a get that cannot connect returns NULL with the reason.  After
 * an I/O error on a connection it gave, or a reply that
 * evbus_rconn_is_redirect (MOVED, ASK, TRYAGAIN, CLUSTERDOWN: the cluster
 * moved the slot or is not ready), the caller calls evbus_rconn_reset and
 * tries again after its backoff: the next get reconnects (and, on a
 * cluster, reads the slot map again first).
 *
 * Threads: an evbus_rconn_t belongs to one thread.  A connection it gave
 * stays valid until the next reset or free, or until a later get finds it
 * broken — so a caller that holds two at once gets them again after any
 * failure.
 */
#ifndef EVBUS_CLIENT_RCONN_H
#define EVBUS_CLIENT_RCONN_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct evbus_rconn evbus_rconn_t;

/* url: one server (evbus_redis_connect's form); cluster: the seeds
 * (evbus_cluster_seeds_check's form), which win when not NULL.  Does not
 * connect.  NULL with a message for bad seeds or no memory. */
evbus_rconn_t *evbus_rconn_new(const char *url, const char *cluster, int connect_ms,
                               int command_ms, char *err, size_t errlen);
void evbus_rconn_free(evbus_rconn_t *r);

bool evbus_rconn_is_cluster(const evbus_rconn_t *r);

/* The connection for `key` (NULL: any, e.g. for a keyless command on one
 * server; on a cluster the master of slot 0). */
redisContext *evbus_rconn_get(evbus_rconn_t *r, const char *key, char *err, size_t errlen);

/* The connect timeout of the connections opened from now on. */
void evbus_rconn_set_connect_ms(evbus_rconn_t *r, int connect_ms);

/* Close the connections (see Errors above). */
void evbus_rconn_reset(evbus_rconn_t *r);

/* Whether reply r is a cluster redirect or a transient cluster state. */
bool evbus_rconn_is_redirect(const redisReply *r);

#endif
