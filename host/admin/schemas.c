/*
 * schemas — the admin API's request schemas, embedded at build time from
 * host/admin/schemas/ (one JSON file per request body) (installed beside the event schemas for
 * readers, see docs/admin-api.md) and compiled once at start with evbus's
 * own JSON Schema validator.  The registry is read-only afterwards, so
 * every pool thread may validate with it.
 */
#include <stdio.h>
#include <string.h>

#include "admin/admin_internal.h"

extern const struct {
    const char *name;
    const char *text;
} admin_embedded_schemas[];
extern const size_t admin_embedded_schemas_count;

#define URI_PREFIX "https://evbus.dev/schemas/admin/"

int admin__schemas_load(admin_t *a, char *err, size_t errlen)
{
    js_options_t opts = {.format_assert = 1};
    a->schemas = js_registry_new(&opts);
    if (admin_embedded_schemas_count > sizeof a->schema_ptrs / sizeof a->schema_ptrs[0]) {
        snprintf(err, errlen, "admin: too many request schemas");
        return -1;
    }
    for (size_t i = 0; i < admin_embedded_schemas_count; i++) {
        char uri[256], e[512];
        snprintf(uri, sizeof uri, URI_PREFIX "%s", admin_embedded_schemas[i].name);
        json_error_t je;
        json_t *doc = json_loads(admin_embedded_schemas[i].text, 0, &je);
        const js_schema_t *s = NULL;
        if (!doc || js_registry_add(a->schemas, uri, doc, e, sizeof e) != 0 ||
            !(s = js_compile(a->schemas, uri, e, sizeof e))) {
            snprintf(err, errlen, "admin: request schema %s: %s", admin_embedded_schemas[i].name,
                     doc ? e : je.text);
            json_decref(doc);
            return -1;
        }
        json_decref(doc);
        a->schema_names[a->n_schemas] = admin_embedded_schemas[i].name;
        a->schema_ptrs[a->n_schemas++] = s;
    }
    return 0;
}

const js_schema_t *admin__schema(admin_t *a, const char *name)
{
    /* compiled at start; looked up here without touching the registry,
     * which is not meant for concurrent use */
    for (size_t i = 0; i < a->n_schemas; i++)
        if (strcmp(a->schema_names[i], name) == 0)
            return a->schema_ptrs[i];
    return NULL;
}

void admin__schemas_free(admin_t *a)
{
    js_registry_free(a->schemas);
    a->schemas = NULL;
}
