/*
 * config_map — a plugin's config map (evbus_config_key_t rows in
 * <evbus/plugin.h>) and the check of an instance's config against it.
 *
 * It works on the JSON text init() would receive and knows nothing of
 * manifests: each problem goes to a callback with the key it concerns and
 * whether the key itself or its value is wrong, and the caller turns that
 * into a position (plugin_config_check() in plugin.h does, from the
 * cfg_instance_t) or into a plain message (plugin_instance_new()).  It does
 * not read values for the plugin and does not look inside nested objects
 * or arrays.
 *
 * Thread rules: pure functions over constant data; any thread.
 */
#ifndef EVBUS_HOST_CONFIG_MAP_H
#define EVBUS_HOST_CONFIG_MAP_H

#include <stddef.h>

#include <evbus/plugin.h>

/* What a problem is about, so the caller can pick its position. */
typedef enum config_map_at {
    CONFIG_MAP_AT_CONFIG = 0, /* the config as a whole: a required key is missing */
    CONFIG_MAP_AT_KEY,        /* the key: not in the map                         */
    CONFIG_MAP_AT_VALUE,      /* the key's value: wrong type or out of range      */
} config_map_at_t;

/* One problem.  `key` is NULL for CONFIG_MAP_AT_CONFIG; `msg` is complete
 * (e.g. "config.path: expected a string, got 12").  Both are valid only
 * during the call. */
typedef void (*config_map_report_fn)(void *arg, const char *key, config_map_at_t at,
                                     const char *msg);

/*
 * Checks the map itself, at load.  Without EVBUS_PLUGIN_F_CONFIG_MAP,
 * config_map and n_config_map must be zero (they were reserved slots).
 * With it, every row needs a unique non-empty key, a type made of known
 * EVBUS_CONFIG_* bits (ANY alone), enum_values (at least one non-empty
 * name) exactly when ENUM is set, bounds only for INT or NUMBER with
 * min <= max, and zero reserved slots.  0, or -1 with "<path>: ..." in err.
 */
int config_map_check_descriptor(const char *path, const evbus_plugin_descriptor_t *d,
                                char *err, size_t errlen);

/*
 * Checks config_json (NULL means "{}") of the instance named `instance`
 * against d's map; a descriptor without EVBUS_PLUGIN_F_CONFIG_MAP accepts
 * any object.  Calls report once per problem: the config's keys in their
 * order (unknown key, wrong type, out of range), then the missing required
 * keys in map order.  Returns the number of problems.  Text that is not a
 * JSON object is one problem at CONFIG_MAP_AT_CONFIG, whatever the map.
 */
size_t config_map_check(const evbus_plugin_descriptor_t *d, const char *instance,
                        const char *config_json, config_map_report_fn report, void *arg);

#endif /* EVBUS_HOST_CONFIG_MAP_H */
