/*
 * keyed — a plugin for the per-key ordering tests (never installed).
 *
 * Subscriber "record" (pattern "**") appends one line per call to config
 * `out`:
 *   <partitionkey>\t<data.seq>\t<attempt>\t<start_us>\t<end_us>\t<result>\n
 * (start and end on CLOCK_MONOTONIC, so a test can tell whether two calls
 * of one key overlapped), and returns what data says:
 *   data.reject true        -> EVBUS_REJECT
 *   attempt <= data.fail    -> EVBUS_RETRY ("fail" times, then OK)
 *   otherwise               -> EVBUS_OK
 * Each call sleeps config `sleep_ms` (default 0) between start and end, so
 * concurrent calls of one key would show.  Each line is one O_APPEND write.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <evbus/plugin.h>

typedef struct keyed {
    const evbus_host_api_t *api;
    int fd;
    int sleep_ms;
} keyed_t;

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The host checked config_json against keyed_config_map. */
static int keyed_init(const evbus_host_api_t *api, const char *config_json, void **state,
                      char *err, size_t errlen)
{
    keyed_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->api = api;
    s->fd = -1;
    json_t *cfg = json_loads(config_json, 0, NULL);
    const char *out = json_string_value(json_object_get(cfg, "out"));
    s->sleep_ms = (int)json_integer_value(json_object_get(cfg, "sleep_ms"));
    int rc = 0;
    if (!(api->init_flags() & EVBUS_INIT_CHECK) &&
        (s->fd = open(out ? out : "", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) < 0) {
        snprintf(err, errlen, "%s: %s", out ? out : "(no out)", strerror(errno));
        rc = -1;
    }
    json_decref(cfg);
    if (rc != 0) {
        free(s);
        return -1;
    }
    *state = s;
    return 0;
}

static void keyed_fini(void *state)
{
    keyed_t *s = state;
    if (s->fd >= 0)
        close(s->fd);
    free(s);
}

static evbus_result_t keyed_record(const evbus_event_t *ev, void *state)
{
    keyed_t *s = state;
    const evbus_host_api_t *a = s->api;
    long long start = now_us();
    size_t dlen = 0;
    const char *djson = a->event_data_json(ev, &dlen);
    json_t *data = djson ? json_loadb(djson, dlen, 0, NULL) : NULL;
    long long seq = json_integer_value(json_object_get(data, "seq"));
    long long fail = json_integer_value(json_object_get(data, "fail"));
    int reject = json_is_true(json_object_get(data, "reject"));
    json_decref(data);
    const char *key = a->event_attr(ev, "partitionkey");
    int attempt = a->event_attempt(ev);
    evbus_result_t r = reject ? EVBUS_REJECT : attempt <= fail ? EVBUS_RETRY : EVBUS_OK;
    if (s->sleep_ms > 0)
        usleep((useconds_t)s->sleep_ms * 1000);
    char line[512];
    int n = snprintf(line, sizeof line, "%s\t%lld\t%d\t%lld\t%lld\t%s\n", key ? key : "-", seq,
                     attempt, start, now_us(),
                     r == EVBUS_OK ? "ok" : r == EVBUS_RETRY ? "retry" : "reject");
    if (n <= 0 || n >= (int)sizeof line || write(s->fd, line, (size_t)n) != n)
        return EVBUS_RETRY;
    return r;
}

static const evbus_subscriber_t keyed_subscribers[] = {
    {.name = "record", .pattern = "**", .priority = 100, .handler = keyed_record},
};

static const evbus_config_key_t keyed_config_map[] = {
    {.key = "out", .type = EVBUS_CONFIG_STRING, .required = 1,
     .description = "the file to record calls in"},
    {.key = "sleep_ms", .type = EVBUS_CONFIG_INT, .min = 0, .max = 10000,
     .description = "how long each call takes"},
};

static const evbus_plugin_descriptor_t keyed_descriptor = {
    .abi_version = EVBUS_ABI_VERSION,
    .struct_size = sizeof(evbus_plugin_descriptor_t),
    .name = "keyed",
    .version = "1.0.0",
    .flags = EVBUS_PLUGIN_F_CONFIG_MAP,
    .init = keyed_init,
    .fini = keyed_fini,
    .subscribers = keyed_subscribers,
    .n_subscribers = 1,
    .config_map = keyed_config_map,
    .n_config_map = sizeof keyed_config_map / sizeof keyed_config_map[0],
};

EVBUS_PLUGIN_EXPORT const evbus_plugin_descriptor_t *evbus_plugin_descriptor(void)
{
    return &keyed_descriptor;
}
