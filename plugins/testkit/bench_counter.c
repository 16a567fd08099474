/*
 * bench-counter — the cheapest possible handlers, for benchmarks that
 * measure the host's own overhead.  Three subscribers on "approval.**" at
 * priorities 1, 10 and 100 only increment a relaxed atomic counter; config
 * `report_file` (optional, the only key of its config map) receives the
 * final count ("<n>\n") at fini, except after a check.
 */
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evbus/plugin.h>

typedef struct bench_counter {
    atomic_ullong count;
    char *report_file; /* NULL on a check (EVBUS_INIT_CHECK): no report */
} bench_counter_t;

/* The host checked config_json against bench_config_map. */
static int bench_init(const evbus_host_api_t *api, const char *config_json, void **state,
                      char *err, size_t errlen)
{
    json_t *cfg = json_loads(config_json, 0, NULL);
    const char *report_file = json_string_value(json_object_get(cfg, "report_file"));
    if (api->init_flags() & EVBUS_INIT_CHECK)
        report_file = NULL;
    bench_counter_t *s = calloc(1, sizeof *s);
    if (!s || (report_file && !(s->report_file = strdup(report_file)))) {
        snprintf(err, errlen, "out of memory");
        free(s);
        json_decref(cfg);
        return -1;
    }
    json_decref(cfg);
    atomic_init(&s->count, 0);
    *state = s;
    return 0;
}

static void bench_fini(void *state)
{
    bench_counter_t *s = state;
    if (s->report_file) {
        FILE *f = fopen(s->report_file, "w");
        if (f) {
            fprintf(f, "%llu\n", (unsigned long long)atomic_load(&s->count));
            fclose(f);
        }
    }
    free(s->report_file);
    free(s);
}

static evbus_result_t bench_count(const evbus_event_t *ev, void *state)
{
    (void)ev;
    bench_counter_t *s = state;
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    return EVBUS_OK;
}

static const evbus_subscriber_t bench_subscribers[] = {
    {.name = "p1", .pattern = "approval.**", .priority = 1, .handler = bench_count},
    {.name = "p10", .pattern = "approval.**", .priority = 10, .handler = bench_count},
    {.name = "p100", .pattern = "approval.**", .priority = 100, .handler = bench_count},
};

static const evbus_config_key_t bench_config_map[] = {
    {.key = "report_file", .type = EVBUS_CONFIG_STRING,
     .description = "receives the final count at fini"},
};

static const evbus_plugin_descriptor_t bench_descriptor = {
    .abi_version = EVBUS_ABI_VERSION,
    .struct_size = sizeof(evbus_plugin_descriptor_t),
    .name = "bench-counter",
    .version = "1.0.0",
    .flags = EVBUS_PLUGIN_F_CONFIG_MAP,
    .init = bench_init,
    .fini = bench_fini,
    .subscribers = bench_subscribers,
    .n_subscribers = 3,
    .config_map = bench_config_map,
    .n_config_map = 1,
};

EVBUS_PLUGIN_EXPORT const evbus_plugin_descriptor_t *evbus_plugin_descriptor(void)
{
    return &bench_descriptor;
}
