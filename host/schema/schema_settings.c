/*
 * schema_settings — the rows of schemas: { ... }.  All live: each
 * generation compiles its own catalog.
 */
#include "schema/schema_settings.h"

#include <stddef.h>

#include "config/config.h"
#include "evbus_build_config.h"

#define OFF(f) offsetof(evbus_config_t, schema.f)

const char *const schema_mode_names[] = {"off", "advisory", "enforce", NULL};
const int schema_mode_values[] = {SCHEMA_MODE_OFF, SCHEMA_MODE_ADVISORY, SCHEMA_MODE_ENFORCE};
static const char *const unknown_names[] = {"allow", "reject", NULL};
static const int unknown_values[] = {SCHEMA_UNKNOWN_ALLOW, SCHEMA_UNKNOWN_REJECT};

static const char GEN[] = "for events dispatched with the new generation";

static const cfg_setting_t rows[] = {
    {.key = "schemas.dir", .type = CFG_PATH, .offset = OFF(dir), .def = EVBUS_SCHEMA_DIR,
     .def_doc = "build's `EVBUS_SCHEMA_DIR`", .reload = CFG_LIVE,
     .why = "the catalog is compiled into each generation", .flags = CFG_F_EMPTY_DEFAULT,
     .desc = "JSON Schema catalog; an empty value means the default"},
    {.key = "schemas.mode", .type = CFG_ENUM, .offset = OFF(mode), .names = schema_mode_names,
     .values = schema_mode_values, .def = "enforce", .reload = CFG_LIVE, .why = GEN,
     .desc = "what a schema failure does"},
    {.key = "schemas.unknown_type", .type = CFG_ENUM, .offset = OFF(unknown),
     .names = unknown_names, .values = unknown_values, .def = "allow", .reload = CFG_LIVE,
     .why = GEN, .desc = "events whose type has no schema: deliver, or dead-letter (`no_schema`)"},
    {.key = "schemas.format_assert", .type = CFG_BOOL, .offset = OFF(format_assert),
     .def = "true", .reload = CFG_LIVE, .why = "the catalog is compiled into each generation",
     .desc = "check `format` keywords"},
};

const cfg_table_t schema_settings_table = {
    .module = "schema", .rows = rows, .n_rows = sizeof rows / sizeof rows[0], .check = NULL};
