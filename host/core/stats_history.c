/*
 * stats_history — the overview's last quarter hour (see stats.h): a fixed
 * number of samples owned by the maintenance thread, published as
 * immutable snapshots.  It keeps cumulative totals, never rates, so a late
 * or early sample only changes a point's span, not its counts.  It does
 * not sample Redis: the engine hands in the gauges it already read.
 */
#include "core/stats.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"

#define SAMPLES (STATS_HISTORY_POINTS + 1)

typedef struct sample {
    int64_t wall_ms, mono_ms;
    stats_totals_t t;
    stats_gauges_t g;
} sample_t;

/* Immutable once published. */
typedef struct snap {
    atomic_int refs;
    size_t n;             /* samples held, oldest first */
    sample_t s[SAMPLES];
} snap_t;

struct stats_history {
    pthread_mutex_t lock; /* guards cur (the pointer, not the snapshot) */
    snap_t *cur;          /* never NULL: at first the origin, zero counts */
};

static void snap_unref(snap_t *p)
{
    if (p && atomic_fetch_sub(&p->refs, 1) == 1)
        free(p);
}

stats_history_t *stats_history_new(int64_t wall_ms, int64_t mono_ms)
{
    stats_history_t *h = calloc(1, sizeof *h);
    snap_t *origin = calloc(1, sizeof *origin);
    if (!h || !origin) {
        free(h);
        free(origin);
        return NULL;
    }
    pthread_mutex_init(&h->lock, NULL);
    /* zero counts when the stats begin: the first point holds whatever
     * happened before the first sample */
    origin->n = 1;
    origin->s[0].wall_ms = wall_ms;
    origin->s[0].mono_ms = mono_ms;
    origin->s[0].g = (stats_gauges_t){METRICS_UNSET, METRICS_UNSET, METRICS_UNSET,
                                      METRICS_UNSET, METRICS_UNSET};
    atomic_init(&origin->refs, 1);
    h->cur = origin;
    return h;
}

void stats_history_free(stats_history_t *h)
{
    if (!h)
        return;
    snap_unref(h->cur);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

int stats_history_sample(stats_history_t *h, stats_t *s, int64_t wall_ms, int64_t mono_ms,
                         const stats_gauges_t *g)
{
    snap_t *next = malloc(sizeof *next);
    if (!next)
        return -1;
    /* only this thread replaces cur: reading it here needs no lock */
    const snap_t *prev = h->cur;
    size_t keep = prev ? (prev->n < SAMPLES ? prev->n : SAMPLES - 1) : 0;
    if (keep)
        memcpy(next->s, prev->s + (prev->n - keep), keep * sizeof *next->s);
    sample_t *x = &next->s[keep];
    x->wall_ms = wall_ms;
    x->mono_ms = mono_ms;
    stats_totals(s, &x->t);
    x->g = *g;
    next->n = keep + 1;
    atomic_init(&next->refs, 1);
    pthread_mutex_lock(&h->lock);
    snap_t *old = h->cur;
    h->cur = next;
    pthread_mutex_unlock(&h->lock);
    snap_unref(old);
    return 0;
}

static snap_t *snap_get(stats_history_t *h)
{
    pthread_mutex_lock(&h->lock);
    snap_t *p = h->cur;
    if (p)
        atomic_fetch_add(&p->refs, 1);
    pthread_mutex_unlock(&h->lock);
    return p;
}

static json_t *gauge(int64_t v, double scale)
{
    if (v == METRICS_UNSET)
        return json_null();
    return scale == 1 ? json_integer((json_int_t)v) : json_real((double)v / scale);
}

/* Counts of series k between two samples; k < 0: a tenant with none yet. */
static uint64_t delta(const uint64_t *a, const uint64_t *b, int k)
{
    if (k < 0)
        return 0;
    return b[k] >= a[k] ? b[k] - a[k] : 0;
}

json_t *stats_history_json(stats_history_t *h, stats_t *s, const char *tenant,
                           int64_t period_ms)
{
    bool tracked;
    int k = stats_series(s, tenant, &tracked);
    json_t *points = json_array();
    snap_t *p = snap_get(h);
    for (size_t i = 1; p && i < p->n; i++) {
        const sample_t *a = &p->s[i - 1], *b = &p->s[i];
        double span = (double)(b->mono_ms - a->mono_ms) / 1000.0;
        char at[CLOCK_RFC3339_LEN];
        json_t *pt = json_pack("{s:s, s:f}", "at", clock_rfc3339(b->wall_ms, at), "span_s", span);
        if (tracked) {
            uint64_t ev = delta(a->t.events, b->t.events, k);
            uint64_t out = delta(a->t.outcomes, b->t.outcomes, k);
            uint64_t fail = delta(a->t.failures, b->t.failures, k);
            json_object_set_new(pt, "events", json_integer((json_int_t)ev));
            json_object_set_new(pt, "per_s", span > 0 ? json_real((double)ev / span) : json_null());
            json_object_set_new(pt, "handler_outcomes", json_integer((json_int_t)out));
            json_object_set_new(pt, "failures", json_integer((json_int_t)fail));
            json_object_set_new(pt, "failure_ratio",
                                out ? json_real((double)fail / (double)out) : json_null());
            json_object_set_new(pt, "dead_lettered",
                                json_integer((json_int_t)delta(a->t.dead_lettered,
                                                               b->t.dead_lettered, k)));
        } else {
            const char *const keys[] = {"events",   "per_s",         "handler_outcomes",
                                        "failures", "failure_ratio", "dead_lettered"};
            for (size_t j = 0; j < sizeof keys / sizeof *keys; j++)
                json_object_set_new(pt, keys[j], json_null());
        }
        json_object_set_new(pt, "lag", gauge(b->g.lag, 1));
        json_object_set_new(pt, "pending", gauge(b->g.pending, 1));
        json_object_set_new(pt, "oldest_pending_age_s", gauge(b->g.oldest_pending_age_ms, 1000));
        json_object_set_new(pt, "dlq_entries", gauge(b->g.dlq_entries, 1));
        json_object_set_new(pt, "dlq_ratio", gauge(b->g.dlq_ratio_ppm, 1000000));
        json_array_append_new(points, pt);
    }
    snap_unref(p);
    return json_pack("{s:o, s:b, s:f, s:o}", "tenant", tenant ? json_string(tenant) : json_null(),
                     "tracked", tracked, "period_s", (double)period_ms / 1000.0, "points", points);
}
