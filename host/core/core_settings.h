/*
 * core_settings — the settings of the consumer engine and dispatch: the
 * Redis connection, the stream and group, reading, workers, handler
 * timeouts, retries, the dead-letter stream, reclaim and the circuit
 * breaker.  The rows (key, type, default, reload class) are in
 * core_settings.c; docs/configuration.md is generated from them.
 *
 * The struct lives in evbus_config_t, which lives in a generation: the
 * engine reads the live rows from the generation it serves (engine_swap
 * applies them) and keeps the CFG_RESTART rows it started with.
 */
#ifndef EVBUS_CORE_SETTINGS_H
#define EVBUS_CORE_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/settings.h"

/* A retry policy (retry: and a subscription's retry:). */
typedef struct retry_policy {
    uint32_t base_ms;      /* first delay */
    double factor;         /* growth per attempt */
    uint32_t max_ms;       /* cap of one delay */
    uint32_t max_attempts; /* total attempts including the first */
    double jitter;         /* 0..1 fraction of random spread */
} retry_policy_t;

typedef struct core_settings {
    char *redis_url;
    char *redis_cluster; /* seed URLs joined with ","; NULL: none (see core_redis_cluster) */
    uint32_t redis_connect_timeout_ms;
    uint32_t redis_command_timeout_ms;
    uint32_t redis_wait_replicas;   /* WAIT after writes; 0: never (docs/scale-out.md) */
    uint32_t redis_wait_timeout_ms;
    char *stream;
    uint32_t partitions;        /* 1: today's keys (host/client/partition.h) */
    uint32_t own_lease_ms;      /* partition leases (core/ownership.h), partitions > 1 */
    uint32_t own_drain_timeout_ms;
    char *group;
    char *consumer;
    uint32_t batch_size;        /* XREADGROUP COUNT */
    uint32_t block_ms;          /* XREADGROUP BLOCK */
    uint32_t worker_threads;
    uint32_t handler_timeout_ms;
    retry_policy_t retry;       /* the global policy */
    char *dlq_stream;
    uint32_t dlq_capacity;
    char *dlq_archive;
    uint32_t reclaim_min_idle_ms;
    uint32_t reclaim_interval_ms;
    uint32_t max_deliveries;
    uint32_t stale_consumer_ms;
    uint32_t circuit_failures;
    uint32_t reconnect_max_ms;
    bool circuit_stop;
    uint64_t health_unhealthy_after_ms; /* Redis unreachable this long: unhealthy */
    uint64_t health_stuck_after_ms;     /* in-host entry older than this: degraded */
    uint64_t stats_history_period_ms;   /* one point of GET /api/v1/stats/history */
    uint32_t ordering_max_keys; /* held keys of per_key handlers (core/keyorder.h) */
} core_settings_t;

extern const cfg_table_t core_settings_table;

struct evbus_config;
/*
 * The Redis Cluster seeds in force, or NULL when the deployment uses the
 * one server of redis.url.  redis.cluster and redis.url are exclusive
 * (the check refuses both in the files, or both in the environment); a
 * value from the environment beats one from the files, so
 * EVBUS_REDIS_CLUSTER overrides a redis.url written in conf.d and
 * EVBUS_REDIS_URL a redis.cluster.  Every reader of the two settings asks
 * here.
 */
const char *core_redis_cluster(const struct evbus_config *cfg);

/*
 * The partition count of `partitions` against the one recorded in Redis
 * (client/partition.h, evbus_partitions_check; `record`: write it when the
 * stream is new).  0 when they agree; 1 when they differ, with a message
 * for the operator in msg naming the setting's file:line:column, both
 * counts and the procedure (docs/scale-out.md, docs/runbook.md); -1 when
 * Redis failed (msg says why).  Used by evbusd at start, by
 * `evbusd --check-config` and by evbusctl.
 */
typedef struct redisContext redisContext;
int core_partitions_check(const struct evbus_config *cfg, redisContext *c, bool record, char *msg,
                          size_t len);
/* The same with the record read on c and the stream's existence on sc
 * (different slots on a Redis Cluster). */
int core_partitions_check_on(const struct evbus_config *cfg, redisContext *c, redisContext *sc,
                             bool record, char *msg, size_t len);

/*
 * The name of partition p's key with `suffix` ("" for the stream,
 * ":retry", ":paused", ...): today's "<stream><suffix>" when
 * partitions is 1, "{<stream>:<p>}<suffix>" otherwise
 * (docs/scale-out.md, "Key layout").  Returns a malloc'd string, NULL
 * when memory runs out.
 */
char *core_partition_key(const struct evbus_config *cfg, unsigned p, const char *suffix);

#endif
