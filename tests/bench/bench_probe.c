/*
 * bench-probe — benchmark-only plugin (never installed) with two handlers
 * a manifest binds by name:
 *   "latency"  records now - benchsentus (the publisher's CLOCK_REALTIME in
 *              microseconds, a CloudEvents extension; see bench_event.h)
 *              into a preallocated array; events without it are ignored.
 *              At fini the sorted figures go to config `latency_file` as
 *              {"count","dropped","p50_us","p99_us","p999_us","max_us"}.
 *   "burn"     spins for config `burn_us` (default 50) microseconds of
 *              wall-clock time on the worker thread, for the scaling scenario.
 * Config: { latency_file: PATH, capacity: N (default 2000000), burn_us: N }.
 * Recording is lock-free (one relaxed fetch-add per event) so the probe
 * itself does not serialize the workers it measures.
 */
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <evbus/plugin.h>

typedef struct bench_probe {
    const evbus_host_api_t *api;
    char *latency_file;
    long long *lat_us; /* capacity slots */
    size_t capacity;
    atomic_size_t n;   /* slots claimed; may exceed capacity (then dropped) */
    long burn_us;
} bench_probe_t;

static long long probe_realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static int probe_init(const evbus_host_api_t *api, const char *config_json, void **state,
                      char *err, size_t errlen)
{
    json_t *cfg = json_loads(config_json, 0, NULL);
    json_t *lf = json_object_get(cfg, "latency_file");
    json_t *cap = json_object_get(cfg, "capacity");
    json_t *burn = json_object_get(cfg, "burn_us");
    if (!json_is_object(cfg) || (lf && !json_is_string(lf)) ||
        (cap && (!json_is_integer(cap) || json_integer_value(cap) < 1)) ||
        (burn && (!json_is_integer(burn) || json_integer_value(burn) < 0))) {
        snprintf(err, errlen, "config: latency_file must be a string, capacity a positive "
                              "integer, burn_us a non-negative integer");
        json_decref(cfg);
        return -1;
    }
    bench_probe_t *s = calloc(1, sizeof *s);
    if (s) {
        s->api = api;
        s->capacity = cap ? (size_t)json_integer_value(cap) : 2000000;
        s->burn_us = burn ? (long)json_integer_value(burn) : 50;
        s->latency_file = lf ? strdup(json_string_value(lf)) : NULL;
        s->lat_us = malloc(s->capacity * sizeof *s->lat_us);
    }
    json_decref(cfg);
    if (!s || !s->lat_us || (lf && !s->latency_file)) {
        snprintf(err, errlen, "out of memory");
        if (s) {
            free(s->lat_us);
            free(s->latency_file);
        }
        free(s);
        return -1;
    }
    atomic_init(&s->n, 0);
    *state = s;
    return 0;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* The value at quantile q of the sorted v[0..n). */
static long long quantile(const long long *v, size_t n, double q)
{
    size_t i = (size_t)(q * (double)n);
    return v[i < n ? i : n - 1];
}

static void probe_fini(void *state)
{
    bench_probe_t *s = state;
    size_t claimed = atomic_load(&s->n);
    size_t n = claimed < s->capacity ? claimed : s->capacity;
    if (s->latency_file) {
        FILE *f = fopen(s->latency_file, "w");
        if (f) {
            qsort(s->lat_us, n, sizeof *s->lat_us, cmp_ll);
            if (n == 0)
                fprintf(f, "{\"count\":0,\"dropped\":0}\n");
            else
                fprintf(f,
                        "{\"count\":%zu,\"dropped\":%zu,\"p50_us\":%lld,\"p99_us\":%lld,"
                        "\"p999_us\":%lld,\"max_us\":%lld}\n",
                        n, claimed - n, quantile(s->lat_us, n, 0.50),
                        quantile(s->lat_us, n, 0.99), quantile(s->lat_us, n, 0.999),
                        s->lat_us[n - 1]);
            fclose(f);
        }
    }
    free(s->lat_us);
    free(s->latency_file);
    free(s);
}

static evbus_result_t probe_latency(const evbus_event_t *ev, void *state)
{
    bench_probe_t *s = state;
    long long now = probe_realtime_us();
    const char *sent = s->api->event_attr(ev, "benchsentus");
    if (!sent)
        return EVBUS_OK;
    size_t i = atomic_fetch_add_explicit(&s->n, 1, memory_order_relaxed);
    if (i < s->capacity)
        s->lat_us[i] = now - strtoll(sent, NULL, 10);
    return EVBUS_OK;
}

static evbus_result_t probe_burn(const evbus_event_t *ev, void *state)
{
    (void)ev;
    bench_probe_t *s = state;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000 < s->burn_us);
    return EVBUS_OK;
}

static const evbus_subscriber_t probe_subscribers[] = {
    {.name = "latency", .pattern = "approval.**", .priority = 50, .handler = probe_latency},
    {.name = "burn", .pattern = "approval.**", .priority = 50, .handler = probe_burn},
};

static const evbus_plugin_descriptor_t probe_descriptor = {
    .abi_version = EVBUS_ABI_VERSION,
    .struct_size = sizeof(evbus_plugin_descriptor_t),
    .name = "bench-probe",
    .version = "1.0.0",
    .init = probe_init,
    .fini = probe_fini,
    .subscribers = probe_subscribers,
    .n_subscribers = 2,
};

EVBUS_PLUGIN_EXPORT const evbus_plugin_descriptor_t *evbus_plugin_descriptor(void)
{
    return &probe_descriptor;
}
