/*
 * store_settings — PostgreSQL, the metadata writer and replay jobs
 * (postgres: {...}, replay: {...}).  Rows in store_settings.c.
 */
#ifndef EVBUS_STORE_SETTINGS_H
#define EVBUS_STORE_SETTINGS_H

#include <stdbool.h>
#include <stdint.h>

#include "config/settings.h"

typedef struct store_settings {
    char *postgres_url;            /* NULL = no PostgreSQL */
    bool migrate_on_start;
    bool metadata_enabled;
    uint32_t metadata_queue_size;
    uint32_t metadata_batch_size;
    uint32_t metadata_flush_ms;
    uint64_t metadata_retention_ms;     /* 0 = keep everything */
    uint32_t metadata_partitions_ahead; /* days */
    uint32_t replay_max_range_s;
    uint32_t replay_keep_completed;
    uint32_t replay_keep_failed;
    uint32_t replay_lease_ms;
    uint32_t replay_chunk;
} store_settings_t;

extern const cfg_table_t store_settings_table;

#endif
