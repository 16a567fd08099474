/*
 * daemon_settings — the rows evbusd reads itself.
 */
#include "daemon/daemon_settings.h"

#include <stddef.h>

#include "config/config.h"
#include "evbus_build_config.h"

#define OFF(f) offsetof(evbus_config_t, daemon.f)
#define U32MAX 4294967295.0

static const char *const level_names[] = {"debug", "info", "warn", "error", NULL};
static const char *const format_names[] = {"text", "json", NULL};

static const cfg_setting_t rows[] = {
    {.key = "plugin_dir", .type = CFG_PATH, .offset = OFF(plugin_dir), .def = EVBUS_PLUGIN_DIR,
     .def_doc = "build's `EVBUS_PLUGIN_DIR`", .reload = CFG_LIVE,
     .why = "plugins are resolved for each generation", .flags = CFG_F_EMPTY_DEFAULT,
     .desc = "where bare plugin names are looked up; an empty value means the default"},
    {.key = "log_level", .type = CFG_STRING, .offset = OFF(log_level), .names = level_names,
     .def = "info", .reload = CFG_LIVE, .why = "when the new generation goes live",
     .desc = "log threshold"},
    {.key = "log.format", .type = CFG_STRING, .offset = OFF(log_format), .names = format_names,
     .def = "text", .reload = CFG_LIVE, .why = "from the first line after the reload",
     .desc = "`text`: `TIME LEVEL [component] message` lines; `json`: one object per line "
             "with time, level, component, message and, for an event, event_id, type, tenant "
             "and handler (docs/operations.md)"},
    {.key = "state_dir", .type = CFG_PATH, .offset = OFF(state_dir), .def = "/var/lib/evbus",
     .reload = CFG_RESTART,
     .why = "holds the pidfile and the private plugin copies the running generation uses",
     .flags = CFG_F_EMPTY_DEFAULT,
     .desc = "pidfile, private plugin copies, archives; made 0700 when missing, refused "
             "unless owned by evbusd's user and not writable by group or others; an empty "
             "value means the default"},
    {.key = "shutdown_timeout_ms", .type = CFG_U32, .offset = OFF(shutdown_timeout_ms), .min = 1,
     .max = U32MAX, .def = "10000", .reload = CFG_LIVE, .why = "at the next stop",
     .desc = "bound on a graceful stop"},
    {.key = "reload.drain_timeout_ms", .type = CFG_U32, .offset = OFF(reload_drain_timeout_ms),
     .min = 0, .max = U32MAX, .def = "5000", .reload = CFG_LIVE,
     .why = "bounds the drain of the generation this reload replaces",
     .desc = "bound on draining the old generation on reload"},
};

const cfg_table_t daemon_settings_table = {
    .module = "daemon", .rows = rows, .n_rows = sizeof rows / sizeof rows[0], .check = NULL};
