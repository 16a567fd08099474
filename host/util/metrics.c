/*
 * metrics — storage and Prometheus text rendering; see metrics.h.
 *
 * Writers on the dispatch path only do relaxed atomic adds into arrays
 * found by index; everything that needs a name (slot lookup, tenant label
 * lists) happens on the control thread, and rendering only reads.  This
 * file does not decide what is counted: dispatch and the engine do.
 */
#include "util/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evbus_build_config.h"
#include "util/log.h"

evbus_metrics_t g_metrics;

metrics_sampled_t g_sampled = {
#define X(field, name, scale, help) .field = METRICS_UNSET,
    METRICS_SAMPLED(X)
#undef X
};

/* ---- histograms ----------------------------------------------------------- */

static const int64_t duration_bounds[] = METRICS_DURATION_BOUNDS_MS;
static const int64_t latency_bounds[] = METRICS_LATENCY_BOUNDS_MS;
#define N_DURATION (sizeof duration_bounds / sizeof duration_bounds[0])
#define N_LATENCY (sizeof latency_bounds / sizeof latency_bounds[0])
_Static_assert(N_DURATION <= METRICS_HIST_MAX_BOUNDS, "too many duration buckets");
_Static_assert(N_LATENCY <= METRICS_HIST_MAX_BOUNDS, "too many latency buckets");

static metrics_hist_t latency;

static size_t bucket_of(const int64_t *bounds, size_t n, int64_t ms)
{
    size_t i = 0;
    while (i < n && ms > bounds[i])
        i++;
    return i;
}

size_t metrics_latency_bucket(int64_t ms) { return bucket_of(latency_bounds, N_LATENCY, ms); }

void metrics_latency_add(const uint64_t *counts, uint64_t sum_ms)
{
    for (size_t i = 0; i <= N_LATENCY; i++)
        if (counts[i])
            atomic_fetch_add_explicit(&latency.bucket[i], counts[i], memory_order_relaxed);
    atomic_fetch_add_explicit(&latency.sum_ms, sum_ms, memory_order_relaxed);
}

/* ---- handler slots ------------------------------------------------------- */

typedef struct handler_slot {
    char name[128];
    atomic_uint_fast64_t live_gen;
    atomic_uint_fast64_t outcome[METRICS_MAX_TENANT_LABELS + 1][METRICS_N_OUTCOMES];
    metrics_hist_t duration;
} handler_slot_t;

/* slot 0 is "(overflow)"; names are written before n_slots is raised
 * (release), so a reader never sees a half-written name */
static handler_slot_t slots[METRICS_MAX_HANDLERS];
static atomic_uint n_slots;
static bool overflow_warned;

const char *metrics_outcome_name(metrics_outcome_t o)
{
    static const char *const names[] = {
#define X(id, name) name,
        METRICS_OUTCOMES(X)
#undef X
    };
    return (unsigned)o < METRICS_N_OUTCOMES ? names[o] : NULL;
}

uint16_t metrics_handler_slot(const char *name)
{
    unsigned n = atomic_load_explicit(&n_slots, memory_order_acquire);
    if (n == 0) {
        snprintf(slots[0].name, sizeof slots[0].name, "(overflow)");
        n = 1;
        atomic_store_explicit(&n_slots, n, memory_order_release);
    }
    for (unsigned i = 1; i < n; i++)
        if (strcmp(slots[i].name, name) == 0)
            return (uint16_t)i;
    if (n == METRICS_MAX_HANDLERS) {
        if (!overflow_warned)
            log_warn("metrics", "more than %d handler names: %s and later ones are counted as "
                     "handler=\"(overflow)\"", METRICS_MAX_HANDLERS - 1, name);
        overflow_warned = true;
        return 0;
    }
    snprintf(slots[n].name, sizeof slots[n].name, "%s", name);
    atomic_store_explicit(&n_slots, n + 1, memory_order_release);
    return (uint16_t)n;
}

void metrics_handler_set_live(uint16_t slot, uint64_t gen)
{
    atomic_store_explicit(&slots[slot].live_gen, gen, memory_order_relaxed);
}

void metrics_handler_outcome(uint16_t slot, unsigned tenant_label, metrics_outcome_t o)
{
    atomic_fetch_add_explicit(&slots[slot].outcome[tenant_label][o], 1, memory_order_relaxed);
}

void metrics_handler_duration_ms(uint16_t slot, int64_t ms)
{
    if (ms < 0)
        ms = 0;
    metrics_hist_t *h = &slots[slot].duration;
    atomic_fetch_add_explicit(&h->bucket[bucket_of(duration_bounds, N_DURATION, ms)], 1,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ms, (uint64_t)ms, memory_order_relaxed);
}

void metrics_handler_read(uint16_t slot, metrics_handler_counts_t *out)
{
    memset(out, 0, sizeof *out);
    const handler_slot_t *s = &slots[slot];
    for (unsigned t = 0; t <= METRICS_MAX_TENANT_LABELS; t++)
        for (unsigned o = 0; o < METRICS_N_OUTCOMES; o++)
            out->outcome[o] += atomic_load_explicit(&s->outcome[t][o], memory_order_relaxed);
    for (size_t i = 0; i <= N_DURATION; i++)
        out->duration_count += atomic_load_explicit(&s->duration.bucket[i], memory_order_relaxed);
    out->duration_sum_ms = atomic_load_explicit(&s->duration.sum_ms, memory_order_relaxed);
}

/* ---- tenant labels -------------------------------------------------------- */

/* Names only ever added (index i is label i + 1, so a tenant keeps its
 * counters when a reload drops and re-adds it); `active` says which are in
 * the list in force.  One writer (the control thread). */
static char tenant_names[METRICS_MAX_TENANT_LABELS][128];
static atomic_uint n_tenant_names;
static _Atomic uint64_t tenant_active; /* bit i: tenant_names[i] is in the list */
_Static_assert(METRICS_MAX_TENANT_LABELS <= 64, "tenant_active is a 64-bit mask");

void metrics_set_tenant_labels(const char *csv)
{
    uint64_t active = 0;
    unsigned n = atomic_load_explicit(&n_tenant_names, memory_order_relaxed);
    for (const char *p = csv; p && *p;) {
        size_t len = strcspn(p, ",");
        if (len > 0 && len < sizeof tenant_names[0]) {
            unsigned i = 0;
            while (i < n && !(strlen(tenant_names[i]) == len && !strncmp(tenant_names[i], p, len)))
                i++;
            if (i == n && n < METRICS_MAX_TENANT_LABELS) {
                memcpy(tenant_names[n], p, len);
                tenant_names[n][len] = '\0';
                atomic_store_explicit(&n_tenant_names, ++n, memory_order_release);
            }
            if (i < n)
                active |= UINT64_C(1) << i;
            else
                log_warn("metrics", "admin.metrics.tenant_label: more than %d tenants named "
                         "since start; %.*s is counted as \"other\"", METRICS_MAX_TENANT_LABELS,
                         (int)len, p);
        }
        p += len + (p[len] == ',');
    }
    atomic_store_explicit(&tenant_active, active, memory_order_relaxed);
}

unsigned metrics_tenant_label(const char *tenant)
{
    uint64_t active = atomic_load_explicit(&tenant_active, memory_order_relaxed);
    if (!active || !tenant)
        return 0;
    unsigned n = atomic_load_explicit(&n_tenant_names, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        if ((active >> i & 1) && strcmp(tenant_names[i], tenant) == 0)
            return i + 1;
    return 0;
}

/* ---- rendering ------------------------------------------------------------ */

/* One counter series.  A labelled series ("family{label=...}") shares the
 * HELP/TYPE header of the same family printed just before it. */
static void counter(FILE *f, char *family, size_t family_len, const char *name,
                    const char *help, uint64_t value)
{
    size_t fl = strcspn(name, "{");
    if (fl != strlen(family) || strncmp(family, name, fl) != 0) {
        fprintf(f, "# HELP %.*s %s\n# TYPE %.*s counter\n", (int)fl, name, help, (int)fl, name);
        snprintf(family, family_len, "%.*s", (int)fl, name);
    }
    fprintf(f, "%s %llu\n", name, (unsigned long long)value);
}

/* A label value as the text format wants it: \, " and newline escaped. */
static void label_value(FILE *f, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fputc('\\', f);
        if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

static void header(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The buckets, sum and count of h, labelled with handler when not NULL. */
static void histogram(FILE *f, const char *name, const metrics_hist_t *h, const int64_t *bounds,
                      size_t n, const char *handler)
{
    uint64_t cum = 0;
    for (size_t i = 0; i <= n; i++) {
        cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        fprintf(f, "%s_bucket{", name);
        if (handler) {
            fputs("handler=\"", f);
            label_value(f, handler);
            fputs("\",", f);
        }
        if (i < n)
            fprintf(f, "le=\"%g\"} %llu\n", (double)bounds[i] / 1000.0, (unsigned long long)cum);
        else
            fprintf(f, "le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    double sum = (double)atomic_load_explicit(&h->sum_ms, memory_order_relaxed) / 1000.0;
    for (int k = 0; k < 2; k++) {
        fprintf(f, "%s_%s", name, k ? "count" : "sum");
        if (handler) {
            fputs("{handler=\"", f);
            label_value(f, handler);
            fputs("\"}", f);
        }
        if (k)
            fprintf(f, " %llu\n", (unsigned long long)cum);
        else
            fprintf(f, " %.3f\n", sum);
    }
}

static bool slot_live(unsigned i, uint64_t gen)
{
    return atomic_load_explicit(&slots[i].live_gen, memory_order_relaxed) == gen && gen;
}

static bool slot_used(unsigned i)
{
    metrics_handler_counts_t c;
    metrics_handler_read((uint16_t)i, &c);
    return c.duration_count || c.outcome[0] || c.outcome[1] || c.outcome[2] || c.outcome[3] ||
           c.outcome[4];
}

static void render_handlers(FILE *f)
{
    unsigned n = atomic_load_explicit(&n_slots, memory_order_acquire);
    uint64_t gen = METRIC_GET(generation);
    uint64_t active = atomic_load_explicit(&tenant_active, memory_order_relaxed);
    unsigned nt = atomic_load_explicit(&n_tenant_names, memory_order_acquire);
    /* slot 0 only once something overflowed into it */
    bool show0 = n > 0 && slot_used(0);
    header(f, "evbus_events_processed_total", "counter",
           "Handler calls by handler instance and outcome");
    for (unsigned i = 0; i < n; i++) {
        if (!(i == 0 ? show0 : slot_live(i, gen)))
            continue;
        for (unsigned o = 0; o < METRICS_N_OUTCOMES; o++) {
            if (!active) {
                uint64_t v = 0;
                for (unsigned t = 0; t <= METRICS_MAX_TENANT_LABELS; t++)
                    v += atomic_load_explicit(&slots[i].outcome[t][o], memory_order_relaxed);
                fputs("evbus_events_processed_total{handler=\"", f);
                label_value(f, slots[i].name);
                fprintf(f, "\",outcome=\"%s\"} %llu\n", metrics_outcome_name(o),
                        (unsigned long long)v);
                continue;
            }
            /* label 0 ("other") first, then each tenant in the list */
            for (unsigned t = 0; t <= nt; t++) {
                if (t && !(active >> (t - 1) & 1))
                    continue;
                fputs("evbus_events_processed_total{handler=\"", f);
                label_value(f, slots[i].name);
                fprintf(f, "\",outcome=\"%s\",tenant=\"", metrics_outcome_name(o));
                label_value(f, t ? tenant_names[t - 1] : "other");
                fprintf(f, "\"} %llu\n",
                        (unsigned long long)atomic_load_explicit(&slots[i].outcome[t][o],
                                                                 memory_order_relaxed));
            }
        }
    }
    header(f, "evbus_handler_duration_seconds", "histogram",
           "Handler call durations by handler instance (coarse clock: 1-10 ms resolution)");
    for (unsigned i = 0; i < n; i++)
        if (i == 0 ? show0 : slot_live(i, gen))
            histogram(f, "evbus_handler_duration_seconds", &slots[i].duration, duration_bounds,
                      N_DURATION, slots[i].name);
}

static void render_sampled(FILE *f)
{
#define X(field, name, scale, help)                                                          \
    do {                                                                                     \
        int64_t v = SAMPLED_GET(field);                                                      \
        header(f, name, "gauge", help);                                                      \
        if (v != METRICS_UNSET) {                                                            \
            if ((scale) == 1)                                                                \
                fprintf(f, "%s %lld\n", name, (long long)v);                                 \
            else                                                                             \
                fprintf(f, "%s %.6f\n", name, (double)v / (double)(scale));                  \
        }                                                                                    \
    } while (0);
    METRICS_SAMPLED(X)
#undef X
    /* Redis 7.0 reports a null lag when it cannot compute one (entries
     * deleted inside the group's range, a group moved with SETID): say
     * "unknown" instead of showing a lag of 0 */
    header(f, "evbus_consumer_lag_unknown", "gauge",
           "1 while the consumer group's lag is unknown (Redis reported null, or not read yet)");
    fprintf(f, "evbus_consumer_lag_unknown %d\n", SAMPLED_GET(consumer_lag) == METRICS_UNSET);
}

char *metrics_render(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    char family[128] = "";
#define X(field, name, help) counter(f, family, sizeof family, name, help, METRIC_GET(field));
    METRICS_COUNTERS(X)
#undef X
#define X(field, name, help)                                                               \
    fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", name, help, name, name,          \
            (unsigned long long)METRIC_GET(field));
    METRICS_GAUGES(X)
#undef X
    render_handlers(f);
    header(f, "evbus_end_to_end_latency_seconds", "histogram",
           "Time from the stream entry's id (its XADD time) to its acknowledgement");
    histogram(f, "evbus_end_to_end_latency_seconds", &latency, latency_bounds, N_LATENCY, NULL);
    render_sampled(f);
    header(f, "evbus_build_info", "gauge", "The running evbusd's version (always 1)");
    fprintf(f, "evbus_build_info{version=\"%s\"} 1\n", EVBUS_VERSION);
    fclose(f);
    return buf;
}
