/*
 * harness_cluster — a real local Redis Cluster for integration tests:
 * `masters` masters and `replicas` replicas per master, each a
 * redis-server --cluster-enabled yes on a free loopback port (its cluster
 * bus on another free port, set with cluster-port) in its own folder of
 * one mkdtemp folder, joined with `redis-cli --cluster create ...
 * --cluster-replicas N --cluster-yes`.  cluster-node-timeout is 1000 ms so
 * that a killed master is replaced in a few seconds.
 *
 * Same rules as harness.h: for tests, main thread only; functions return
 * 0 / -1 (or NULL) and the caller asserts.  A node's log is
 * <dir>/<i>/redis.log.
 */
#ifndef EVBUS_TEST_HARNESS_CLUSTER_H
#define EVBUS_TEST_HARNESS_CLUSTER_H

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/types.h>

#define HARNESS_CLUSTER_MAX 12

typedef struct harness_cluster {
    int n; /* nodes */
    int port[HARNESS_CLUSTER_MAX];
    int bus_port[HARNESS_CLUSTER_MAX];
    pid_t pid[HARNESS_CLUSTER_MAX];
    char dir[256];
    char seeds[1024]; /* "redis://127.0.0.1:P1,redis://127.0.0.1:P2,..." (every node) */
} harness_cluster_t;

/* Starts the nodes, creates the cluster and waits (up to 60 s) until
 * every node says cluster_state:ok and every replica's link to its master
 * is up.  0, or -1 (whatever started is stopped; the nodes' logs stay in
 * c->dir for a look). */
int harness_cluster_start(harness_cluster_t *c, int masters, int replicas);
/* One node with cluster support and no slots (enough for CLUSTER
 * KEYSLOT): c->n is 1.  0 or -1. */
int harness_cluster_start_alone(harness_cluster_t *c);
/* Stops every node (SIGTERM, then SIGKILL) and removes the folder. */
void harness_cluster_stop(harness_cluster_t *c);

/* A new connection to node i; NULL on failure.  Caller frees. */
redisContext *harness_cluster_connect(const harness_cluster_t *c, int i);
/* A command on node i, as redisCommand formats it: the reply (caller
 * frees), or NULL with the reason in why when the node cannot be reached
 * or answers an error. */
redisReply *harness_cluster_command(const harness_cluster_t *c, int i, char *why, size_t whylen,
                                    const char *fmt, ...);
redisReply *harness_cluster_vcommand(const harness_cluster_t *c, int i, char *why,
                                     size_t whylen, const char *fmt, va_list ap);
/* Moves `slot` from master src to master dst the way a reshard does, in
 * steps, calling stage(ud, k) after each when stage is not NULL: 1, the
 * slot MIGRATING at src and IMPORTING at dst (keys still at the source);
 * 2, every key MIGRATEd (the source answers ASK); 3, every master told
 * the new owner (SETSLOT NODE: an old map gets MOVED).  0, or -1 with the
 * reason in why. */
int harness_cluster_move_slot(const harness_cluster_t *c, unsigned slot, int src, int dst,
                              void (*stage)(void *ud, int stage), void *ud, char *why,
                              size_t whylen);
/* Index of the node listening on port, or -1. */
int harness_cluster_node_of_port(const harness_cluster_t *c, int port);
/* Node i's id (CLUSTER MYID) into out[41]; 0 or -1. */
int harness_cluster_node_id(const harness_cluster_t *c, int i, char out[41]);
/* Whether node i is a master (ROLE). */
bool harness_cluster_is_master(const harness_cluster_t *c, int i);
/* Index of a replica of master i (INFO replication of every other node),
 * or -1. */
int harness_cluster_replica_of(const harness_cluster_t *c, int master);
/* SIGKILL node i (a crash; the others notice within the node timeout). */
void harness_cluster_kill(harness_cluster_t *c, int i);
/* Waits until every live node says cluster_state:ok; 0 or -1. */
int harness_cluster_wait_ok(const harness_cluster_t *c, int timeout_ms);

#endif
