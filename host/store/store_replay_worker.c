/*
 * store_replay_worker — runs replay jobs: claims a pending job, reads the
 * job's time window from the stream with XRANGE (stream ids are "ms-seq",
 * so an id range is a time range) and hands each matching event to the
 * host's dispatch callback.
 *
 * It reads with its own Redis connection and never uses the consumer group
 * (no XREADGROUP, no XACK), so live consumption is never blocked or
 * disturbed.  It can only replay what the stream still holds: entries
 * trimmed by retention are gone, and the job records a warning naming the
 * missing range and the first available time when its window starts
 * before the oldest entry left.
 *
 * A running job is leased: the worker refreshes heartbeat_at at least every
 * lease/6 (between events) and records in position the id of the last
 * entry it handled, with the counts.  When a host dies, any host claims
 * the job once the lease ran out and resumes after position (the events
 * handled since the last saved position are dispatched again: replay is
 * at-least-once like everything else).  A host that stops hands its job
 * back (pending, position kept) without using up a claim; a job claimed
 * REPLAY_MAX_CLAIMS times without finishing fails, so a job whose events
 * kill every host that runs them cannot go round the cluster forever.  The
 * claim number fences every write of a running job: a host that stalled
 * past its lease and lost the job stops at its next write and changes
 * nothing the new owner wrote.
 *
 * total is counted by a first XRANGE pass over the window that only counts
 * entries (no parsing, no dispatch).  That doubles the Redis reads of a job
 * but is cheap next to dispatching, and gives progress a real denominator;
 * entries trimmed or added between the passes make the final sum differ
 * slightly from total.
 */
#include "client/evbus_client.h"
#include "store/store_internal.h"

#include "router/router.h"
#include "util/log.h"
#include "util/metrics.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COMP "replay"
#define REPLAY_POLL_MS 500
#define REPLAY_MAX_CLAIMS 3
#define REPLAY_CHECK_MS 1000 /* cancellation/progress check while rate-limited */

struct store_replay_worker {
    char *pg_url;
    char *redis_url;
    char *stream;
    uint32_t timeout_ms;
    /* live: store_replay_worker_configure (read once per use) */
    atomic_uint keep_completed, keep_failed, lease_ms, chunk;
    store_replay_dispatch_fn fn;
    void *ud;
    atomic_bool stop;
    pthread_t thread;
};

/* One claimed job, as read from its row. */
typedef struct job {
    char id[64];
    int64_t from_ms, to_ms;
    char **types;
    size_t n_types;
    char *tenant;
    int rate;
    int64_t total, processed, skipped, failed;
    char position[48]; /* last entry handled ("" = none yet) */
    int claims;        /* this claim included: also the fencing token */
    char claims_s[16];
    bool lost;         /* another host took the job over: stop, write nothing */
    int64_t beat_ms;   /* monotonic time of the last heartbeat */
} job_t;

/* ---------------------------------------------------------------- redis */

/* XRANGE stream start end COUNT n; NULL + err on failure. */
static redisReply *xrange(redisContext *rc, const char *stream, const char *start,
                          const char *end, int count, char *err, size_t errlen)
{
    redisReply *r = redisCommand(rc, "XRANGE %s %s %s COUNT %d", stream, start, end, count);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        store__err(err, errlen, "XRANGE %s: %s", stream,
                   r && r->type == REDIS_REPLY_ERROR ? r->str : rc->errstr);
        if (r)
            freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* ------------------------------------------------------------------ job */

static void job_free(job_t *j)
{
    for (size_t i = 0; i < j->n_types; i++)
        free(j->types[i]);
    free(j->types);
    free(j->tenant);
}

static int job_from_json(job_t *j, const json_t *o)
{
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "%s", json_string_value(json_object_get(o, "id")));
    j->from_ms = (int64_t)json_integer_value(json_object_get(o, "from_ms"));
    j->to_ms = (int64_t)json_integer_value(json_object_get(o, "to_ms"));
    j->rate = (int)json_integer_value(json_object_get(o, "rate"));
    /* a job claimed again resumes with what its last host saved */
    j->total = (int64_t)json_integer_value(json_object_get(o, "total"));
    j->processed = (int64_t)json_integer_value(json_object_get(o, "processed"));
    j->skipped = (int64_t)json_integer_value(json_object_get(o, "skipped"));
    j->failed = (int64_t)json_integer_value(json_object_get(o, "failed"));
    j->claims = (int)json_integer_value(json_object_get(o, "claims"));
    snprintf(j->claims_s, sizeof j->claims_s, "%d", j->claims);
    const char *pos = json_string_value(json_object_get(o, "position"));
    snprintf(j->position, sizeof j->position, "%s", pos ? pos : "");
    j->beat_ms = store__mono_ms();
    const char *tenant = json_string_value(json_object_get(o, "tenant"));
    j->tenant = tenant ? strdup(tenant) : NULL;
    const json_t *types = json_object_get(o, "types");
    j->n_types = json_array_size(types);
    j->types = calloc(j->n_types + 1, sizeof *j->types);
    if (!j->types)
        return -1;
    for (size_t i = 0; i < j->n_types; i++)
        j->types[i] = strdup(json_string_value(json_array_get(types, i)));
    return 0;
}

static const char *field(const redisReply *entry, const char *name, size_t *len)
{
    const redisReply *kv = entry->element[1];
    if (kv->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < kv->elements; i += 2)
        if (kv->element[i]->type == REDIS_REPLY_STRING && strcmp(kv->element[i]->str, name) == 0) {
            if (len)
                *len = kv->element[i + 1]->len;
            return kv->element[i + 1]->str;
        }
    return NULL;
}

/* Whether an event passes the job's type and tenant filters. */
static bool job_matches(const job_t *j, const char *raw)
{
    json_t *ev = json_loads(raw, 0, NULL);
    if (!json_is_object(ev)) {
        json_decref(ev);
        return false;
    }
    const char *type = json_string_value(json_object_get(ev, "type"));
    bool ok = type != NULL;
    if (ok && j->n_types) {
        ok = false;
        for (size_t i = 0; i < j->n_types && !ok; i++)
            ok = router_pattern_match(j->types[i], type);
    }
    if (ok && j->tenant) {
        const char *t = json_string_value(json_object_get(ev, "tenantid"));
        if (!t)
            t = json_string_value(json_object_get(ev, "tenant"));
        ok = t && strcmp(t, j->tenant) == 0;
    }
    json_decref(ev);
    return ok;
}

/* ------------------------------------------------------- job row updates */

/*
 * Saves the counts and the position, and renews the lease.  Every write of
 * a running job is fenced by its claim number: if this host stalled past
 * the lease (a pause, a partition) and another host claimed the job, the
 * update matches nothing and this host stops the job without touching
 * what the new owner writes.
 */
static void job_progress(PGconn *pg, job_t *j)
{
    if (j->lost)
        return;
    char t[24], p[24], s[24], f[24], err[256];
    snprintf(t, sizeof t, "%lld", (long long)j->total);
    snprintf(p, sizeof p, "%lld", (long long)j->processed);
    snprintf(s, sizeof s, "%lld", (long long)j->skipped);
    snprintf(f, sizeof f, "%lld", (long long)j->failed);
    const char *params[] = {j->id, t, p, s, f, j->position[0] ? j->position : NULL,
                            j->claims_s};
    j->beat_ms = store__mono_ms();
    long n = 0;
    if (store__exec(pg, "replay progress",
                    "UPDATE replay_jobs SET total = $2::bigint, processed = $3::bigint,"
                    " skipped = $4::bigint, failed = $5::bigint, position = $6,"
                    " heartbeat_at = now() WHERE id = $1 AND claims = $7::int"
                    " AND status IN ('running', 'cancelled')",
                    7, params, &n, err, sizeof err) != 0) {
        log_warn(COMP, "job %s: %s", j->id, err);
        return;
    }
    if (n == 0) {
        j->lost = true;
        log_warn(COMP, "job %s was taken over by another host (its lease ran out here); "
                 "this host stops it", j->id);
    }
}

/* A heartbeat when lease/6 passed since the last one (between events, so
 * a slow handler delays it: the lease must exceed handler timeouts). */
static void job_beat(store_replay_worker_t *w, PGconn *pg, job_t *j)
{
    if (store__mono_ms() - j->beat_ms >= (int64_t)(atomic_load(&w->lease_ms) / 6))
        job_progress(pg, j);
}

/* True when someone cancelled the job (or it vanished). */
static bool job_cancelled(PGconn *pg, const job_t *j)
{
    const char *params[] = {j->id};
    PGresult *r = PQexecParams(pg, "SELECT status FROM replay_jobs WHERE id = $1", 1, NULL,
                               params, NULL, NULL, 0);
    bool gone = PQresultStatus(r) == PGRES_TUPLES_OK &&
                (PQntuples(r) == 0 || strcmp(PQgetvalue(r, 0, 0), "cancelled") == 0);
    PQclear(r);
    return gone;
}

/* ms since the epoch as "2026-11-26T10:00:00.000Z". */
static void rfc3339(int64_t ms, char out[80])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, 80, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static void job_warn(PGconn *pg, const job_t *j, const char *warning)
{
    char err[256];
    const char *params[] = {j->id, warning};
    log_warn(COMP, "job %s: %s", j->id, warning);
    if (store__exec(pg, "replay warning", "UPDATE replay_jobs SET warning = $2 WHERE id = $1", 2,
                    params, NULL, err, sizeof err) != 0)
        log_warn(COMP, "job %s: %s", j->id, err);
}

/* running -> pending again, keeping position and counts, for the next
 * host (or this one after its restart); the claim is given back. */
static void job_release(PGconn *pg, job_t *j)
{
    char err[256];
    job_progress(pg, j);
    if (j->lost)
        return;
    const char *params[] = {j->id, j->claims_s};
    if (store__exec(pg, "replay release",
                    "UPDATE replay_jobs SET status = 'pending', heartbeat_at = NULL,"
                    " claims = GREATEST(claims - 1, 0)"
                    " WHERE id = $1 AND status = 'running' AND claims = $2::int",
                    2, params, NULL, err, sizeof err) != 0)
        log_warn(COMP, "job %s: %s", j->id, err);
}

/* running -> completed/failed; a job cancelled meanwhile stays cancelled. */
static void job_finish(PGconn *pg, job_t *j, const char *error)
{
    char err[256];
    job_progress(pg, j);
    if (j->lost)
        return;
    const char *params[] = {j->id, error ? "failed" : "completed", error, j->claims_s};
    if (store__exec(pg, "replay finish",
                    "UPDATE replay_jobs SET status = $2, error = $3, finished_at = now()"
                    " WHERE id = $1 AND status = 'running' AND claims = $4::int",
                    4, params, NULL, err, sizeof err) != 0)
        log_warn(COMP, "job %s: %s", j->id, err);
}

/* -------------------------------------------------------------- running */

typedef struct pacer {
    int rate;
    double next_ms; /* monotonic time the next event may go */
} pacer_t;

/* Waits for the next token; returns false when the worker or job must stop.
 * *last_check tracks the periodic cancellation check during long waits. */
static bool pace(store_replay_worker_t *w, PGconn *pg, job_t *j, pacer_t *pc,
                 int64_t *last_check, bool *cancelled)
{
    if (pc->rate <= 0)
        return !atomic_load(&w->stop);
    double now = (double)store__mono_ms();
    if (pc->next_ms < now - 1000) /* no burst credit beyond one second */
        pc->next_ms = now - 1000;
    while ((double)store__mono_ms() < pc->next_ms) {
        if (atomic_load(&w->stop))
            return false;
        if (store__mono_ms() - *last_check >= REPLAY_CHECK_MS) {
            *last_check = store__mono_ms();
            job_progress(pg, j);
            if (j->lost)
                return false;
            if (job_cancelled(pg, j)) {
                *cancelled = true;
                return false;
            }
        }
        int64_t left = (int64_t)(pc->next_ms - (double)store__mono_ms()) + 1;
        store__sleep_ms(left > 50 ? 50 : left);
    }
    pc->next_ms += 1000.0 / pc->rate;
    return true;
}

/* Counting pass over the window; -1 with err on Redis failure. */
static int64_t count_window(redisContext *rc, const char *stream, const char *start,
                            const char *end, char *err, size_t errlen)
{
    int64_t n = 0;
    char from[64];
    snprintf(from, sizeof from, "%s", start);
    for (;;) {
        redisReply *r = xrange(rc, stream, from, end, 5000, err, errlen);
        if (!r)
            return -1;
        n += (int64_t)r->elements;
        bool done = r->elements < 5000;
        if (!done)
            snprintf(from, sizeof from, "(%s", r->element[r->elements - 1]->element[0]->str);
        freeReplyObject(r);
        if (done)
            return n;
    }
}

static void run_job(store_replay_worker_t *w, PGconn *pg, job_t *j)
{
    char err[512];
    redisContext *rc = evbus_redis_connect(w->redis_url, (int)w->timeout_ms, (int)w->timeout_ms, err,
                                           sizeof err);
    if (!rc) {
        job_finish(pg, j, err);
        log_error(COMP, "job %s failed: %s", j->id, err);
        return;
    }
    char start[48], end[48];
    snprintf(start, sizeof start, "%lld-0", (long long)j->from_ms);
    snprintf(end, sizeof end, "%lld-18446744073709551615", (long long)j->to_ms);
    bool resumed = j->position[0] != '\0';

    redisReply *first = resumed ? NULL : xrange(rc, w->stream, "-", "+", 1, err, sizeof err);
    if (resumed)
        goto counted; /* warned and counted by the host that started it */
    if (!first)
        goto fail;
    if (first->elements == 0) {
        job_warn(pg, j, "the stream is empty: nothing to replay");
    } else {
        long long oldest = strtoll(first->element[0]->element[0]->str, NULL, 10);
        if (oldest > j->from_ms) {
            /* say exactly which part of the window is gone */
            char msg[600], a[80], b[80];
            rfc3339(j->from_ms, a);
            rfc3339(oldest < j->to_ms ? oldest : j->to_ms, b);
            snprintf(msg, sizeof msg,
                     "1 missing range: %s to %s is no longer in the stream (trimmed by "
                     "retention); the first available event is at %s (%lld ms); only the rest "
                     "of the window is replayed",
                     a, b, b, oldest);
            job_warn(pg, j, msg);
        }
    }
    freeReplyObject(first);

    j->total = count_window(rc, w->stream, start, end, err, sizeof err);
    if (j->total < 0)
        goto fail;
    job_progress(pg, j);
    log_info(COMP, "job %s started: %lld entries in the window", j->id, (long long)j->total);
counted:
    if (resumed)
        log_warn(COMP, "job %s resumed after %s (claim %d): %lld of %lld entries were handled "
                 "by its previous host", j->id, j->position, j->claims,
                 (long long)(j->processed + j->skipped + j->failed), (long long)j->total);

    pacer_t pc = {.rate = j->rate, .next_ms = (double)store__mono_ms()};
    int64_t last_check = store__mono_ms();
    bool cancelled = false;
    char from[64];
    if (resumed)
        snprintf(from, sizeof from, "(%s", j->position);
    else
        snprintf(from, sizeof from, "%s", start);
    for (;;) {
        /* read once: `done` must compare with the count this read asked for */
        uint32_t chunk = atomic_load(&w->chunk);
        redisReply *r = xrange(rc, w->stream, from, end, (int)chunk, err, sizeof err);
        if (!r)
            goto fail;
        bool stopped = false;
        for (size_t i = 0; i < r->elements && !stopped; i++) {
            const redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 2)
                continue;
            size_t len = 0;
            const char *raw = field(e, "event", &len);
            /* Retry entries are re-publications of events already counted. */
            if (field(e, "retry", NULL) || !raw || !job_matches(j, raw)) {
                j->skipped++;
                snprintf(j->position, sizeof j->position, "%s", e->element[0]->str);
                continue;
            }
            if (!pace(w, pg, j, &pc, &last_check, &cancelled)) {
                stopped = true;
                break;
            }
            METRIC_INC(replay_events);
            if (w->fn(w->ud, j->id, e->element[0]->str, raw, len) == 0)
                j->processed++;
            else
                j->failed++;
            snprintf(j->position, sizeof j->position, "%s", e->element[0]->str);
            job_beat(w, pg, j);
            if (j->lost) {
                stopped = true;
                break;
            }
        }
        bool done = r->elements < chunk;
        if (r->elements > 0)
            snprintf(from, sizeof from, "(%s", r->element[r->elements - 1]->element[0]->str);
        freeReplyObject(r);
        if (stopped)
            break;
        job_progress(pg, j);
        if (j->lost)
            break;
        last_check = store__mono_ms();
        if (job_cancelled(pg, j)) {
            cancelled = true;
            break;
        }
        if (done)
            break;
    }
    redisFree(rc);
    if (j->lost) {
        log_warn(COMP, "job %s stopped here after %s: another host runs it now", j->id,
                 j->position[0] ? j->position : "its start");
    } else if (cancelled) {
        job_progress(pg, j);
        log_info(COMP, "job %s cancelled after %lld events", j->id, (long long)j->processed);
    } else if (atomic_load(&w->stop)) {
        job_release(pg, j);
        log_warn(COMP, "job %s handed back (host stopping): it resumes after %s", j->id,
                 j->position[0] ? j->position : "its start");
    } else {
        job_finish(pg, j, NULL);
        log_info(COMP, "job %s completed: %lld processed, %lld skipped, %lld failed", j->id,
                 (long long)j->processed, (long long)j->skipped, (long long)j->failed);
    }
    return;
fail:
    redisFree(rc);
    job_finish(pg, j, err);
    log_error(COMP, "job %s failed: %s", j->id, err);
}

static void *worker_main(void *arg)
{
    store_replay_worker_t *w = arg;
    pthread_setname_np(pthread_self(), "evbus-replay");
    PGconn *pg = NULL;
    bool warned = false;
    while (!atomic_load(&w->stop)) {
        char err[512];
        if (!pg || PQstatus(pg) != CONNECTION_OK) {
            if (pg)
                PQfinish(pg);
            pg = store_connect(w->pg_url, err, sizeof err);
            if (!pg) {
                if (!warned)
                    log_warn(COMP, "replay worker: %s; retrying", err);
                warned = true;
                store__sleep_ms(REPLAY_POLL_MS);
                continue;
            }
            warned = false;
        }
        json_t *row = NULL;
        if (store_replay_claim_next(pg, atomic_load(&w->lease_ms), &row, err, sizeof err) != 0) {
            log_warn(COMP, "replay worker: %s", err);
            store__sleep_ms(REPLAY_POLL_MS);
            continue;
        }
        if (!row) {
            store__sleep_ms(REPLAY_POLL_MS);
            continue;
        }
        job_t j;
        int jrc = job_from_json(&j, row);
        if (jrc == 0 && j.claims > REPLAY_MAX_CLAIMS) {
            char why[160];
            snprintf(why, sizeof why,
                     "abandoned: claimed %d times without finishing (its hosts died while "
                     "running it)", j.claims);
            job_finish(pg, &j, why);
            log_error(COMP, "job %s failed: %s", j.id, why);
        } else if (jrc == 0) {
            run_job(w, pg, &j);
            int n = store_replay_prune(pg, atomic_load(&w->keep_completed),
                                       atomic_load(&w->keep_failed), err, sizeof err);
            if (n < 0)
                log_warn(COMP, "replay worker: %s", err);
        }
        job_free(&j);
        json_decref(row);
    }
    if (pg)
        PQfinish(pg);
    return NULL;
}

void store_replay_worker_configure(store_replay_worker_t *w, const evbus_config_t *cfg)
{
    if (!w)
        return;
    atomic_store(&w->keep_completed, cfg->store.replay_keep_completed);
    atomic_store(&w->keep_failed, cfg->store.replay_keep_failed);
    atomic_store(&w->lease_ms, cfg->store.replay_lease_ms);
    atomic_store(&w->chunk, cfg->store.replay_chunk);
}

store_replay_worker_t *store_replay_worker_start(const evbus_config_t *cfg,
                                                 store_replay_dispatch_fn fn, void *ud)
{
    if (!cfg || !cfg->store.postgres_url || !fn) {
        log_error(COMP, "replay worker: %s", !fn ? "no dispatch function"
                                                 : "no postgres.url configured");
        return NULL;
    }
    store_replay_worker_t *w = calloc(1, sizeof *w);
    if (!w)
        goto oom;
    w->pg_url = strdup(cfg->store.postgres_url);
    w->redis_url = strdup(cfg->core.redis_url ? cfg->core.redis_url : "redis://127.0.0.1:6379/0");
    w->stream = strdup(cfg->core.stream ? cfg->core.stream : "evbus:events");
    if (!w->pg_url || !w->redis_url || !w->stream)
        goto oom;
    w->timeout_ms = cfg->core.redis_command_timeout_ms ? cfg->core.redis_command_timeout_ms : 5000;
    store_replay_worker_configure(w, cfg);
    if (!atomic_load(&w->lease_ms)) /* a zeroed test config: the documented defaults */
        atomic_store(&w->lease_ms, 120000);
    if (!atomic_load(&w->chunk))
        atomic_store(&w->chunk, 500);
    w->fn = fn;
    w->ud = ud;
    atomic_init(&w->stop, false);
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc == 0)
        return w;
    log_error(COMP, "replay worker: cannot start thread: %s", strerror(rc));
    goto fail;
oom:
    log_error(COMP, "replay worker: out of memory");
fail:
    if (w) {
        free(w->pg_url);
        free(w->redis_url);
        free(w->stream);
    }
    free(w);
    return NULL;
}

void store_replay_worker_stop(store_replay_worker_t *w)
{
    if (!w)
        return;
    atomic_store(&w->stop, true);
    pthread_join(w->thread, NULL);
    free(w->pg_url);
    free(w->redis_url);
    free(w->stream);
    free(w);
}
