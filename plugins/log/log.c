/*
 * log — writes one log line per handled event through the host's logger.
 *
 * Config (logp_config_map, checked by the host): level:
 * debug|info|warn|error (default info); format: a template
 * where {id} {type} {source} {tenant} {time} {correlation} {stream_id}
 * {attempt} {version} and {data} are replaced by the event's values (absent
 * ones by "-"); the default is "event {type} id={id} tenant={tenant}
 * attempt={attempt}".  Stateless apart from the parsed config, so handlers
 * need no lock.  It never fails an event.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evbus/plugin.h>

#define LOGP_DEFAULT_FORMAT "event {type} id={id} tenant={tenant} attempt={attempt}"

typedef struct logp {
    evbus_log_level_t level;
    char *format;
} logp_t;

static const char *const logp_levels[] = {"debug", "info", "warn", "error", NULL};

/* The host checked config_json against logp_config_map. */
static int logp_init(const evbus_host_api_t *api, const char *config_json, void **state,
                     char *err, size_t errlen)
{
    (void)api;
    json_t *cfg = json_loads(config_json, 0, NULL);
    logp_t *s = calloc(1, sizeof *s);
    const char *fmt = json_string_value(json_object_get(cfg, "format"));
    if (!s || !(s->format = strdup(fmt ? fmt : LOGP_DEFAULT_FORMAT))) {
        snprintf(err, errlen, "out of memory");
        free(s);
        json_decref(cfg);
        return -1;
    }
    s->level = EVBUS_LOG_INFO;
    const char *level = json_string_value(json_object_get(cfg, "level"));
    for (int i = 0; level && logp_levels[i]; i++)
        if (strcmp(level, logp_levels[i]) == 0)
            s->level = (evbus_log_level_t)i;
    json_decref(cfg);
    *state = s;
    return 0;
}

static void logp_fini(void *state)
{
    logp_t *s = state;
    free(s->format);
    free(s);
}

/* The value of one {placeholder}, printed into tmp when it is a number. */
static const char *logp_value(const evbus_host_api_t *a, const evbus_event_t *ev,
                              const char *key, size_t klen, char *tmp, size_t tmplen,
                              size_t *vlen)
{
    const char *v = NULL;
#define LOGP_KEY(k) (klen == strlen(k) && memcmp(key, k, klen) == 0)
    if (LOGP_KEY("id"))
        v = a->event_id(ev);
    else if (LOGP_KEY("type"))
        v = a->event_type(ev);
    else if (LOGP_KEY("source"))
        v = a->event_source(ev);
    else if (LOGP_KEY("tenant"))
        v = a->event_tenant(ev);
    else if (LOGP_KEY("time"))
        v = a->event_time(ev);
    else if (LOGP_KEY("correlation"))
        v = a->event_correlation_id(ev);
    else if (LOGP_KEY("stream_id"))
        v = a->event_stream_id(ev);
    else if (LOGP_KEY("attempt") || LOGP_KEY("version")) {
        int num = LOGP_KEY("attempt") ? a->event_attempt(ev) : a->event_schema_version(ev);
        snprintf(tmp, tmplen, "%d", num);
        v = tmp;
    } else if (LOGP_KEY("data")) {
        v = a->event_data_json(ev, vlen);
        if (v)
            return v;
    } else {
        return NULL;
    }
#undef LOGP_KEY
    if (!v)
        v = "-";
    *vlen = strlen(v);
    return v;
}

static evbus_result_t logp_handle(const evbus_host_api_t *api, const evbus_event_t *ev,
                                  void *state)
{
    logp_t *s = state;
    char line[4096];
    size_t n = 0;
    for (const char *p = s->format; *p && n < sizeof line - 1;) {
        const char *close = *p == '{' ? strchr(p, '}') : NULL;
        char tmp[32];
        size_t vlen = 0;
        const char *v = close ? logp_value(api, ev, p + 1, (size_t)(close - p - 1), tmp,
                                           sizeof tmp, &vlen)
                              : NULL;
        if (!v) {
            line[n++] = *p++;
            continue;
        }
        if (vlen > sizeof line - 1 - n)
            vlen = sizeof line - 1 - n;
        memcpy(line + n, v, vlen);
        n += vlen;
        p = close + 1;
    }
    line[n] = '\0';
    api->log(s->level, "%s", line);
    return EVBUS_OK;
}

static const evbus_subscriber_t logp_subscribers[] = {
    EVBUS_SUBSCRIBER("main", "**", 100, logp_handle),
};

static const evbus_config_key_t logp_config_map[] = {
    {.key = "level", .type = EVBUS_CONFIG_ENUM, .enum_values = logp_levels,
     .description = "the level of every line"},
    {.key = "format", .type = EVBUS_CONFIG_STRING,
     .description = "the line, with {placeholders} for the event's values"},
};

EVBUS_PLUGIN("log", "1.0.0", EVBUS_PLUGIN_F_KEEP_STATE | EVBUS_PLUGIN_F_CONFIG_MAP,
             .init = logp_init, .fini = logp_fini, EVBUS_SUBSCRIBERS(logp_subscribers),
             EVBUS_CONFIG_MAP(logp_config_map));
