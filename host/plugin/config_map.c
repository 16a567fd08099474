/*
 * config_map.c — checking plugin config maps and configs (see config_map.h).
 *
 * Messages name things the way an operator wrote them in YAML ("a
 * mapping", "a sequence", strings in single quotes) and follow the host's
 * own settings errors ("KEY: expected X, got Y", "KEY: must be between A
 * and B, got C"), with the key as "config.KEY".
 */
#include "plugin/config_map.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAP_TYPES                                                                          \
    (EVBUS_CONFIG_STRING | EVBUS_CONFIG_INT | EVBUS_CONFIG_NUMBER | EVBUS_CONFIG_BOOL |           \
     EVBUS_CONFIG_ENUM | EVBUS_CONFIG_OBJECT | EVBUS_CONFIG_ARRAY | EVBUS_CONFIG_ANY)

/* ---- the map itself ---------------------------------------------------- */

static int config_map_check_row(const char *path, const evbus_config_key_t *k, char *err,
                                size_t errlen)
{
    if (k->type == 0 || (k->type & ~(uint32_t)CONFIG_MAP_TYPES)) {
        snprintf(err, errlen, "%s: config key '%s': type 0x%x is not a set of EVBUS_CONFIG_* bits",
                 path, k->key, k->type);
        return -1;
    }
    if ((k->type & EVBUS_CONFIG_ANY) && k->type != EVBUS_CONFIG_ANY) {
        snprintf(err, errlen, "%s: config key '%s': EVBUS_CONFIG_ANY combines with no other type",
                 path, k->key);
        return -1;
    }
    if ((k->type & EVBUS_CONFIG_ENUM) && (!k->enum_values || !k->enum_values[0])) {
        snprintf(err, errlen, "%s: config key '%s': EVBUS_CONFIG_ENUM needs enum_values", path,
                 k->key);
        return -1;
    }
    if (!(k->type & EVBUS_CONFIG_ENUM) && k->enum_values) {
        snprintf(err, errlen, "%s: config key '%s': enum_values without EVBUS_CONFIG_ENUM", path,
                 k->key);
        return -1;
    }
    for (size_t i = 0; k->enum_values && k->enum_values[i]; i++) {
        if (!k->enum_values[i][0]) {
            snprintf(err, errlen, "%s: config key '%s': enum value %zu is empty", path, k->key, i);
            return -1;
        }
    }
    bool bounded = k->min != 0 || k->max != 0;
    if (bounded && !(k->type & (EVBUS_CONFIG_INT | EVBUS_CONFIG_NUMBER))) {
        snprintf(err, errlen,
                 "%s: config key '%s': min and max apply only to EVBUS_CONFIG_INT or "
                 "EVBUS_CONFIG_NUMBER",
                 path, k->key);
        return -1;
    }
    if (k->min > k->max) {
        snprintf(err, errlen, "%s: config key '%s': min %" PRId64 " is above max %" PRId64, path,
                 k->key, k->min, k->max);
        return -1;
    }
    for (size_t i = 0; i < sizeof k->reserved / sizeof k->reserved[0]; i++) {
        if (k->reserved[i]) {
            snprintf(err, errlen, "%s: config key '%s': reserved[%zu] is not zero", path, k->key,
                     i);
            return -1;
        }
    }
    return 0;
}

int config_map_check_descriptor(const char *path, const evbus_plugin_descriptor_t *d,
                                char *err, size_t errlen)
{
    if (!(d->flags & EVBUS_PLUGIN_F_CONFIG_MAP)) {
        if (d->config_map || d->n_config_map) {
            snprintf(err, errlen, "%s: config_map is set but flags lack EVBUS_PLUGIN_F_CONFIG_MAP",
                     path);
            return -1;
        }
        return 0;
    }
    if (d->n_config_map > 0 && !d->config_map) {
        snprintf(err, errlen, "%s: n_config_map is %zu but config_map is NULL", path,
                 d->n_config_map);
        return -1;
    }
    for (size_t i = 0; i < d->n_config_map; i++) {
        const evbus_config_key_t *k = &d->config_map[i];
        if (!k->key || !k->key[0]) {
            snprintf(err, errlen, "%s: config key %zu has no name", path, i);
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(d->config_map[j].key, k->key) == 0) {
                snprintf(err, errlen, "%s: config key '%s' is declared twice (%zu and %zu)",
                         path, k->key, j, i);
                return -1;
            }
        }
        if (config_map_check_row(path, k, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* ---- a config against the map ------------------------------------------ */

static void config_map_append(char *out, size_t len, const char *s)
{
    size_t used = strlen(out);
    if (used < len)
        snprintf(out + used, len - used, "%s", s);
}

/* How a value is shown after "got". */
static const char *config_map_describe(const json_t *v, char *buf, size_t len)
{
    if (json_is_object(v))
        return "a mapping";
    if (json_is_array(v))
        return "a sequence";
    if (json_is_string(v)) {
        snprintf(buf, len, "'%.200s'", json_string_value(v));
        return buf;
    }
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    snprintf(buf, len, "%s", text ? text : "?");
    free(text);
    return buf;
}

/* "an integer or one of line|none" for the types of row k. */
static const char *config_map_expected(const evbus_config_key_t *k, char *buf, size_t len)
{
    static const struct {
        uint32_t bit;
        const char *text;
    } names[] = {
        {EVBUS_CONFIG_STRING, "a string"},   {EVBUS_CONFIG_INT, "an integer"},
        {EVBUS_CONFIG_NUMBER, "a number"},   {EVBUS_CONFIG_BOOL, "true or false"},
        {EVBUS_CONFIG_ENUM, NULL},           {EVBUS_CONFIG_OBJECT, "a mapping"},
        {EVBUS_CONFIG_ARRAY, "a sequence"},
    };
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(k->type & names[i].bit))
            continue;
        if (buf[0])
            config_map_append(buf, len, " or ");
        if (names[i].text) {
            config_map_append(buf, len, names[i].text);
            continue;
        }
        config_map_append(buf, len, "one of ");
        for (size_t e = 0; k->enum_values[e]; e++) {
            if (e)
                config_map_append(buf, len, "|");
            config_map_append(buf, len, k->enum_values[e]);
        }
    }
    return buf;
}

static bool config_map_in_enum(const evbus_config_key_t *k, const char *s)
{
    for (size_t e = 0; k->enum_values[e]; e++)
        if (strcmp(k->enum_values[e], s) == 0)
            return true;
    return false;
}

/* Whether v has one of k's types (bounds aside). */
static bool config_map_type_fits(const evbus_config_key_t *k, const json_t *v)
{
    uint32_t t = k->type;
    return (t & EVBUS_CONFIG_ANY) || ((t & EVBUS_CONFIG_STRING) && json_is_string(v)) ||
           ((t & EVBUS_CONFIG_ENUM) && json_is_string(v) &&
            config_map_in_enum(k, json_string_value(v))) ||
           ((t & EVBUS_CONFIG_INT) && json_is_integer(v)) ||
           ((t & EVBUS_CONFIG_NUMBER) && json_is_number(v)) ||
           ((t & EVBUS_CONFIG_BOOL) && json_is_boolean(v)) ||
           ((t & EVBUS_CONFIG_OBJECT) && json_is_object(v)) ||
           ((t & EVBUS_CONFIG_ARRAY) && json_is_array(v));
}

/* A number of a bounded INT or NUMBER row outside [min, max]. */
static bool config_map_out_of_range(const evbus_config_key_t *k, const json_t *v)
{
    if ((k->min == 0 && k->max == 0) || !(k->type & (EVBUS_CONFIG_INT | EVBUS_CONFIG_NUMBER)) ||
        !json_is_number(v))
        return false;
    if (json_is_integer(v))
        return json_integer_value(v) < k->min || json_integer_value(v) > k->max;
    double d = json_real_value(v);
    return d < (double)k->min || d > (double)k->max;
}

static void config_map_range_text(const evbus_config_key_t *k, char *buf, size_t len)
{
    if (k->max == INT64_MAX)
        snprintf(buf, len, "at least %" PRId64, k->min);
    else if (k->min == INT64_MIN)
        snprintf(buf, len, "at most %" PRId64, k->max);
    else
        snprintf(buf, len, "between %" PRId64 " and %" PRId64, k->min, k->max);
}

static const evbus_config_key_t *config_map_find(const evbus_plugin_descriptor_t *d,
                                                 const char *key)
{
    for (size_t i = 0; i < d->n_config_map; i++)
        if (strcmp(d->config_map[i].key, key) == 0)
            return &d->config_map[i];
    return NULL;
}

static void config_map_unknown(const evbus_plugin_descriptor_t *d, const char *instance,
                               const char *key, char *msg, size_t len)
{
    if (d->n_config_map == 0) {
        snprintf(msg, len,
                 "unknown key '%s' in config of plugin instance '%s' (plugin '%s' takes no "
                 "config)",
                 key, instance, d->name);
        return;
    }
    char valid[512] = "";
    for (size_t i = 0; i < d->n_config_map; i++) {
        if (i)
            config_map_append(valid, sizeof valid, ", ");
        config_map_append(valid, sizeof valid, d->config_map[i].key);
    }
    snprintf(msg, len, "unknown key '%s' in config of plugin instance '%s' (valid: %s)", key,
             instance, valid);
}

size_t config_map_check(const evbus_plugin_descriptor_t *d, const char *instance,
                        const char *config_json, config_map_report_fn report, void *arg)
{
    char msg[1024];
    json_t *cfg = json_loads(config_json ? config_json : "{}", JSON_DECODE_ANY, NULL);
    if (!json_is_object(cfg)) {
        snprintf(msg, sizeof msg, "config of plugin instance '%s' is not a JSON object",
                 instance);
        report(arg, NULL, CONFIG_MAP_AT_CONFIG, msg);
        json_decref(cfg);
        return 1;
    }
    size_t problems = 0;
    if (!(d->flags & EVBUS_PLUGIN_F_CONFIG_MAP))
        goto out;
    const char *key;
    json_t *v;
    json_object_foreach(cfg, key, v)
    {
        const evbus_config_key_t *k = config_map_find(d, key);
        char want[512], got[256], range[128];
        if (!k) {
            config_map_unknown(d, instance, key, msg, sizeof msg);
            report(arg, key, CONFIG_MAP_AT_KEY, msg);
        } else if (!config_map_type_fits(k, v)) {
            snprintf(msg, sizeof msg, "config.%s: expected %s, got %s", key,
                     config_map_expected(k, want, sizeof want),
                     config_map_describe(v, got, sizeof got));
            report(arg, key, CONFIG_MAP_AT_VALUE, msg);
        } else if (config_map_out_of_range(k, v)) {
            config_map_range_text(k, range, sizeof range);
            snprintf(msg, sizeof msg, "config.%s: must be %s, got %s", key, range,
                     config_map_describe(v, got, sizeof got));
            report(arg, key, CONFIG_MAP_AT_VALUE, msg);
        } else {
            continue;
        }
        problems++;
    }
    for (size_t i = 0; i < d->n_config_map; i++) {
        const evbus_config_key_t *k = &d->config_map[i];
        if (!k->required || json_object_get(cfg, k->key))
            continue;
        if (k->description)
            snprintf(msg, sizeof msg,
                     "missing required key '%s' in config of plugin instance '%s' (%s)", k->key,
                     instance, k->description);
        else
            snprintf(msg, sizeof msg, "missing required key '%s' in config of plugin instance '%s'",
                     k->key, instance);
        report(arg, NULL, CONFIG_MAP_AT_CONFIG, msg);
        problems++;
    }
out:
    json_decref(cfg);
    return problems;
}
