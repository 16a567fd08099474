/*
 * stats — see stats.h for the bounds and thread rules.
 *
 * Two open-addressing tables with slots published by compare-and-swap
 * (empty -> being written -> ready): tenants, and (tenant, type) pairs.  A
 * thread that meets a slot being written waits for it (a few stores), so a
 * key is never inserted twice.  Nothing is ever removed: the tables only
 * hold what the bounds allow.  Throughput keeps two rings of cumulative
 * totals (every second for a minute, every minute for a quarter hour).
 */
#include "core/stats.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define N_STATUS 4 /* COMPLETED, RETRYING, DEAD_LETTERED, IGNORED */

struct stats_cell {
    atomic_uint_fast64_t status[N_STATUS];
    atomic_uint_fast64_t outcome[METRICS_N_OUTCOMES];
};

enum { SLOT_EMPTY = 0, SLOT_WRITING, SLOT_READY };

typedef struct tenant_slot {
    atomic_int state;
    char name[STATS_TENANT_MAX + 1];
    unsigned series;          /* its throughput series - 1: order of arrival */
    stats_cell_t other_types; /* types beyond the pair bound */
} tenant_slot_t;

typedef struct pair_slot {
    atomic_int state;
    uint16_t tenant; /* index into tenants[] */
    char type[STATS_TYPE_MAX + 1];
    stats_cell_t cell;
} pair_slot_t;

/* twice the bound: probes stay short */
#define TENANT_SLOTS (2 * STATS_MAX_TENANTS)
#define PAIR_SLOTS (2 * STATS_MAX_PAIRS)
#define SECS_CAP 62 /* a minute and a bit of 1 s samples */
#define MINS_CAP 16 /* a quarter hour of 1 min samples */

struct stats {
    tenant_slot_t tenants[TENANT_SLOTS];
    atomic_uint n_tenants;    /* claimed or being claimed (the bound) */
    atomic_uint next_series;  /* tenants written: < STATS_MAX_TENANTS */
    pair_slot_t pairs[PAIR_SLOTS];
    atomic_uint n_pairs;
    stats_cell_t untracked; /* events of tenants beyond the bound */

    /* series 0: every event; 1 + i: tenants[i] */
    pthread_mutex_t ring_lock;
    stats_ring_t secs, mins;
    int64_t last_sec_ms, last_min_ms;
};

static uint32_t fnv1a(const char *s, uint32_t h)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Wait out a slot another thread is writing; true when it holds a key. */
static bool slot_ready(atomic_int *state)
{
    int st;
    while ((st = atomic_load_explicit(state, memory_order_acquire)) == SLOT_WRITING)
        sched_yield();
    return st == SLOT_READY;
}

/* Claim an empty slot within the bound of `used`; false when the bound is
 * reached (or another thread took the slot: then the caller looks again). */
static bool slot_claim(atomic_int *state, atomic_uint *used, unsigned bound)
{
    if (atomic_fetch_add(used, 1) >= bound) {
        atomic_fetch_sub(used, 1);
        return false;
    }
    int empty = SLOT_EMPTY;
    if (!atomic_compare_exchange_strong(state, &empty, SLOT_WRITING)) {
        atomic_fetch_sub(used, 1);
        return false;
    }
    return true;
}

/* Index of tenant in s->tenants, or -1 when untracked. */
static int tenant_index(stats_t *s, const char *tenant)
{
    if (strlen(tenant) > STATS_TENANT_MAX)
        return -1;
    uint32_t h = fnv1a(tenant, 2166136261u);
    for (unsigned k = 0; k < TENANT_SLOTS; k++) {
        unsigned i = (h + k) % TENANT_SLOTS;
        tenant_slot_t *t = &s->tenants[i];
        for (;;) {
            if (slot_ready(&t->state)) {
                if (strcmp(t->name, tenant) == 0)
                    return (int)i;
                break; /* someone else's: probe on */
            }
            if (slot_claim(&t->state, &s->n_tenants, STATS_MAX_TENANTS)) {
                strcpy(t->name, tenant);
                t->series = atomic_fetch_add(&s->next_series, 1);
                atomic_store_explicit(&t->state, SLOT_READY, memory_order_release);
                return (int)i;
            }
            if (atomic_load(&s->n_tenants) >= STATS_MAX_TENANTS &&
                atomic_load(&t->state) == SLOT_EMPTY)
                return -1; /* bound reached and the key is not here */
        }
    }
    return -1;
}

stats_cell_t *stats_cell(stats_t *s, const char *tenant, const char *type)
{
    if (!s)
        return NULL;
    int ti = tenant_index(s, tenant ? tenant : "");
    if (ti < 0)
        return &s->untracked;
    if (!type)
        type = "";
    stats_cell_t *other = &s->tenants[ti].other_types;
    if (strlen(type) > STATS_TYPE_MAX)
        return other;
    uint32_t h = fnv1a(type, 2166136261u ^ ((uint32_t)ti * 2654435761u));
    for (unsigned k = 0; k < PAIR_SLOTS; k++) {
        pair_slot_t *p = &s->pairs[(h + k) % PAIR_SLOTS];
        for (;;) {
            if (slot_ready(&p->state)) {
                if (p->tenant == ti && strcmp(p->type, type) == 0)
                    return &p->cell;
                break;
            }
            if (slot_claim(&p->state, &s->n_pairs, STATS_MAX_PAIRS)) {
                p->tenant = (uint16_t)ti;
                strcpy(p->type, type);
                atomic_store_explicit(&p->state, SLOT_READY, memory_order_release);
                return &p->cell;
            }
            if (atomic_load(&s->n_pairs) >= STATS_MAX_PAIRS &&
                atomic_load(&p->state) == SLOT_EMPTY)
                return other;
        }
    }
    return other;
}

void stats_cell_status(stats_cell_t *c, event_status_t st)
{
    if (c && st >= EV_STATUS_COMPLETED && st <= EV_STATUS_IGNORED)
        atomic_fetch_add_explicit(&c->status[st - EV_STATUS_COMPLETED], 1, memory_order_relaxed);
}

void stats_cell_outcome(stats_cell_t *c, metrics_outcome_t o)
{
    if (c && (unsigned)o < METRICS_N_OUTCOMES)
        atomic_fetch_add_explicit(&c->outcome[o], 1, memory_order_relaxed);
}

/* ---- lifecycle ------------------------------------------------------------ */

stats_t *stats_new(void)
{
    stats_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (stats_ring_init(&s->secs, SECS_CAP, 1 + STATS_MAX_TENANTS) != 0 ||
        stats_ring_init(&s->mins, MINS_CAP, 1 + STATS_MAX_TENANTS) != 0) {
        stats_free(s);
        return NULL;
    }
    pthread_mutex_init(&s->ring_lock, NULL);
    return s;
}

void stats_free(stats_t *s)
{
    if (!s)
        return;
    stats_ring_free(&s->secs);
    stats_ring_free(&s->mins);
    pthread_mutex_destroy(&s->ring_lock);
    free(s);
}

/* ---- reading -------------------------------------------------------------- */

static uint64_t cell_total(const stats_cell_t *c)
{
    uint64_t n = 0;
    for (int i = 0; i < N_STATUS; i++)
        n += atomic_load_explicit(&c->status[i], memory_order_relaxed);
    return n;
}

static bool ready(const atomic_int *state)
{
    return atomic_load_explicit(state, memory_order_acquire) == SLOT_READY;
}

/* Adds cell c to series k of t (and to series 0, every event). */
static void totals_add(stats_totals_t *t, size_t k, const stats_cell_t *c)
{
    uint64_t events = cell_total(c), dead = atomic_load_explicit(
                                         &c->status[EV_STATUS_DEAD_LETTERED - EV_STATUS_COMPLETED],
                                         memory_order_relaxed);
    uint64_t all = 0, ok = atomic_load_explicit(&c->outcome[METRICS_OUTCOME_OK],
                                                memory_order_relaxed);
    for (int i = 0; i < METRICS_N_OUTCOMES; i++)
        all += atomic_load_explicit(&c->outcome[i], memory_order_relaxed);
    size_t ks[2] = {0, k};
    for (int j = 0; j < (k ? 2 : 1); j++) {
        t->events[ks[j]] += events;
        t->dead_lettered[ks[j]] += dead;
        t->outcomes[ks[j]] += all;
        t->failures[ks[j]] += all - ok;
    }
}

void stats_totals(stats_t *s, stats_totals_t *t)
{
    memset(t, 0, sizeof *t);
    totals_add(t, 0, &s->untracked);
    for (unsigned i = 0; i < TENANT_SLOTS; i++)
        if (ready(&s->tenants[i].state))
            totals_add(t, 1 + s->tenants[i].series, &s->tenants[i].other_types);
    for (unsigned i = 0; i < PAIR_SLOTS; i++)
        if (ready(&s->pairs[i].state))
            totals_add(t, 1 + s->tenants[s->pairs[i].tenant].series, &s->pairs[i].cell);
}

/* Cumulative totals per series: 0 = every event, 1 + t->series = tenant t. */
static void totals(stats_t *s, uint64_t *v)
{
    stats_totals_t t;
    stats_totals(s, &t);
    memcpy(v, t.events, sizeof t.events);
}

int stats_series(stats_t *s, const char *tenant, bool *tracked)
{
    *tracked = true;
    if (!tenant)
        return 0;
    for (unsigned i = 0; i < TENANT_SLOTS; i++)
        if (ready(&s->tenants[i].state) && strcmp(s->tenants[i].name, tenant) == 0)
            return 1 + (int)s->tenants[i].series;
    /* as stats_json: room left means a tenant with no events yet */
    *tracked = atomic_load(&s->n_tenants) < STATS_MAX_TENANTS &&
               strlen(tenant) <= STATS_TENANT_MAX;
    return -1;
}

void stats_sample(stats_t *s, int64_t now_ms)
{
    bool sec = !s->secs.n || now_ms - s->last_sec_ms >= 1000;
    bool min = !s->mins.n || now_ms - s->last_min_ms >= 60000;
    if (!sec && !min)
        return;
    uint64_t v[1 + STATS_MAX_TENANTS];
    totals(s, v);
    pthread_mutex_lock(&s->ring_lock);
    if (sec) {
        stats_ring_push(&s->secs, now_ms, v);
        s->last_sec_ms = now_ms;
    }
    if (min) {
        stats_ring_push(&s->mins, now_ms, v);
        s->last_min_ms = now_ms;
    }
    pthread_mutex_unlock(&s->ring_lock);
}

static const char *const status_names[N_STATUS] = {"completed", "retrying", "dead_lettered",
                                                   "ignored"};

static json_t *counts_new(void)
{
    json_t *o = json_object(), *h = json_object();
    for (int i = 0; i < N_STATUS; i++)
        json_object_set_new(o, status_names[i], json_integer(0));
    for (int i = 0; i < METRICS_N_OUTCOMES; i++)
        json_object_set_new(h, metrics_outcome_name(i), json_integer(0));
    json_object_set_new(o, "handler_outcomes", h);
    return o;
}

static void bump(json_t *o, const char *key, const atomic_uint_fast64_t *v)
{
    json_t *n = json_object_get(o, key);
    json_integer_set(n, json_integer_value(n) +
                            (json_int_t)atomic_load_explicit(v, memory_order_relaxed));
}

static void counts_add(json_t *o, const stats_cell_t *c)
{
    json_t *h = json_object_get(o, "handler_outcomes");
    for (int i = 0; i < N_STATUS; i++)
        bump(o, status_names[i], &c->status[i]);
    for (int i = 0; i < METRICS_N_OUTCOMES; i++)
        bump(h, metrics_outcome_name(i), &c->outcome[i]);
}

/* The object at key of obj, created with zero counts on first use. */
static json_t *counts_at(json_t *obj, const char *key)
{
    json_t *o = json_object_get(obj, key);
    if (!o) {
        o = counts_new();
        json_object_set_new(obj, key, o);
    }
    return o;
}

static json_t *rate_json(double r) { return r < 0 ? json_null() : json_real(r); }

/* series < 0: a tenant with no events yet, whose rates are all 0. */
static json_t *throughput(stats_t *s, int series)
{
    double r1 = -1, r60 = -1, r900 = -1;
    int64_t c60 = 0, c900 = 0, t;
    const uint64_t *v;
    pthread_mutex_lock(&s->ring_lock);
    if (stats_ring_last(&s->secs, &t, &v)) {
        size_t k = series < 0 ? 0 : (size_t)series;
        uint64_t now = series < 0 ? 0 : v[k];
        r1 = stats_ring_rate(&s->secs, k, t, now, 1000, NULL);
        r60 = stats_ring_rate(&s->secs, k, t, now, 60000, &c60);
        r900 = stats_ring_rate(&s->mins, k, t, now, 900000, &c900);
        if (series < 0) {
            r1 = r1 < 0 ? r1 : 0;
            r60 = r60 < 0 ? r60 : 0;
            r900 = r900 < 0 ? r900 : 0;
        }
    }
    pthread_mutex_unlock(&s->ring_lock);
    return json_pack("{s:o, s:o, s:o, s:f, s:f}", "per_s_1s", rate_json(r1), "per_s_1m",
                     rate_json(r60), "per_s_15m", rate_json(r900), "covered_s_1m",
                     (double)c60 / 1000.0, "covered_s_15m", (double)c900 / 1000.0);
}

json_t *stats_json(stats_t *s, const char *tenant)
{
    json_t *out = json_object();
    json_object_set_new(out, "tenant", tenant ? json_string(tenant) : json_null());
    int ti = -1;
    for (unsigned i = 0; tenant && i < TENANT_SLOTS && ti < 0; i++)
        if (ready(&s->tenants[i].state) && strcmp(s->tenants[i].name, tenant) == 0)
            ti = (int)i;
    /* a tenant never seen while there is room is tracked (with zero
     * counts, the truth); one seen after the bound is not, and gets no
     * numbers at all rather than the cell it shares with others */
    bool tracked = !tenant || ti >= 0 ||
                   (atomic_load(&s->n_tenants) < STATS_MAX_TENANTS &&
                    strlen(tenant) <= STATS_TENANT_MAX);
    json_object_set_new(out, "tracked", json_boolean(tracked));
    json_t *events = counts_new(), *by_type = json_object(), *other = counts_new();
    json_t *by_tenant = tenant ? NULL : json_object();
    bool truncated = false;
    for (unsigned i = 0; tracked && i < PAIR_SLOTS; i++) {
        const pair_slot_t *p = &s->pairs[i];
        if (!ready(&p->state) || (tenant && p->tenant != ti))
            continue;
        counts_add(events, &p->cell);
        counts_add(counts_at(by_type, p->type), &p->cell);
        if (by_tenant)
            counts_add(counts_at(by_tenant, s->tenants[p->tenant].name), &p->cell);
    }
    for (unsigned i = 0; tracked && i < TENANT_SLOTS; i++) {
        const tenant_slot_t *t = &s->tenants[i];
        if (!ready(&t->state) || (tenant && (int)i != ti))
            continue;
        truncated |= cell_total(&t->other_types) > 0;
        counts_add(events, &t->other_types);
        counts_add(other, &t->other_types);
        if (by_tenant)
            counts_add(counts_at(by_tenant, t->name), &t->other_types);
    }
    if (!tenant) {
        counts_add(events, &s->untracked);
        json_t *u = counts_new();
        counts_add(u, &s->untracked);
        json_object_set_new(out, "by_tenant", by_tenant);
        json_object_set_new(out, "untracked", u);
    }
    json_object_set_new(out, "events", tracked ? events : json_null());
    if (!tracked)
        json_decref(events);
    json_object_set_new(out, "by_type", by_type);
    json_object_set_new(out, "other_types", truncated ? other : json_null());
    if (!truncated)
        json_decref(other);
    json_object_set_new(out, "types_truncated", json_boolean(truncated));
    json_object_set_new(out, "throughput",
                        !tracked  ? json_null()
                        : !tenant ? throughput(s, 0)
                        : ti < 0  ? throughput(s, -1)
                                  : throughput(s, 1 + (int)s->tenants[ti].series));
    return out;
}

/* ---- the ring ------------------------------------------------------------- */

int stats_ring_init(stats_ring_t *r, size_t cap, size_t width)
{
    memset(r, 0, sizeof *r);
    r->t_ms = calloc(cap, sizeof *r->t_ms);
    r->v = calloc(cap * width, sizeof *r->v);
    if (!r->t_ms || !r->v) {
        stats_ring_free(r);
        return -1;
    }
    r->cap = cap;
    r->width = width;
    return 0;
}

void stats_ring_free(stats_ring_t *r)
{
    free(r->t_ms);
    free(r->v);
    memset(r, 0, sizeof *r);
}

void stats_ring_push(stats_ring_t *r, int64_t t_ms, const uint64_t *values)
{
    size_t i = r->n ? (r->newest + 1) % r->cap : 0;
    r->t_ms[i] = t_ms;
    memcpy(r->v + i * r->width, values, r->width * sizeof *values);
    r->newest = i;
    if (r->n < r->cap)
        r->n++;
}

bool stats_ring_last(const stats_ring_t *r, int64_t *t_ms, const uint64_t **values)
{
    if (!r->n)
        return false;
    *t_ms = r->t_ms[r->newest];
    *values = r->v + r->newest * r->width;
    return true;
}

double stats_ring_rate(const stats_ring_t *r, size_t series, int64_t now_ms, uint64_t now_value,
                       int64_t window_ms, int64_t *covered_ms)
{
    if (covered_ms)
        *covered_ms = 0;
    /* walk from the newest sample back: the first one at least window_ms
     * before now, else the oldest one before now */
    size_t pick = r->cap;
    for (size_t k = 0; k < r->n; k++) {
        size_t i = (r->newest + r->cap - k) % r->cap;
        if (r->t_ms[i] >= now_ms)
            continue;
        pick = i;
        if (now_ms - r->t_ms[i] >= window_ms)
            break;
    }
    if (pick == r->cap)
        return -1;
    int64_t span = now_ms - r->t_ms[pick];
    uint64_t then = r->v[pick * r->width + series];
    if (covered_ms)
        *covered_ms = span;
    return now_value >= then ? (double)(now_value - then) * 1000.0 / (double)span : 0.0;
}
