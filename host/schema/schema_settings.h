/*
 * schema_settings — where the schema catalog comes from and what a schema
 * failure does (schemas: { dir, mode, unknown_type, format_assert }).
 * Rows in schema_settings.c.  Every row is live: the catalog is compiled
 * into each generation.
 */
#ifndef EVBUS_SCHEMA_SETTINGS_H
#define EVBUS_SCHEMA_SETTINGS_H

#include <stdbool.h>

#include "config/settings.h"

typedef enum schema_mode {
    SCHEMA_MODE_OFF = 0,
    SCHEMA_MODE_ADVISORY = 1,
    SCHEMA_MODE_ENFORCE = 2,
} schema_mode_t;

/* What happens to an event whose type has no schema file. */
typedef enum schema_unknown {
    SCHEMA_UNKNOWN_ALLOW = 0, /* deliver (default) */
    SCHEMA_UNKNOWN_REJECT = 1 /* dead-letter with reason "no_schema" */
} schema_unknown_t;

typedef struct schema_settings {
    char *dir;
    int mode;          /* schema_mode_t */
    int unknown;       /* schema_unknown_t */
    bool format_assert;
} schema_settings_t;

/* The mode names, shared with a subscription's schema_mode. */
extern const char *const schema_mode_names[];
extern const int schema_mode_values[];

extern const cfg_table_t schema_settings_table;

#endif
