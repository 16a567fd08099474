/*
 * admin_settings — the rows of admin: { ... }.
 */
#include "admin/admin_settings.h"

#include <stddef.h>

#include "config/config.h"

static const cfg_setting_t rows[] = {
    {.key = "admin.listen", .type = CFG_LISTEN, .offset = offsetof(evbus_config_t, admin.listen),
     .def_doc = "none", .reload = CFG_RESTART, .why = "the socket is bound once, at start",
     .flags = CFG_F_OPTIONAL, .desc = "admin HTTP endpoint `host:port`; absent = no endpoint"},
};

const cfg_table_t admin_settings_table = {
    .module = "admin", .rows = rows, .n_rows = sizeof rows / sizeof rows[0], .check = NULL};
