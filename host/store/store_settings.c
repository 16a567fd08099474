/*
 * store_settings — the rows of postgres: { ... } and replay: { ... }.
 *
 * The metadata writer's queue and batch buffers are allocated once, so
 * their sizes need a restart; its flush interval, the partition upkeep
 * (retention, partitions ahead) and every replay limit are read by the
 * worker threads on each round and are live.
 */
#include "store/store_settings.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

#define OFF(f) offsetof(evbus_config_t, store.f)
#define U32MAX 4294967295.0

static char *metadata_default(const evbus_config_t *cfg)
{
    return strdup(cfg->store.postgres_url ? "true" : "false");
}

static void check(const evbus_config_t *cfg, cfg_errors_t *errs)
{
    size_t i;
    cfg_setting_find("postgres.metadata.enabled", &i);
    const cfg_source_t *src = &cfg->sources[i];
    if (cfg->store.metadata_enabled && !cfg->store.postgres_url && src->kind == CFG_SRC_FILE)
        cfg_errors_add(errs, &src->pos,
                       "postgres.metadata.enabled: true needs postgres.url (or EVBUS_POSTGRES_URL)");
}

static const char STARTED[] = "the writer and the replay worker connect once, at start";
static const char ROUND[] = "from the replay worker's next round";
static const char UPKEEP[] = "the metadata writer runs its partition upkeep at once with the "
                             "new value (and hourly)";

static const cfg_setting_t rows[] = {
    {.key = "postgres.url", .type = CFG_STRING, .offset = OFF(postgres_url),
     .env = "EVBUS_POSTGRES_URL", .def_doc = "none", .reload = CFG_RESTART, .why = STARTED,
     .flags = CFG_F_OPTIONAL,
     .desc = "PostgreSQL conninfo/URL; empty or absent = no PostgreSQL"},
    {.key = "postgres.migrate_on_start", .type = CFG_BOOL, .offset = OFF(migrate_on_start),
     .def = "false", .reload = CFG_RESTART, .why = "read only when evbusd starts",
     .desc = "apply pending migrations at start"},
    {.key = "postgres.metadata.enabled", .type = CFG_BOOL, .offset = OFF(metadata_enabled),
     .compute = metadata_default, .def_doc = "true iff a PostgreSQL URL is set",
     .reload = CFG_RESTART, .why = STARTED,
     .desc = "record event metadata; `true` without a URL is an error"},
    {.key = "postgres.metadata.queue_size", .type = CFG_U32, .offset = OFF(metadata_queue_size),
     .min = 1, .max = U32MAX, .def = "65536", .reload = CFG_RESTART,
     .why = "the ring is allocated once", .desc = "in-memory queue in front of the writer"},
    {.key = "postgres.metadata.batch_size", .type = CFG_U32, .offset = OFF(metadata_batch_size),
     .min = 1, .max = U32MAX, .def = "5000", .reload = CFG_RESTART,
     .why = "the batch buffers are allocated once",
     .desc = "most updates per write (one `COPY`); see [storage](storage.md#the-metadata-writer)"},
    {.key = "postgres.metadata.flush_ms", .type = CFG_U32, .offset = OFF(metadata_flush_ms),
     .min = 1, .max = U32MAX, .def = "50", .reload = CFG_LIVE, .why = "from the next batch",
     .desc = "longest wait before a partial batch is written"},
    {.key = "postgres.metadata.retention", .type = CFG_DURATION,
     .offset = OFF(metadata_retention_ms), .min = 0, .max = 3650 * 86400000.0, .def = "30d",
     .reload = CFG_LIVE, .why = UPKEEP,
     .desc = "event metadata older than this is dropped, a whole UTC day (partition) at a time; "
             "`0` keeps everything; see [storage](storage.md#partitions-and-retention)"},
    {.key = "postgres.metadata.partitions_ahead", .type = CFG_U32,
     .offset = OFF(metadata_partitions_ahead), .min = 1, .max = 366, .def = "3",
     .reload = CFG_LIVE, .why = UPKEEP,
     .desc = "days after today whose `events` partitions are created in advance"},
    {.key = "replay.max_range_s", .type = CFG_U32, .offset = OFF(replay_max_range_s), .min = 1,
     .max = U32MAX, .def = "2678400", .reload = CFG_LIVE,
     .why = "read by each `evbusctl replay start`", .desc = "widest replay time range (31 days)"},
    {.key = "replay.keep_completed", .type = CFG_U32, .offset = OFF(replay_keep_completed),
     .min = 0, .max = U32MAX, .def = "100", .reload = CFG_LIVE, .why = ROUND,
     .desc = "finished replay jobs kept"},
    {.key = "replay.keep_failed", .type = CFG_U32, .offset = OFF(replay_keep_failed), .min = 0,
     .max = U32MAX, .def = "100", .reload = CFG_LIVE, .why = ROUND,
     .desc = "failed replay jobs kept"},
    {.key = "replay.lease_ms", .type = CFG_U32, .offset = OFF(replay_lease_ms), .min = 1000,
     .max = 86400000, .def = "120000", .reload = CFG_LIVE, .why = ROUND,
     .desc = "a running job without a heartbeat this long (its host died) is claimed again and "
             "resumes; heartbeats go every lease/6: keep it well above the longest handler "
             "timeout"},
    {.key = "replay.chunk", .type = CFG_U32, .offset = OFF(replay_chunk), .min = 1, .max = 10000,
     .def = "500", .reload = CFG_LIVE, .why = "from the next read of a job",
     .desc = "entries per XRANGE read of a replay job; progress is saved after each"},
};

const cfg_table_t store_settings_table = {
    .module = "store", .rows = rows, .n_rows = sizeof rows / sizeof rows[0], .check = check};
