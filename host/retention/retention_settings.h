/*
 * retention_settings — how long and how much of the event stream Redis
 * keeps (retention: { max_age, max_entries, max_bytes, on_full,
 * protect_groups, archive, ... }).  Rows in retention_settings.c; every row
 * is live: the trimmer reads them each round and publishes the limits to
 * publishers through the policy hash (see retention.h), and hands the
 * archive's to the archiver (retention_archive.h).
 */
#ifndef EVBUS_RETENTION_SETTINGS_H
#define EVBUS_RETENTION_SETTINGS_H

#include <stdint.h>

#include "config/settings.h"

typedef enum retention_on_full { RETENTION_REJECT = 0, RETENTION_BLOCK = 1 } retention_on_full_t;

/* Where entries go before they are trimmed: nowhere, or events_archive. */
typedef enum retention_archive_mode {
    RETENTION_ARCHIVE_OFF = 0,
    RETENTION_ARCHIVE_POSTGRES = 1,
} retention_archive_mode_t;

typedef struct retention_settings {
    uint64_t max_age_ms;     /* acknowledged entries older than this go; 0 = no age limit */
    uint32_t max_entries;    /* 0 = no limit */
    uint64_t max_bytes;      /* 0 = no limit */
    int on_full;             /* retention_on_full_t */
    uint64_t block_timeout_ms; /* on_full: block: the longest a publisher waits */
    char *protect_groups;    /* "all" or "g1,g2" */
    uint64_t interval_ms;    /* trimmer period */
    int archive;             /* retention_archive_mode_t */
    uint64_t archive_retention_ms; /* archived entries older than this go; 0 = keep all */
} retention_settings_t;

extern const cfg_table_t retention_settings_table;

#endif
