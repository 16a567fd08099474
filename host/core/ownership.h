/*
 * ownership — which host consumes which partition (docs/scale-out.md,
 * "Ownership and rebalancing").  The whole contract of ownership.c.
 *
 * With partitions: P > 1 every partition is consumed by one host at a
 * time.  A host holds a partition through its lease key {S:p}:lease (the
 * owner's consumer name, with a Redis expiry) and the partition's fencing
 * epoch {S:p}:epoch (an integer that grows by one at every acquisition and
 * never goes back).  Every write a host makes for entries it read from a
 * partition (the ack group, the retry mover) runs only while the epoch is
 * the one the host acquired: a host whose lease was lost, or taken over
 * after it expired, cannot acknowledge, schedule a retry or dead-letter
 * there any more.  The engine checks it with WATCH {S:p}:epoch around the
 * ack group's MULTI/EXEC (core/dispatch.h) and inside the retry mover's
 * script; the lease scripts below keep the rest.
 *
 * Hosts find each other through the membership set S:hosts (a sorted set:
 * member = consumer name, score = Redis time in ms until which the host
 * counts as alive), kept by a heartbeat at every ownership tick.  Each
 * host computes the same target assignment from the live hosts and the
 * current lease owners (own_assign: sticky and balanced, so only the
 * partitions that must move are revoked), acquires what it should hold and
 * is free, and gives up (drains, then releases) what it should not.
 *
 * Everything here is either pure (own_assign) or one Redis call on the
 * caller's connection; the engine's ownership thread calls it (one
 * connection, one thread).  Redis failures return -1 with the reason in
 * err; "the lease is someone else's" is never an error.
 */
#ifndef EVBUS_CORE_OWNERSHIP_H
#define EVBUS_CORE_OWNERSHIP_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

/* A partition's state on this host.  Written by the ownership thread,
 * except ACQUIRED -> ACTIVE, written by the reader once it has taken the
 * partition over (claimed its pending entries and handled them). */
typedef enum own_state {
    OWN_NONE = 0,     /* another host's, or nobody's */
    OWN_ACQUIRED = 1, /* lease held; the reader must take it over first */
    OWN_ACTIVE = 2,   /* lease held; read and dispatched */
    OWN_REVOKING = 3, /* lease held; not read any more, released once drained */
} own_state_t;

const char *own_state_name(own_state_t s);

/*
 * The target owner of each partition: target[p] = an index into the live
 * hosts (sorted by name, the same order on every host), or -1 when there
 * is no host.  owner[p] is the index of the live host that holds p's lease
 * now, or -1 (free, expired, or held by a host that is not live).
 *
 * Balanced: every host gets P / n partitions, and P % n of them one more —
 * those that hold the most now, so that nothing moves for the remainder.
 * Sticky: a host keeps the partitions it holds, lowest numbers first, up
 * to its share; only the rest move, each to the first host below its
 * share.  Deterministic: the same inputs give the same answer everywhere.
 * Pure; may run on any thread.
 */
void own_assign(unsigned n_parts, size_t n_hosts, const int *owner, int *target);

/*
 * The heartbeat: this host (me) is alive for lease_ms from Redis's clock;
 * hosts whose time ran out are dropped from the set.  On success the live
 * hosts, sorted by name, are returned in *hosts (an array of n strings, to
 * free with own_hosts_free), and 0.  me == NULL only reads.  -1 with a
 * message on a Redis failure.
 */
int own_heartbeat(redisContext *c, const char *hosts_key, const char *me, uint32_t lease_ms,
                  char ***hosts, size_t *n, char *err, size_t errlen);
void own_hosts_free(char **hosts, size_t n);

/* This host leaves the set (a clean stop).  0 or -1. */
int own_leave(redisContext *c, const char *hosts_key, const char *me, char *err, size_t errlen);

/*
 * Acquire p's lease for lease_ms when it is free or already me's (a host
 * restarted under the same name: it starts a new epoch too, which fences
 * whatever its previous life left running).  Returns the new epoch (> 0),
 * 0 when another host holds it (its name in holder), -1 on a Redis
 * failure.
 */
long long own_acquire(redisContext *c, const char *lease_key, const char *epoch_key,
                      const char *me, uint32_t lease_ms, char *holder, size_t holder_len,
                      char *err, size_t errlen);

/* Extend me's lease held with `epoch` by lease_ms (or set it again if it
 * expired and nobody acquired the partition since: the epoch is still
 * ours).  1 renewed, 0 lost (another epoch), -1 Redis failure. */
int own_renew(redisContext *c, const char *lease_key, const char *epoch_key, const char *me,
              long long epoch, uint32_t lease_ms, char *err, size_t errlen);

/* Give the lease up when it is still me's with `epoch`.  1 released, 0 it
 * was not (nothing changed), -1 Redis failure. */
int own_release(redisContext *c, const char *lease_key, const char *epoch_key, const char *me,
                long long epoch, char *err, size_t errlen);

/* The current holder and epoch of n partitions, partition i's read on
 * cs[i] (its node's connection; pipelined: every command is sent before
 * any reply is read): holder[i] is a malloc'd name or NULL (free),
 * epoch[i] 0 when never acquired.  0, or -1 (the arrays then hold nothing
 * to free; the connections may hold unread replies: drop them). */
int own_read(redisContext *const *cs, size_t n, char *const *lease_keys,
             char *const *epoch_keys, char **holder, long long *epoch, char *err,
             size_t errlen);

#endif
