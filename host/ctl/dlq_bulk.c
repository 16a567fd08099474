/* dlq_bulk — bulk dead-letter work for evbusctl; see dlq_bulk.h. */
#include "ctl/dlq_bulk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl/ctl.h"
#include "store/store.h"

/* Most entries one removal reads and deletes at once. */
enum { REMOVE_CHUNK = 500 };
/* The progress bar is redrawn at most this often. */
enum { PROGRESS_EVERY_US = 100000 };
/* The migration that adds the PURGED status. */
enum { PURGED_MIGRATION = 7 };

const char *dlq_bulk_action_name(dlq_bulk_action_t a)
{
    return a == DLQ_BULK_RETRY ? "retry" : a == DLQ_BULK_DELETE ? "delete" : "purge";
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void dlq_time_text(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char day[24];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%.19s.%03dZ", day, (int)(ms % 1000));
}

/* ------------------------------------------------------------ the ids */

static int collect_cb(const evbus_dlq_entry_t *e, void *ud)
{
    dlq_ids_t *ids = ud;
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 1024;
        void *p = realloc(ids->id, cap * sizeof *ids->id);
        if (!p)
            return EVBUS_CLIENT_EREDIS;
        ids->id = p;
        ids->cap = cap;
    }
    memcpy(ids->id[ids->n++], e->dlq_id, EVBUS_STREAM_ID_LEN);
    return 0;
}

int dlq_ids_collect(evbus_client_t *c, const char *dlq, const evbus_dlq_filter_t *f,
                    size_t limit, dlq_ids_t *out, char *err, size_t errlen)
{
    *out = (dlq_ids_t){0};
    int rc = evbus_dlq_scan(c, dlq, f, collect_cb, out, err, errlen);
    if (rc != 0) {
        dlq_ids_free(out);
        return rc;
    }
    /* The scan is newest first; the run goes oldest first. */
    for (size_t i = 0; i < out->n / 2; i++) {
        char tmp[EVBUS_STREAM_ID_LEN];
        memcpy(tmp, out->id[i], sizeof tmp);
        memcpy(out->id[i], out->id[out->n - 1 - i], sizeof tmp);
        memcpy(out->id[out->n - 1 - i], tmp, sizeof tmp);
    }
    out->matching = out->n;
    if (limit && out->n > limit)
        out->n = limit;
    return 0;
}

void dlq_ids_free(dlq_ids_t *ids)
{
    free(ids->id);
    *ids = (dlq_ids_t){0};
}

/* ---------------------------------------------------------- the run */

struct run {
    const dlq_bulk_opts_t *o;
    dlq_bulk_result_t *res;
    size_t total;
    int64_t start_us, drawn_us;
};

/* Waits until entry k may start: entry k of a run at rate r starts k/r
 * seconds after the first, so bursts never exceed the rate. */
static void pace(const struct run *r, size_t k)
{
    if (!r->o->rate)
        return;
    int64_t due = r->start_us + (int64_t)((double)k * 1e6 / r->o->rate);
    int64_t wait = due - mono_us();
    if (wait > 0) {
        struct timespec ts = {(time_t)(wait / 1000000), (long)(wait % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
}

static void progress(struct run *r, size_t k, bool last)
{
    int64_t now = mono_us();
    if (r->total == 0 || (!last && now - r->drawn_us < PROGRESS_EVERY_US))
        return;
    r->drawn_us = now;
    ctl_progress(dlq_bulk_action_name(r->o->action), k, r->total);
}

static void fail_one(struct run *r, const char *id, const char *why)
{
    r->res->failed++;
    if (r->o->on_failure)
        r->o->on_failure(r->o->ud, id, why);
}

/* Retries one entry; 1 when it is accounted for (done, gone or failed),
 * 0 when the run must stop (res->stop says why; the entry is untouched). */
static size_t retry_one(struct run *r, evbus_client_t *c, const char *dlq, const char *id)
{
    char new_id[EVBUS_STREAM_ID_LEN], err[256];
    int rc = evbus_dlq_retry(c, dlq, id, r->o->tenant, new_id, sizeof new_id, err, sizeof err);
    if (rc == 0) {
        r->res->done++;
    } else if (rc == 1) {
        r->res->gone++;
    } else if (rc == EVBUS_CLIENT_EFULL) {
        snprintf(r->res->stop, sizeof r->res->stop, "%s", err);
        return 0;
    } else if (evbus_client_check(c, NULL, 0) != 0) {
        /* not this entry's fault: Redis went away */
        snprintf(r->res->stop, sizeof r->res->stop, "%s", evbus_client_error(c));
        return 0;
    } else {
        fail_one(r, id, err);
    }
    return 1;
}

/* The event ids of removed entries whose metadata the daemon wrote
 * (replays write none), marked PURGED; sets res->stop when PostgreSQL
 * failed. */
static void mark_purged(struct run *r, const evbus_dlq_entry_t *es, size_t n)
{
    if (!r->o->pg || n == 0)
        return;
    const char **ids = calloc(n, sizeof *ids);
    if (!ids) {
        snprintf(r->res->stop, sizeof r->res->stop, "metadata: out of memory");
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (es[i].event_id[0] && !es[i].replay_job)
            ids[k++] = es[i].event_id;
    char err[256];
    int marked = store_events_mark_purged(r->o->pg, ids, k, err, sizeof err);
    free(ids);
    if (marked < 0) {
        snprintf(r->res->stop, sizeof r->res->stop,
                 "%.200s (the %zu dead letters just removed still read DEAD_LETTERED)", err, n);
        return;
    }
    r->res->marked += marked;
}

/* Removes one chunk (archiving it first for a purge); n when the chunk
 * is accounted for, 0 when nothing was removed.  res->stop is set when the
 * run must stop (also after a removal whose marking failed). */
static size_t remove_chunk(struct run *r, evbus_client_t *c, const char *dlq,
                           const char *const *ids, size_t n)
{
    evbus_dlq_entry_t *es = NULL;
    size_t removed = 0;
    char err[256];
    const char *archive = r->o->action == DLQ_BULK_PURGE ? r->o->archive_path : NULL;
    ssize_t rc = evbus_dlq_remove(c, dlq, ids, n, r->o->tenant, archive, &es, &removed, err,
                                  sizeof err);
    if (rc < 0) {
        snprintf(r->res->stop, sizeof r->res->stop, "%s", err);
        return 0;
    }
    r->res->done += removed;
    r->res->gone += n - removed;
    mark_purged(r, es, removed);
    evbus_dlq_list_free(es, removed);
    return n;
}

void dlq_bulk_run(evbus_client_t *c, const char *dlq, const dlq_bulk_opts_t *o,
                  const dlq_ids_t *ids, dlq_bulk_result_t *res)
{
    *res = (dlq_bulk_result_t){.marked = o->pg ? 0 : -1};
    struct run r = {o, res, ids->n, mono_us(), 0};
    size_t chunk = 1;
    if (o->action != DLQ_BULK_RETRY) {
        /* about ten chunks a second at the rate, so pacing stays smooth */
        chunk = o->rate ? o->rate / 10 : REMOVE_CHUNK;
        chunk = chunk < 1 ? 1 : chunk > REMOVE_CHUNK ? REMOVE_CHUNK : chunk;
    }
    const char *ptrs[REMOVE_CHUNK];
    size_t k = 0;
    while (k < ids->n && !res->stop[0]) {
        pace(&r, k);
        progress(&r, k, false);
        if (o->action == DLQ_BULK_RETRY) {
            k += retry_one(&r, c, dlq, ids->id[k]);
        } else {
            size_t n = ids->n - k < chunk ? ids->n - k : chunk;
            for (size_t i = 0; i < n; i++)
                ptrs[i] = ids->id[k + i];
            k += remove_chunk(&r, c, dlq, ptrs, n);
        }
    }
    res->skipped = ids->n - k;
    progress(&r, k, true);
    ctl_progress_end();
}

/* ------------------------------------------------------- PostgreSQL */

PGconn *dlq_metadata_connect(const char *url, char *err, size_t errlen)
{
    PGconn *pg = store_connect(url, err, errlen);
    if (!pg)
        return NULL;
    int applied = store_migration_applied(pg, PURGED_MIGRATION, err, errlen);
    if (applied == 1)
        return pg;
    if (applied == 0)
        snprintf(err, errlen, "PostgreSQL's schema has no PURGED status yet (migration 0007): "
                              "run `evbusctl migrate up`");
    PQfinish(pg);
    return NULL;
}

/* ------------------------------------------------------------ summary */

struct summary {
    json_t *by[4]; /* tenant, type, reason, handler */
    size_t total;
    char oldest[EVBUS_STREAM_ID_LEN], newest[EVBUS_STREAM_ID_LEN];
};

static int bump(json_t *counts, const char *key)
{
    json_t *v = json_object_get(counts, key);
    if (v)
        return json_integer_set(v, json_integer_value(v) + 1);
    return json_object_set_new(counts, key, json_integer(1));
}

static int summary_cb(const evbus_dlq_entry_t *e, void *ud)
{
    struct summary *s = ud;
    if (s->total++ == 0)
        memcpy(s->newest, e->dlq_id, sizeof s->newest);
    memcpy(s->oldest, e->dlq_id, sizeof s->oldest); /* newest first: the last is the oldest */
    int rc = bump(s->by[0], e->tenant) | bump(s->by[1], e->type) | bump(s->by[2], e->reason);
    json_t *hs = json_loads(e->handlers, 0, NULL);
    size_t i;
    json_t *h;
    if (!json_is_array(hs))
        rc |= bump(s->by[3], e->handlers);
    json_array_foreach(hs, i, h)
        rc |= bump(s->by[3], json_is_string(h) ? json_string_value(h) : "");
    json_decref(hs);
    return rc ? EVBUS_CLIENT_EREDIS : 0;
}

static json_t *time_or_null(const char *id)
{
    if (!id[0])
        return json_null();
    char t[32];
    dlq_time_text((int64_t)strtoll(id, NULL, 10), t);
    return json_string(t);
}

int dlq_summary(evbus_client_t *c, const char *const *dlqs, size_t n, const evbus_dlq_filter_t *f,
                json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    struct summary s = {{json_object(), json_object(), json_object(), json_object()}, 0, "", ""};
    int rc = 0;
    for (size_t k = 0; k < n && rc == 0; k++)
        rc = evbus_dlq_scan(c, dlqs[k], f, summary_cb, &s, err, errlen);
    if (rc == 0)
        *out = json_pack("{s:I, s:o, s:o, s:O, s:O, s:O, s:O}", "total", (json_int_t)s.total,
                         "oldest", time_or_null(s.oldest), "newest", time_or_null(s.newest),
                         "by_tenant", s.by[0], "by_type", s.by[1], "by_reason", s.by[2],
                         "by_handler", s.by[3]);
    for (int i = 0; i < 4; i++)
        json_decref(s.by[i]);
    if (rc == 0 && !*out) {
        snprintf(err, errlen, "dlq summary: out of memory");
        rc = EVBUS_CLIENT_EREDIS;
    }
    return rc;
}
