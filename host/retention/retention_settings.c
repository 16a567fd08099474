/*
 * retention_settings — the rows of retention: { ... }.  All live: the
 * trimmer reads them every round, republishes the limits and hands the
 * archive's settings to the archiver.
 */
#include "retention/retention_settings.h"

#include <stddef.h>

#include "config/config.h"

#define OFF(f) offsetof(evbus_config_t, retention.f)
#define U32MAX 4294967295.0
#define ROUND "from the trimmer's next round (retention.interval)"

static const char *const on_full_names[] = {"reject", "block", NULL};
static const int on_full_values[] = {RETENTION_REJECT, RETENTION_BLOCK};

static const char *const archive_names[] = {"off", "postgres", NULL};
static const int archive_values[] = {RETENTION_ARCHIVE_OFF, RETENTION_ARCHIVE_POSTGRES};

static void check(const evbus_config_t *cfg, cfg_errors_t *errs)
{
    size_t i;
    cfg_setting_find("retention.archive", &i);
    const cfg_source_t *src = &cfg->sources[i];
    if (cfg->retention.archive == RETENTION_ARCHIVE_POSTGRES && !cfg->store.postgres_url &&
        src->kind == CFG_SRC_FILE)
        cfg_errors_add(errs, &src->pos,
                       "retention.archive: postgres needs postgres.url (or EVBUS_POSTGRES_URL)");
}

static const cfg_setting_t rows[] = {
    {.key = "retention.max_age", .type = CFG_DURATION, .offset = OFF(max_age_ms), .min = 0,
     .max = 3650.0 * 86400000, .def = "7d", .reload = CFG_LIVE, .why = ROUND,
     .desc = "acknowledged entries older than this are trimmed (the replay window kept in "
             "Redis); 0 = no age limit. Never an entry a protected group still owes"},
    {.key = "retention.max_entries", .type = CFG_U32, .offset = OFF(max_entries), .min = 0,
     .max = U32MAX, .def = "0", .reload = CFG_LIVE, .why = ROUND,
     .desc = "cap on the stream's length: acknowledged entries are trimmed oldest first to "
             "stay under it, and publishers are refused (or wait) when only unacknowledged "
             "ones are left; 0 = no cap. With `partitions` above 1 each partition keeps "
             "max_entries / partitions, rounded up"},
    {.key = "retention.max_bytes", .type = CFG_SIZE, .offset = OFF(max_bytes), .min = 0,
     .max = 1e15, .def = "0", .reload = CFG_LIVE, .why = ROUND,
     .desc = "cap on the stream's memory (MEMORY USAGE, sampled), handled like max_entries "
             "(shared by the partitions the same way); 0 = no cap"},
    {.key = "retention.on_full", .type = CFG_ENUM, .offset = OFF(on_full), .names = on_full_names,
     .values = on_full_values, .def = "reject", .reload = CFG_LIVE, .why = ROUND,
     .desc = "what a publisher gets at a cap that trimming cannot relieve: `reject` (a "
             "\"stream full\" error) or `block` (wait up to retention.block_timeout, then "
             "the error)"},
    {.key = "retention.block_timeout", .type = CFG_DURATION, .offset = OFF(block_timeout_ms),
     .min = 0, .max = 3600000, .def = "30s", .reload = CFG_LIVE, .why = ROUND,
     .desc = "longest wait of a publisher with on_full: block"},
    {.key = "retention.protect_groups", .type = CFG_STRLIST, .offset = OFF(protect_groups),
     .def = "all", .reload = CFG_LIVE, .why = ROUND,
     .desc = "`all`, or the consumer groups whose unread and unacknowledged entries trimming "
             "must never pass; a listed group that does not exist blocks trimming"},
    {.key = "retention.interval", .type = CFG_DURATION, .offset = OFF(interval_ms), .min = 100,
     .max = 3600000, .def = "1s", .reload = CFG_LIVE, .why = "from the next round",
     .desc = "how often the trimmer runs"},
    {.key = "retention.archive", .type = CFG_ENUM, .offset = OFF(archive), .names = archive_names,
     .values = archive_values, .def = "off", .reload = CFG_LIVE, .why = ROUND,
     .desc = "`postgres`: every entry is copied into PostgreSQL (`events_archive`) before it "
             "may be trimmed, and replay reads what the stream no longer holds from there; "
             "trimming waits while the archive cannot write; each partition's entries under "
             "its partition stream's name. Needs postgres.url; see "
             "[operations](operations.md#the-archive)"},
    {.key = "retention.archive_retention", .type = CFG_DURATION,
     .offset = OFF(archive_retention_ms), .min = 0, .max = 3650.0 * 86400000, .def = "30d",
     .reload = CFG_LIVE, .why = "the archiver runs its partition upkeep at once with the new "
                                "value (and hourly)",
     .desc = "archived entries older than this are dropped, a whole UTC day (partition) at a "
             "time; `0` keeps everything; see [storage](storage.md#the-archive)"},
};

const cfg_table_t retention_settings_table = {
    .module = "retention", .rows = rows, .n_rows = sizeof rows / sizeof rows[0], .check = check};
