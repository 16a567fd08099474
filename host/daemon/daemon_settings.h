/*
 * daemon_settings — what evbusd itself uses: where plugins and state live,
 * logging, stop and reload bounds.  Rows
 * in daemon_settings.c.
 */
#ifndef EVBUS_DAEMON_SETTINGS_H
#define EVBUS_DAEMON_SETTINGS_H

#include <stdint.h>

#include "config/settings.h"

/* In state_dir: what the running evbusd has in force (see evbusd's
 * write_running); read by `evbusd --check-config --diff-running` and
 * `evbusctl reload` / `config show`. */
#define EVBUS_RUNNING_FILE "evbusd-running.json"

typedef struct daemon_settings {
    char *plugin_dir;
    char *log_level;               /* debug|info|warn|error */
    char *log_format;              /* text|json (util/log.h) */
    char *state_dir;
    uint32_t shutdown_timeout_ms;
    uint32_t reload_drain_timeout_ms;
} daemon_settings_t;

extern const cfg_table_t daemon_settings_table;

#endif
