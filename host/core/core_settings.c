/*
 * core_settings — the rows of the engine's and dispatch's settings.
 *
 * Live rows are read by the engine from the generation it serves
 * (engine_swap applies them); restart rows identify the consumer or size
 * what the engine allocates once, so a reload keeps their running value.
 */
#include "core/core_settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/cluster.h"
#include "client/partition.h"
#include "config/config.h"

#include <hiredis/hiredis.h>

#define OFF(f) offsetof(evbus_config_t, core.f)
#define U32MAX 4294967295.0

static char *consumer_default(const evbus_config_t *cfg)
{
    (void)cfg;
    char host[256];
    if (gethostname(host, sizeof host) != 0 || !host[0])
        snprintf(host, sizeof host, "evbus-%ld", (long)getpid());
    host[sizeof host - 1] = '\0';
    return strdup(host);
}

static char *dlq_stream_default(const evbus_config_t *cfg)
{
    char *s = NULL;
    return asprintf(&s, "%s:dlq", cfg->core.stream) < 0 ? NULL : s;
}

static char *dlq_archive_default(const evbus_config_t *cfg)
{
    char *s = NULL;
    return asprintf(&s, "%s/dlq-archive.jsonl", cfg->daemon.state_dir) < 0 ? NULL : s;
}

static const char IDENTITY[] =
    "names what this host consumes; changing it live would leave entries pending under the old name";
static const char CONN[] = "applies to connections opened after the reload (reconnects)";

static const cfg_setting_t rows[] = {
    {.key = "redis.url", .type = CFG_STRING, .offset = OFF(redis_url),
     .def = "redis://127.0.0.1:6379/0", .env = "EVBUS_REDIS_URL", .reload = CFG_RESTART,
     .why = "every thread's connection and the consumer's pending entries belong to one server",
     .desc = "Redis server"},
    {.key = "redis.cluster", .type = CFG_STRLIST, .offset = OFF(redis_cluster),
     .def_doc = "none", .flags = CFG_F_OPTIONAL | CFG_F_URLS, .env = "EVBUS_REDIS_CLUSTER",
     .reload = CFG_RESTART,
     .why = "every thread's connections and the consumer's pending entries belong to one "
            "deployment",
     .desc = "seed nodes of a Redis Cluster (`redis://host:port`, a list or comma-separated), "
             "instead of `redis.url`; evbusd needs `partitions` of 2 or more there (see "
             "[scale-out](scale-out.md#evbusd-on-a-cluster))"},
    {.key = "redis.connect_timeout_ms", .type = CFG_U32, .offset = OFF(redis_connect_timeout_ms),
     .min = 1, .max = U32MAX, .def = "2000", .reload = CFG_LIVE, .why = CONN,
     .desc = "connect timeout"},
    {.key = "redis.command_timeout_ms", .type = CFG_U32, .offset = OFF(redis_command_timeout_ms),
     .min = 1, .max = U32MAX, .def = "5000", .reload = CFG_RESTART,
     .why = "set on each connection when it opens; the open connections keep theirs",
     .desc = "timeout of one command"},
    {.key = "redis.wait_replicas", .type = CFG_U32, .offset = OFF(redis_wait_replicas),
     .min = 0, .max = 64, .def = "0", .env = "EVBUS_REDIS_WAIT_REPLICAS", .reload = CFG_LIVE,
     .why = "from the next write",
     .desc = "after its writes (acks with their retries and dead letters, publishes), wait "
             "until this many replicas have them (`WAIT`), at most `redis.wait_timeout_ms`; a "
             "shortfall is counted (`evbus_redis_wait_short_total`), never an error: "
             "replication stays asynchronous (see [scale-out](scale-out.md#durability-wait_replicas)). "
             "0: do not wait"},
    {.key = "redis.wait_timeout_ms", .type = CFG_U32, .offset = OFF(redis_wait_timeout_ms),
     .min = 1, .max = U32MAX, .def = "1000", .reload = CFG_LIVE, .why = "from the next write",
     .desc = "bound on one `WAIT` (below `redis.command_timeout_ms`)"},
    {.key = "stream", .type = CFG_STRING, .offset = OFF(stream), .def = "evbus:events",
     .reload = CFG_RESTART, .why = IDENTITY, .desc = "the event stream"},
    {.key = "partitions", .type = CFG_U32, .offset = OFF(partitions), .min = 1,
     .max = EVBUS_PARTITIONS_MAX, .def = "1", .reload = CFG_RESTART,
     .why = "decides which stream every event goes to; changing it is an explicit procedure, "
            "not a reload",
     .desc = "streams the logical stream is split into, `{<stream>:<p>}` each, on one Redis "
             "server (1: today's keys, unchanged); must equal the count recorded in "
             "`<stream>:partitions` (see [scale-out](scale-out.md#partitions))"},
    {.key = "group", .type = CFG_STRING, .offset = OFF(group), .def = "evbus",
     .reload = CFG_RESTART, .why = IDENTITY, .desc = "consumer group"},
    {.key = "consumer", .type = CFG_STRING, .offset = OFF(consumer), .compute = consumer_default,
     .def_doc = "the host name", .reload = CFG_RESTART, .why = IDENTITY,
     .desc = "consumer name within the group"},
    {.key = "batch_size", .type = CFG_U32, .offset = OFF(batch_size), .min = 1, .max = U32MAX,
     .def = "1000", .reload = CFG_LIVE, .why = "from the next read", .desc = "XREADGROUP COUNT"},
    {.key = "block_ms", .type = CFG_U32, .offset = OFF(block_ms), .min = 1, .max = U32MAX,
     .def = "1000", .reload = CFG_LIVE, .why = "from the next read", .desc = "XREADGROUP BLOCK"},
    {.key = "worker_threads", .type = CFG_U32, .offset = OFF(worker_threads), .min = 1, .max = 64,
     .def = "2", .reload = CFG_RESTART,
     .why = "the threads, their connections and the chunk queue are sized once at start",
     .desc = "handler threads"},
    {.key = "handler_timeout_ms", .type = CFG_U32, .offset = OFF(handler_timeout_ms), .min = 1,
     .max = U32MAX, .def = "30000", .reload = CFG_LIVE,
     .why = "for events dispatched with the new generation",
     .desc = "default bound on one handler call (coarse monotonic clock: to within a few ms)"},
    {.key = "retry.base_ms", .type = CFG_U32, .offset = OFF(retry.base_ms), .min = 0,
     .max = U32MAX, .def = "1000", .reload = CFG_LIVE,
     .why = "for retries scheduled by the new generation", .desc = "first retry delay"},
    {.key = "retry.factor", .type = CFG_DOUBLE, .offset = OFF(retry.factor), .min = 1,
     .max = 1e300, .def = "2.0", .reload = CFG_LIVE,
     .why = "for retries scheduled by the new generation", .desc = "growth per attempt"},
    {.key = "retry.max_ms", .type = CFG_U32, .offset = OFF(retry.max_ms), .min = 0,
     .max = U32MAX, .def = "60000", .reload = CFG_LIVE,
     .why = "for retries scheduled by the new generation", .desc = "cap on one delay"},
    {.key = "retry.max_attempts", .type = CFG_U32, .offset = OFF(retry.max_attempts), .min = 1,
     .max = U32MAX, .def = "5", .reload = CFG_LIVE,
     .why = "for events dispatched with the new generation",
     .desc = "attempts including the first"},
    {.key = "retry.jitter", .type = CFG_DOUBLE, .offset = OFF(retry.jitter), .min = 0, .max = 1,
     .def = "0.2", .reload = CFG_LIVE, .why = "for retries scheduled by the new generation",
     .desc = "random spread, as a fraction of the delay"},
    {.key = "dlq.stream", .type = CFG_STRING, .offset = OFF(dlq_stream),
     .compute = dlq_stream_default, .def_doc = "`<stream>:dlq`", .reload = CFG_RESTART,
     .why = "moving it live would split the dead letters between two streams",
     .desc = "dead-letter stream (with `partitions` above 1 each partition has its own, "
             "`{<stream>:<p>}:dlq`, and this must not be set)"},
    {.key = "dlq.capacity", .type = CFG_U32, .offset = OFF(dlq_capacity), .min = 1,
     .max = U32MAX, .def = "10000", .reload = CFG_LIVE,
     .why = "at the next capacity check (every second)",
     .desc = "entries kept in the dead-letter stream (80 %/95 % warnings, overflow archived; "
             "with `partitions`, over every partition, each keeping at most its share)"},
    {.key = "dlq.archive", .type = CFG_PATH, .offset = OFF(dlq_archive),
     .compute = dlq_archive_default, .def_doc = "`<state_dir>/dlq-archive.jsonl`",
     .reload = CFG_LIVE, .why = "at the next capacity check",
     .desc = "where dead letters are archived before removal (capacity, `dlq purge`)"},
    {.key = "reclaim.min_idle_ms", .type = CFG_U32, .offset = OFF(reclaim_min_idle_ms),
     .min = 1, .max = U32MAX, .def = "60000", .reload = CFG_LIVE,
     .why = "at the next reclaim and lease renewal",
     .desc = "idle time before a pending entry is reclaimed"},
    {.key = "reclaim.interval_ms", .type = CFG_U32, .offset = OFF(reclaim_interval_ms),
     .min = 1, .max = U32MAX, .def = "5000", .reload = CFG_LIVE,
     .why = "from the next maintenance round", .desc = "how often to reclaim"},
    {.key = "reclaim.max_deliveries", .type = CFG_U32, .offset = OFF(max_deliveries), .min = 1,
     .max = U32MAX, .def = "5", .reload = CFG_LIVE,
     .why = "for entries claimed again after the reload",
     .desc = "deliveries before an entry is dead-lettered as poison"},
    {.key = "reclaim.stale_consumer_ms", .type = CFG_U32, .offset = OFF(stale_consumer_ms),
     .min = 1, .max = U32MAX, .def = "86400000", .reload = CFG_LIVE,
     .why = "from the next maintenance round",
     .desc = "consumers idle longer than this that own no pending entry are removed (checked "
             "every half of this, at least every reclaim.interval_ms, at most once a minute)"},
    {.key = "circuit.failures", .type = CFG_U32, .offset = OFF(circuit_failures), .min = 1,
     .max = U32MAX, .def = "10", .reload = CFG_LIVE, .why = "from the next Redis failure",
     .desc = "consecutive Redis failures that open the circuit"},
    {.key = "circuit.max_backoff_ms", .type = CFG_U32, .offset = OFF(reconnect_max_ms),
     .min = 1, .max = U32MAX, .def = "1000", .reload = CFG_LIVE,
     .why = "from the next backoff",
     .desc = "cap on reconnect backoff: also how soon consumption resumes after Redis returns"},
    {.key = "circuit.stop", .type = CFG_BOOL, .offset = OFF(circuit_stop), .def = "false",
     .reload = CFG_LIVE, .why = "when the circuit next opens",
     .desc = "stop the daemon when the circuit opens instead of probing forever"},
    {.key = "health.unhealthy_after", .type = CFG_DURATION,
     .offset = OFF(health_unhealthy_after_ms), .min = 100, .max = 600000, .def = "3s",
     .reload = CFG_LIVE, .why = "from the next health request",
     .desc = "Redis unreachable this long makes /health `unhealthy` (HTTP 503), whatever the "
             "circuit breaker says"},
    {.key = "health.stuck_after", .type = CFG_DURATION, .offset = OFF(health_stuck_after_ms),
     .min = 100, .max = 86400000, .def = "30s", .reload = CFG_LIVE,
     .why = "from the next health request",
     .desc = "an entry read but not acknowledged by this host for this long makes /health "
             "`degraded` (in-host lag)"},
    {.key = "stats.history_period", .type = CFG_DURATION, .offset = OFF(stats_history_period_ms),
     .min = 1000, .max = 60000, .def = "1m", .reload = CFG_LIVE,
     .why = "from the next sample (the points already taken keep their span)",
     .desc = "one point of the overview's history (`GET /api/v1/stats/history`, the console's "
             "charts), which keeps the last 15: a quarter of an hour at the default"},
    {.key = "ownership.lease_ms", .type = CFG_U32, .offset = OFF(own_lease_ms), .min = 300,
     .max = 3600000, .def = "10000", .reload = CFG_LIVE, .why = "from the next renewal",
     .desc = "with `partitions` above 1, how long a host's lease on a partition lasts without "
             "renewal (renewed every third of it): a crashed host's partitions are taken over "
             "this long after its last renewal. Every host of a deployment should use the same "
             "value (see [scale-out](scale-out.md#ownership-and-rebalancing))"},
    {.key = "ownership.drain_timeout_ms", .type = CFG_U32, .offset = OFF(own_drain_timeout_ms),
     .min = 0, .max = 3600000, .def = "30000", .reload = CFG_LIVE,
     .why = "applies to the next partition given up",
     .desc = "when a rebalance or a stop moves a partition away, how long this host waits for "
             "its in-flight events of that partition to be acknowledged before releasing the "
             "lease anyway (their writes are then fenced and the new owner handles them again)"},
    {.key = "ordering.max_keys", .type = CFG_U32, .offset = OFF(ordering_max_keys), .min = 64,
     .max = 100000000, .def = "100000", .reload = CFG_RESTART,
     .why = "the table of held keys is sized once at start",
     .desc = "keys of `ordering: per_key` handlers this host holds behind a retrying event at "
             "once (split evenly over the worker threads); at the cap a new hold is refused "
             "and counted (`evbus_keyorder_table_full_total`): that key's later events are not "
             "held back"},
};

static const cfg_source_t *source_of(const evbus_config_t *cfg, const char *key)
{
    size_t idx;
    return cfg_setting_find(key, &idx) ? &cfg->sources[idx] : NULL;
}

const char *core_redis_cluster(const evbus_config_t *cfg)
{
    const cfg_source_t *url = source_of(cfg, "redis.url");
    const cfg_source_t *cl = source_of(cfg, "redis.cluster");
    if (!cfg->core.redis_cluster || !url || !cl)
        return NULL;
    if (url->kind == CFG_SRC_ENV && cl->kind == CFG_SRC_FILE)
        return NULL;
    return cfg->core.redis_cluster;
}

static void check(const evbus_config_t *cfg, cfg_errors_t *errs)
{
    /* a WAIT longer than the connection's command timeout would read as a
     * lost connection, and the writes before it would be sent again */
    const cfg_source_t *wt = source_of(cfg, "redis.wait_timeout_ms");
    if (cfg->core.redis_wait_replicas &&
        cfg->core.redis_wait_timeout_ms >= cfg->core.redis_command_timeout_ms)
        cfg_errors_add(errs, wt && wt->kind == CFG_SRC_FILE ? &wt->pos : NULL,
                       "redis.wait_timeout_ms: %u must be below redis.command_timeout_ms (%u): "
                       "a longer WAIT would read as a lost connection",
                       cfg->core.redis_wait_timeout_ms, cfg->core.redis_command_timeout_ms);
    const cfg_source_t *url = source_of(cfg, "redis.url");
    const cfg_source_t *cl = source_of(cfg, "redis.cluster");
    if (!cfg->core.redis_cluster || !url || !cl)
        return;
    const cfg_pos_t *at = cl->kind == CFG_SRC_FILE ? &cl->pos : NULL;
    char err[300];
    if (evbus_cluster_seeds_check(cfg->core.redis_cluster, err, sizeof err) != 0)
        cfg_errors_add(errs, at, "%s%s", err,
                       cl->kind == CFG_SRC_ENV ? " (from EVBUS_REDIS_CLUSTER)" : "");
    if (url->kind == CFG_SRC_FILE && cl->kind == CFG_SRC_FILE)
        cfg_errors_add(errs, at,
                       "redis.cluster: exclusive with redis.url (set at %s:%d:%d): a deployment "
                       "uses one Redis server or one cluster; remove one of them",
                       url->pos.file, url->pos.line, url->pos.col);
    if (url->kind == CFG_SRC_ENV && cl->kind == CFG_SRC_ENV)
        cfg_errors_add(errs, NULL,
                       "EVBUS_REDIS_CLUSTER and EVBUS_REDIS_URL are both set: a deployment uses "
                       "one Redis server or one cluster; unset one of them");
}

const cfg_table_t core_settings_table = {
    .module = "core", .rows = rows, .n_rows = sizeof rows / sizeof rows[0], .check = check};

int core_partitions_check(const evbus_config_t *cfg, redisContext *c, bool record, char *msg,
                          size_t len)
{
    return core_partitions_check_on(cfg, c, c, record, msg, len);
}

int core_partitions_check_on(const evbus_config_t *cfg, redisContext *c, redisContext *sc,
                             bool record, char *msg, size_t len)
{
    unsigned recorded = 0;
    char why[600];
    int rc = evbus_partitions_check_on(c, sc, cfg->core.stream, cfg->core.partitions, record,
                                       &recorded, why, sizeof why);
    if (rc < 0) {
        snprintf(msg, len, "checking the recorded partition count: %s", why);
        return -1;
    }
    if (rc == 0)
        return 0;
    size_t idx = 0;
    char at[600];
    cfg_setting_find("partitions", &idx);
    snprintf(msg, len,
             "partitions: %u (%s) differs from the partition count of stream %s: %s.  Changing "
             "the partition count of a stream is an explicit procedure (docs/scale-out.md, "
             "\"Changing the partition count\"; the runbook in docs/operations.md): set "
             "partitions: %u to run "
             "with the stream as it is",
             cfg->core.partitions, cfg_source_text(cfg, idx, at, sizeof at), cfg->core.stream,
             why, recorded);
    return 1;
}

char *core_partition_key(const evbus_config_t *cfg, unsigned p, const char *suffix)
{
    bool tagged = cfg->core.partitions > 1;
    int n = evbus_partition_key_name(NULL, 0, cfg->core.stream, p, tagged, suffix);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s)
        evbus_partition_key_name(s, (size_t)n + 1, cfg->core.stream, p, tagged, suffix);
    return s;
}
