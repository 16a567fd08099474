/*
 * admin_settings — the admin HTTP endpoint (admin: { listen }).  Rows in
 * admin_settings.c.
 */
#ifndef EVBUS_ADMIN_SETTINGS_H
#define EVBUS_ADMIN_SETTINGS_H

#include "config/settings.h"

typedef struct admin_settings {
    char *listen; /* "host:port"; NULL = no endpoint */
} admin_settings_t;

extern const cfg_table_t admin_settings_table;

#endif
