/*
 * store_replay_worker — runs replay jobs: claims a pending job, reads the
 * job's time window from the stream with XRANGE (stream ids are "ms-seq",
 * so an id range is a time range) and hands each matching event to the
 * host's dispatch callback.
 *
 * It reads with its own Redis connections (client/rconn.h: one server, or
 * on a Redis Cluster the master of the partition it reads) and never uses
 * the consumer group (no XREADGROUP, no XACK), so live consumption is
 * never blocked or disturbed.  A read that fails in a way that may pass (a
 * lost connection, a slot that moved in a reshard or a failover) is tried
 * again after a backoff, for a bounded time: reads change nothing.
 * Without the archive it can only replay what the stream still holds:
 * entries trimmed by retention are gone, and the job records a warning
 * naming the missing range and the first available time when its window
 * starts before the oldest entry left.
 *
 * With retention.archive: postgres the part of the window before the
 * stream's first entry comes from events_archive, in id order, then the
 * rest from the stream: each chunk reads the stream's first entry and the
 * next chunk in one script (so nothing is trimmed between the two), and
 * when the stream starts after the job's position the archive's rows
 * between the two go first.  The trimmer never trims past what the archive
 * holds, so the two meet without a gap; the warning then names only the
 * range that neither holds.  Rows of either source go through the same
 * filters, pacing, progress and position.
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
 * On a partitioned stream (partitions: P > 1) a job reads {S:0} over its
 * window, then {S:1}, ... {S:P-1}: each partition in stream order, so the
 * events of a key (which live in one partition) are replayed in their
 * order, and each event is dispatched as its partition's, so a failure is
 * retried or dead-lettered in that partition's keys.  Each partition keeps
 * its own status, counts, position and warning in the row's `partitions`
 * (migration 0011); a job claimed again skips the completed partitions and
 * resumes each other one after its own position.  Reading them one after
 * the other rather than merged by time keeps one position per stream and
 * one read per chunk, as on one stream; order across keys was never
 * promised, even live.
 *
 * total is counted by a first XRANGE pass over the window that only counts
 * entries (no parsing, no dispatch).  That doubles the Redis reads of a job
 * but is cheap next to dispatching, and gives progress a real denominator;
 * entries trimmed or added between the passes make the final sum differ
 * slightly from total.
 */
#include "client/partition.h"
#include "client/rconn.h"
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
/* a failed read's backoff, as the engine's: long enough for a cluster to
 * elect a new master without a storm of map reads */
#define RETRY_FIRST_MS 100
#define RETRY_MAX_MS 2000

struct store_replay_worker {
    char *pg_url;
    char *redis_url;
    char *redis_cluster; /* the seeds of a Redis Cluster, or NULL: redis_url */
    char *stream;
    unsigned partitions; /* `partitions` (a restart setting): 1 = unpartitioned */
    uint32_t timeout_ms;
    uint32_t retry_ms;   /* how long a read that may pass is retried */
    /* live: store_replay_worker_configure (read once per use) */
    atomic_uint keep_completed, keep_failed, lease_ms, chunk;
    atomic_bool archive; /* retention.archive: postgres: read what the stream lost there */
    store_replay_dispatch_fn fn;
    void *ud;
    atomic_bool stop;
    pthread_t thread;
};

typedef enum { PART_PENDING, PART_RUNNING, PART_COMPLETED } part_status_t;

static const char *const PART_STATUS[] = {"pending", "running", "completed"};

/* One stream of a job: the stream itself, or one partition's {S:p}. */
typedef struct part {
    char *stream;
    part_status_t status;
    int64_t total, processed, skipped, failed;
    char position[48]; /* last entry handled ("" = none yet) */
    char *warning;     /* NULL = none */
} part_t;

/* One claimed job, as read from its row. */
typedef struct job {
    char id[64];
    int64_t from_ms, to_ms;
    char **types;
    size_t n_types;
    char *tenant;
    int rate;
    /* the sums over parts (a job's own counts) */
    int64_t total, processed, skipped, failed;
    /* one part for an unpartitioned job (partitioned = false), whose
     * progress is the row's own columns; else one per partition, kept in
     * the row's `partitions` (migration 0011) */
    bool partitioned;
    unsigned n_parts;
    part_t *parts;
    part_t *cur;       /* the part being read */
    unsigned cur_index;
    int claims;        /* this claim included: also the fencing token */
    char claims_s[16];
    bool lost;         /* another host took the job over: stop, write nothing */
    int64_t beat_ms;   /* monotonic time of the last heartbeat */
} job_t;

/* ------------------------------------------------------------------ job */

static void job_free(job_t *j)
{
    for (size_t i = 0; i < j->n_types; i++)
        free(j->types[i]);
    free(j->types);
    free(j->tenant);
    for (unsigned p = 0; j->parts && p < j->n_parts; p++) {
        free(j->parts[p].stream);
        free(j->parts[p].warning);
    }
    free(j->parts);
}

static int64_t jint(const json_t *o, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(o, k));
}

/* A part's saved progress (the row's columns, or one record of its
 * `partitions`): a job claimed again resumes with what its last host
 * saved. */
static void part_from_json(part_t *pt, const json_t *o)
{
    pt->total = jint(o, "total");
    pt->processed = jint(o, "processed");
    pt->skipped = jint(o, "skipped");
    pt->failed = jint(o, "failed");
    const char *pos = json_string_value(json_object_get(o, "position"));
    snprintf(pt->position, sizeof pt->position, "%s", pos ? pos : "");
    const char *st = json_string_value(json_object_get(o, "status"));
    pt->status = st && strcmp(st, "completed") == 0 ? PART_COMPLETED
                 : st && strcmp(st, "running") == 0 ? PART_RUNNING
                                                    : PART_PENDING;
    const char *warning = json_string_value(json_object_get(o, "warning"));
    pt->warning = warning ? strdup(warning) : NULL;
}

/*
 * 0; -1 on OOM; 1 when the job's partition count is not the worker's
 * (why says both: the stream's count changed since the job was created).
 */
static int job_from_json(job_t *j, const json_t *o, const store_replay_worker_t *w, char *why,
                         size_t whylen)
{
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "%s", json_string_value(json_object_get(o, "id")));
    j->from_ms = jint(o, "from_ms");
    j->to_ms = jint(o, "to_ms");
    j->rate = (int)jint(o, "rate");
    j->claims = (int)jint(o, "claims");
    snprintf(j->claims_s, sizeof j->claims_s, "%d", j->claims);
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

    const json_t *parts = json_object_get(o, "partitions");
    j->partitioned = json_is_array(parts);
    j->n_parts = j->partitioned ? (unsigned)json_array_size(parts) : 1;
    j->parts = calloc(j->n_parts ? j->n_parts : 1, sizeof *j->parts);
    if (!j->parts)
        return -1;
    j->cur = &j->parts[0];
    if (!j->partitioned) {
        part_from_json(&j->parts[0], o);
        j->parts[0].status = PART_PENDING; /* the row's status is the job's */
        j->parts[0].stream = strdup(w->stream);
        if (!j->parts[0].stream)
            return -1;
    }
    for (unsigned p = 0; j->partitioned && p < j->n_parts; p++) {
        part_t *pt = &j->parts[p];
        part_from_json(pt, json_array_get(parts, p));
        int n = evbus_partition_key_name(NULL, 0, w->stream, p, true, "");
        pt->stream = n >= 0 ? malloc((size_t)n + 1) : NULL;
        if (!pt->stream)
            return -1;
        evbus_partition_key_name(pt->stream, (size_t)n + 1, w->stream, p, true, "");
    }
    for (unsigned p = 0; p < j->n_parts; p++) {
        j->total += j->parts[p].total;
        j->processed += j->parts[p].processed;
        j->skipped += j->parts[p].skipped;
        j->failed += j->parts[p].failed;
    }
    unsigned have = j->partitioned ? j->n_parts : 1;
    if (have != w->partitions) {
        snprintf(why, whylen,
                 "the job was created for %u partition%s of stream %s, which evbusd now reads "
                 "in %u (partitions): a job reads the streams of the count it was created for; "
                 "start a new replay", have, have == 1 ? "" : "s", w->stream, w->partitions);
        return 1;
    }
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
    json_t *ev = json_loads(raw, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, NULL);
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

/* The partitions' progress records as JSON text (malloc'd; NULL on OOM). */
static char *parts_json(const job_t *j)
{
    json_t *a = json_array();
    for (unsigned p = 0; p < j->n_parts; p++) {
        const part_t *pt = &j->parts[p];
        json_array_append_new(
            a, json_pack("{s:I, s:s, s:I, s:I, s:I, s:I, s:o, s:o}", "partition", (json_int_t)p,
                         "status", PART_STATUS[pt->status], "total", (json_int_t)pt->total,
                         "processed", (json_int_t)pt->processed, "skipped",
                         (json_int_t)pt->skipped, "failed", (json_int_t)pt->failed, "position",
                         pt->position[0] ? json_string(pt->position) : json_null(), "warning",
                         pt->warning ? json_string(pt->warning) : json_null()));
    }
    char *text = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return text;
}

/*
 * Saves the counts and the position (a partitioned job: its partitions'
 * records), and renews the lease.  Every write of a running job is fenced
 * by its claim number: if this host stalled past the lease (a pause, a
 * partition) and another host claimed the job, the update matches nothing
 * and this host stops the job without touching what the new owner writes.
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
    /* an unpartitioned job's position is its one stream's; a partitioned
     * job's positions are in its partitions */
    const char *pos = j->partitioned || !j->parts[0].position[0] ? NULL : j->parts[0].position;
    char *parts = j->partitioned ? parts_json(j) : NULL;
    if (j->partitioned && !parts) {
        log_warn(COMP, "job %s: out of memory saving its progress", j->id);
        return;
    }
    const char *params[] = {j->id, t, p, s, f, pos, j->claims_s, parts};
    j->beat_ms = store__mono_ms();
    long n = 0;
    int rc = j->partitioned
                 ? store__exec(pg, "replay progress",
                               "UPDATE replay_jobs SET total = $2::bigint, processed = $3::bigint,"
                               " skipped = $4::bigint, failed = $5::bigint, position = $6,"
                               " partitions = $8::jsonb, heartbeat_at = now()"
                               " WHERE id = $1 AND claims = $7::int"
                               " AND status IN ('running', 'cancelled')",
                               8, params, &n, err, sizeof err)
                 : store__exec(pg, "replay progress",
                               "UPDATE replay_jobs SET total = $2::bigint, processed = $3::bigint,"
                               " skipped = $4::bigint, failed = $5::bigint, position = $6,"
                               " heartbeat_at = now() WHERE id = $1 AND claims = $7::int"
                               " AND status IN ('running', 'cancelled')",
                               7, params, &n, err, sizeof err);
    free(parts);
    if (rc != 0) {
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

/* ---------------------------------------------------------------- redis */

/*
 * A job's Redis: each partition stream's connection (one server, or the
 * master serving the stream's slot on a cluster: a job reads one
 * partition's keys at a time), and what a retry needs to keep the job's
 * heartbeat.
 */
typedef struct rlink {
    store_replay_worker_t *w;
    evbus_rconn_t *rc;
    PGconn *pg;
    job_t *j;
    bool retrying; /* logged once per failing read */
} rlink_t;

/*
 * Runs a read whose keys are `stream`'s (or share its hash tag) on that
 * stream's connection.  A failure that may pass — no connection, an I/O
 * error, a redirect (MOVED, ASK: a reshard or a failover moved the slot),
 * TRYAGAIN, CLUSTERDOWN — closes the connections (on a cluster the slot
 * map is read again) and retries after a backoff, as evbusd's engine
 * threads do, keeping the job's heartbeat, for up to w->retry_ms: a read
 * changes nothing, so running it twice is harmless.  The reply (the
 * caller checks its shape; other error replies are returned), or NULL with
 * err once the time is spent, the worker stops or the job was taken over.
 */
static redisReply *rl_read(rlink_t *l, const char *stream, int argc, const char **argv,
                           char *err, size_t errlen)
{
    store_replay_worker_t *w = l->w;
    int64_t deadline = store__mono_ms() + (int64_t)w->retry_ms, backoff = RETRY_FIRST_MS;
    for (;;) {
        char why[400] = "";
        redisContext *c = evbus_rconn_get(l->rc, stream, why, sizeof why);
        redisReply *r = c ? redisCommandArgv(c, argc, argv, NULL) : NULL;
        if (r && !evbus_rconn_is_redirect(r)) {
            if (l->retrying)
                log_info(COMP, "job %s: %s %s answered again", l->j->id, argv[0], stream);
            l->retrying = false;
            return r;
        }
        if (r)
            snprintf(why, sizeof why, "%s", r->str);
        else if (c)
            snprintf(why, sizeof why, "redis: %s", c->errstr[0] ? c->errstr : "no reply");
        freeReplyObject(r);
        evbus_rconn_reset(l->rc);
        bool gone = atomic_load(&w->stop) || l->j->lost;
        if (gone || store__mono_ms() + backoff > deadline) {
            if (gone)
                store__err(err, errlen, "%s %s: %s", argv[0], stream, why);
            else
                store__err(err, errlen, "%s %s: %s (retried for %u ms)", argv[0], stream, why,
                           w->retry_ms);
            return NULL;
        }
        if (!l->retrying)
            log_warn(COMP, "job %s: %s %s: %s; retrying for up to %u ms", l->j->id, argv[0],
                     stream, why, w->retry_ms);
        l->retrying = true;
        store__sleep_ms(backoff);
        backoff = backoff * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : backoff * 2;
        job_beat(w, l->pg, l->j);
    }
}

/* XRANGE stream start end COUNT n; NULL + err on failure. */
static redisReply *xrange(rlink_t *l, const char *stream, const char *start, const char *end,
                          int count, char *err, size_t errlen)
{
    char n[16];
    snprintf(n, sizeof n, "%d", count);
    const char *argv[] = {"XRANGE", stream, start, end, "COUNT", n};
    redisReply *r = rl_read(l, stream, 6, argv, err, errlen);
    if (r && r->type != REDIS_REPLY_ARRAY) {
        store__err(err, errlen, "XRANGE %s: %s", stream,
                   r->type == REDIS_REPLY_ERROR ? r->str : "not an array");
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* Counting pass over the window; -1 with err on Redis failure. */
static int64_t count_window(rlink_t *rl, const char *stream, const char *start,
                            const char *end, char *err, size_t errlen)
{
    int64_t n = 0;
    char from[64];
    snprintf(from, sizeof from, "%s", start);
    for (;;) {
        redisReply *r = xrange(rl, stream, from, end, 5000, err, errlen);
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

/* One entry of the window, from the stream or the archive. */
typedef struct entry {
    const char *id;  /* "ms-seq" */
    const char *raw; /* the `event` field (NUL-terminated), NULL when absent */
    size_t len;
    bool retry;      /* a retry entry: a re-publication of an event already counted */
} entry_t;

/* Where a job is and how it goes on: shared by both sources. */
typedef struct run {
    store_replay_worker_t *w;
    PGconn *pg;
    job_t *j;
    pacer_t pc;
    int64_t last_check;
    bool cancelled;
} run_t;

/* Skip or dispatch one entry.  False when the job must stop here (worker
 * stopping, job cancelled or taken over). */
static bool handle(run_t *r, const entry_t *e)
{
    job_t *j = r->j;
    part_t *pt = j->cur;
    if (e->retry || !e->raw || !job_matches(j, e->raw)) {
        j->skipped++;
        pt->skipped++;
        snprintf(pt->position, sizeof pt->position, "%s", e->id);
        return true;
    }
    if (!pace(r->w, r->pg, j, &r->pc, &r->last_check, &r->cancelled))
        return false;
    METRIC_INC(replay_events);
    if (r->w->fn(r->w->ud, j->id, j->cur_index, e->id, e->raw, e->len) == 0) {
        j->processed++;
        pt->processed++;
    } else {
        j->failed++;
        pt->failed++;
    }
    snprintf(pt->position, sizeof pt->position, "%s", e->id);
    job_beat(r->w, r->pg, j);
    return !j->lost;
}

/* After a chunk: save progress and look for a cancel.  False to stop. */
static bool chunk_done(run_t *r)
{
    job_progress(r->pg, r->j);
    if (r->j->lost)
        return false;
    r->last_check = store__mono_ms();
    if (job_cancelled(r->pg, r->j)) {
        r->cancelled = true;
        return false;
    }
    return true;
}

/* Dispatches an XRANGE reply's entries; false when the job must stop. */
static bool handle_stream(run_t *r, const redisReply *chunk)
{
    for (size_t i = 0; i < chunk->elements; i++) {
        const redisReply *e = chunk->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 || !e->element[0]->str)
            continue;
        entry_t en = {.id = e->element[0]->str};
        if (e->elements >= 2) {
            en.retry = field(e, "retry", NULL) != NULL;
            en.raw = field(e, "event", &en.len);
        }
        if (!handle(r, &en))
            return false;
    }
    return true;
}

static int64_t be64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | (unsigned char)p[i];
    return (int64_t)v;
}

/* Dispatches archive rows (store__archive_read's binary columns); false
 * when the job must stop. */
static bool handle_archive(run_t *r, const PGresult *res)
{
    for (int i = 0; i < PQntuples(res); i++) {
        char id[48];
        snprintf(id, sizeof id, "%lld-%lld", (long long)be64(PQgetvalue(res, i, 0)),
                 (long long)be64(PQgetvalue(res, i, 1)));
        entry_t en = {.id = id, .retry = PQgetvalue(res, i, 3)[0] != 0};
        if (!PQgetisnull(res, i, 2)) {
            en.raw = PQgetvalue(res, i, 2);
            en.len = (size_t)PQgetlength(res, i, 2);
        }
        if (!handle(r, &en))
            return false;
    }
    return true;
}

/* The stream's first entry and a chunk of the window read in one atomic
 * step, so that nothing is trimmed between the two: the chunk's gap to the
 * job's position, if any, is what the archive must fill. */
static const char SNAPSHOT_LUA[] =
    "return {redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1),"
    " redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])}";

static redisReply *snapshot(rlink_t *rl, const char *stream, const char *from,
                            const char *end, uint32_t chunk, char *err, size_t errlen)
{
    char count[16];
    snprintf(count, sizeof count, "%u", chunk);
    const char *argv[] = {"EVAL", SNAPSHOT_LUA, "1", stream, from, end, count};
    redisReply *r = rl_read(rl, stream, 7, argv, err, errlen);
    if (!r)
        return NULL;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_ARRAY || r->element[1]->type != REDIS_REPLY_ARRAY) {
        store__err(err, errlen, "XRANGE %s: %s", stream,
                   r->type == REDIS_REPLY_ERROR ? r->str : "not the expected reply");
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* The id right after ms-seq (where the window goes on after a position). */
static void id_after(int64_t *ms, int64_t *seq)
{
    if (*seq == INT64_MAX) {
        (*ms)++;
        *seq = 0;
    } else {
        (*seq)++;
    }
}

/*
 * The warning of a part of a new job: the part of the window that neither
 * the archive (when it is read) nor the stream holds, or that it holds
 * nothing at all (*empty), into msg ("" when the whole window is there).
 * `first` is the stream's first entry (an XRANGE reply of 0 or 1), a_ms
 * the archive's first entry's time (-1: none, or the archive is not read).
 */
static void missing_text(const job_t *j, const redisReply *first, bool archive, int64_t a_ms,
                         char *msg, size_t len, bool *empty)
{
    msg[0] = '\0';
    int64_t oldest = -1;
    if (first->elements > 0)
        oldest = strtoll(first->element[0]->element[0]->str, NULL, 10);
    if (a_ms >= 0 && (oldest < 0 || a_ms < oldest))
        oldest = a_ms;
    *empty = oldest < 0;
    if (oldest < 0) {
        snprintf(msg, len, "%s", archive ? "neither the stream nor the archive holds any entry: "
                                           "nothing to replay"
                                         : "the stream is empty: nothing to replay");
        return;
    }
    if (oldest <= j->from_ms)
        return;
    /* say exactly which part of the window is gone */
    char a[CLOCK_RFC3339_LEN], b[CLOCK_RFC3339_LEN];
    clock_rfc3339(j->from_ms, a);
    clock_rfc3339(oldest < j->to_ms ? oldest : j->to_ms, b);
    if (archive)
        snprintf(msg, len,
                 "1 missing range: %s to %s is neither in the stream nor in the archive (trimmed "
                 "before it was archived, or expired by retention.archive_retention); the first "
                 "available event is at %s (%lld ms); only the rest of the window is replayed",
                 a, b, b, (long long)oldest);
    else
        snprintf(msg, len,
                 "1 missing range: %s to %s is no longer in the stream (trimmed by "
                 "retention); the first available event is at %s (%lld ms); only the rest "
                 "of the window is replayed",
                 a, b, b, (long long)oldest);
}

/*
 * The first look at a part of a new job: its warning (pt->warning; *empty
 * when it holds nothing) and its total, counted over the stream and, with
 * the archive, the archive's rows before the stream's first entry.  0, or
 * -1 with err.
 */
static int part_count(PGconn *pg, rlink_t *rl, const job_t *j, part_t *pt, bool archive,
                      const char *start, const char *end, bool *empty, char *err, size_t errlen)
{
    redisReply *first = xrange(rl, pt->stream, "-", "+", 1, err, errlen);
    if (!first)
        return -1;
    int64_t a_ms = -1, a_seq = 0, archived = 0;
    bool found = false;
    if (archive && store__archive_first(pg, pt->stream, &a_ms, &a_seq, &found, err, errlen) != 0) {
        freeReplyObject(first);
        return -1;
    }
    if (!found)
        a_ms = -1;
    char msg[700];
    missing_text(j, first, archive, a_ms, msg, sizeof msg, empty);
    free(pt->warning);
    pt->warning = msg[0] ? strdup(msg) : NULL;
    if (archive) {
        /* the part before the stream's first entry comes from the archive */
        store__archive_range_t rg = {j->from_ms, 0, j->to_ms + 1, 0};
        if (first->elements > 0) {
            int64_t f_ms, f_seq;
            if (store__stream_id_parse(first->element[0]->element[0]->str, &f_ms, &f_seq) == 0 &&
                (f_ms < rg.hi_ms || (f_ms == rg.hi_ms && f_seq < rg.hi_seq))) {
                rg.hi_ms = f_ms;
                rg.hi_seq = f_seq;
            }
        }
        archived = store__archive_count(pg, pt->stream, &rg, err, errlen);
        if (archived < 0) {
            freeReplyObject(first);
            return -1;
        }
    }
    freeReplyObject(first);
    pt->total = count_window(rl, pt->stream, start, end, err, errlen);
    if (pt->total < 0)
        return -1;
    pt->total += archived;
    return 0;
}

/*
 * The warning of a new partitioned job, from its partitions' (each keeps
 * its own): nothing when every partition holds its part of the window,
 * the first partition that misses part of it (and how many more do), or
 * that no partition holds anything.  A partition that is merely empty is
 * no news on a partitioned stream: a few keys can leave some empty.
 */
static void warn_partitions(PGconn *pg, const job_t *j, unsigned n_empty, bool archive)
{
    if (n_empty == j->n_parts) {
        job_warn(pg, j, archive ? "neither the partition streams nor the archive hold any entry: "
                                  "nothing to replay"
                                : "every partition stream is empty: nothing to replay");
        return;
    }
    unsigned first = j->n_parts, more = 0;
    for (unsigned p = 0; p < j->n_parts; p++) {
        const part_t *pt = &j->parts[p];
        if (!pt->warning || strncmp(pt->warning, "1 missing range", 15) != 0)
            continue;
        if (first == j->n_parts)
            first = p;
        else
            more++;
    }
    if (first == j->n_parts)
        return;
    char msg[900];
    if (more)
        snprintf(msg, sizeof msg, "partition %u: %s (and %u more partition%s part of the "
                 "window: see each partition's warning)", first, j->parts[first].warning, more,
                 more == 1 ? " misses" : "s miss");
    else
        snprintf(msg, sizeof msg, "partition %u: %s", first, j->parts[first].warning);
    job_warn(pg, j, msg);
}

/*
 * Reads part j->cur over the window from after its position, handing each
 * entry to the dispatch callback.  0 when the window's end was reached, 1
 * when the job stops here (worker stopping, cancelled, taken over: the
 * caller tells which), -1 with err when a read failed.
 */
static int run_part(run_t *run, rlink_t *rl, bool archive, const char *start,
                    const char *end, char *err, size_t errlen)
{
    store_replay_worker_t *w = run->w;
    PGconn *pg = run->pg;
    job_t *j = run->j;
    part_t *pt = j->cur;
    /* the window's next id: its start, or right after the position */
    int64_t lo_ms = j->from_ms, lo_seq = 0;
    if (pt->position[0]) {
        if (store__stream_id_parse(pt->position, &lo_ms, &lo_seq) != 0) {
            store__err(err, errlen, "position %s is not a stream id", pt->position);
            return -1;
        }
        id_after(&lo_ms, &lo_seq);
    }
    for (;;) {
        char from[64];
        if (pt->position[0])
            snprintf(from, sizeof from, "(%s", pt->position);
        else
            snprintf(from, sizeof from, "%s", start);
        /* read once: `done` must compare with the count this read asked for */
        uint32_t chunk = atomic_load(&w->chunk);
        redisReply *r = NULL;
        const redisReply *entries;
        if (archive) {
            r = snapshot(rl, pt->stream, from, end, chunk, err, errlen);
            if (!r)
                return -1;
            entries = r->element[1];
            /* entries below the stream's first may be in the archive */
            store__archive_range_t rg = {lo_ms, lo_seq, j->to_ms + 1, 0};
            const redisReply *first = r->element[0];
            int64_t f_ms, f_seq;
            if (first->elements > 0 &&
                store__stream_id_parse(first->element[0]->element[0]->str, &f_ms, &f_seq) == 0 &&
                (f_ms < rg.hi_ms || (f_ms == rg.hi_ms && f_seq < rg.hi_seq))) {
                rg.hi_ms = f_ms;
                rg.hi_seq = f_seq;
            }
            bool gap = rg.lo_ms < rg.hi_ms || (rg.lo_ms == rg.hi_ms && rg.lo_seq < rg.hi_seq);
            PGresult *rows = gap ? store__archive_read(pg, pt->stream, &rg, (int)chunk, err,
                                                       errlen)
                                 : NULL;
            if (gap && !rows) {
                freeReplyObject(r);
                return -1;
            }
            if (rows && PQntuples(rows) > 0) {
                freeReplyObject(r);
                bool go = handle_archive(run, rows);
                PQclear(rows);
                if (!go || !chunk_done(run))
                    return 1;
                store__stream_id_parse(pt->position, &lo_ms, &lo_seq);
                id_after(&lo_ms, &lo_seq);
                continue;
            }
            PQclear(rows);
        } else {
            r = xrange(rl, pt->stream, from, end, (int)chunk, err, errlen);
            if (!r)
                return -1;
            entries = r;
        }
        bool go = handle_stream(run, entries);
        bool done = entries->elements < chunk;
        freeReplyObject(r);
        if (!go || !chunk_done(run))
            return 1;
        if (done)
            return 0;
        if (store__stream_id_parse(pt->position, &lo_ms, &lo_seq) == 0)
            id_after(&lo_ms, &lo_seq);
    }
}

/* Where a stopped job resumes, for the log: "after ID", "after ID in
 * partition P" or "at its start". */
static const char *resume_point(const job_t *j, char *buf, size_t len)
{
    const part_t *pt = j->cur;
    if (!pt->position[0] && (!j->partitioned || j->cur_index == 0))
        snprintf(buf, len, "at its start");
    else if (!pt->position[0])
        snprintf(buf, len, "at the start of partition %u", j->cur_index);
    else if (j->partitioned)
        snprintf(buf, len, "after %s in partition %u", pt->position, j->cur_index);
    else
        snprintf(buf, len, "after %s", pt->position);
    return buf;
}

static void run_job(store_replay_worker_t *w, PGconn *pg, job_t *j)
{
    char err[512], where[128];
    rlink_t link = {.w = w, .pg = pg, .j = j};
    link.rc = evbus_rconn_new(w->redis_url, w->redis_cluster, (int)w->timeout_ms,
                              (int)w->timeout_ms, err, sizeof err);
    if (!link.rc) {
        job_finish(pg, j, err);
        log_error(COMP, "job %s failed: %s", j->id, err);
        return;
    }
    char start[48], end[48];
    snprintf(start, sizeof start, "%lld-0", (long long)j->from_ms);
    snprintf(end, sizeof end, "%lld-18446744073709551615", (long long)j->to_ms);
    /* a partitioned job resumes once a partition was begun; an
     * unpartitioned one once it has a position (as before migration 0011) */
    bool resumed = false, reading = false;
    unsigned n_done = 0;
    for (unsigned p = 0; p < j->n_parts; p++) {
        resumed = resumed || j->parts[p].position[0] ||
                  (j->partitioned && j->parts[p].status != PART_PENDING);
        n_done += j->parts[p].status == PART_COMPLETED;
    }
    /* the archive holds what the stream no longer does (migration 0008) */
    bool archive = atomic_load(&w->archive);
    if (archive && store__archive_present(pg, &archive, err, sizeof err) != 0)
        goto fail;
    if (atomic_load(&w->archive) && !archive)
        log_warn(COMP, "job %s: retention.archive is on but events_archive does not exist "
                 "(migration 0008): replaying from the stream only", j->id);

    /* from here a failure is a partition's read: the error names it */
    reading = true;
    if (!resumed) {
        unsigned n_empty = 0;
        j->total = 0;
        for (unsigned p = 0; p < j->n_parts; p++) {
            bool empty = false;
            j->cur = &j->parts[p];
            j->cur_index = p;
            if (part_count(pg, &link, j, &j->parts[p], archive, start, end, &empty, err,
                           sizeof err) != 0)
                goto fail;
            j->total += j->parts[p].total;
            n_empty += empty;
        }
        if (j->partitioned)
            warn_partitions(pg, j, n_empty, archive);
        else if (j->parts[0].warning)
            job_warn(pg, j, j->parts[0].warning);
        job_progress(pg, j);
        if (j->partitioned)
            log_info(COMP, "job %s started: %lld entries in the window of %u partitions%s", j->id,
                     (long long)j->total, j->n_parts, archive ? " (streams and archive)" : "");
        else
            log_info(COMP, "job %s started: %lld entries in the window%s", j->id,
                     (long long)j->total, archive ? " (stream and archive)" : "");
    } else if (j->partitioned) {
        log_warn(COMP, "job %s resumed (claim %d): %lld of %lld entries were handled by its "
                 "previous host; %u of %u partitions are completed, each other one resumes "
                 "after its own position", j->id, j->claims,
                 (long long)(j->processed + j->skipped + j->failed), (long long)j->total, n_done,
                 j->n_parts);
    } else {
        log_warn(COMP, "job %s resumed after %s (claim %d): %lld of %lld entries were handled "
                 "by its previous host", j->id, j->parts[0].position, j->claims,
                 (long long)(j->processed + j->skipped + j->failed), (long long)j->total);
    }

    run_t run = {.w = w, .pg = pg, .j = j, .last_check = store__mono_ms(),
                 .pc = {.rate = j->rate, .next_ms = (double)store__mono_ms()}};
    /* one partition after the other, each in stream order: every key
     * lives in one partition, so its events are replayed in their order */
    bool stopped = false;
    for (unsigned p = 0; p < j->n_parts && !stopped; p++) {
        if (j->parts[p].status == PART_COMPLETED)
            continue;
        j->cur = &j->parts[p];
        j->cur_index = p;
        j->cur->status = PART_RUNNING;
        int prc = run_part(&run, &link, archive, start, end, err, sizeof err);
        if (prc < 0)
            goto fail;
        stopped = prc > 0;
        if (!stopped)
            j->cur->status = PART_COMPLETED;
    }
    evbus_rconn_free(link.rc);
    if (j->lost) {
        log_warn(COMP, "job %s stopped here %s: another host runs it now", j->id,
                 resume_point(j, where, sizeof where));
    } else if (run.cancelled) {
        job_progress(pg, j);
        log_info(COMP, "job %s cancelled after %lld events", j->id, (long long)j->processed);
    } else if (atomic_load(&w->stop)) {
        job_release(pg, j);
        log_warn(COMP, "job %s handed back (host stopping): it resumes %s", j->id,
                 resume_point(j, where, sizeof where));
    } else {
        job_finish(pg, j, NULL);
        log_info(COMP, "job %s completed: %lld processed, %lld skipped, %lld failed", j->id,
                 (long long)j->processed, (long long)j->skipped, (long long)j->failed);
    }
    return;
fail:
    evbus_rconn_free(link.rc);
    /* a read given up because the host stops or lost the job is no
     * failure of the job: the next host resumes it */
    if (j->lost) {
        log_warn(COMP, "job %s stopped here %s: another host runs it now", j->id,
                 resume_point(j, where, sizeof where));
        return;
    }
    if (atomic_load(&w->stop)) {
        job_release(pg, j);
        log_warn(COMP, "job %s handed back (host stopping): it resumes %s", j->id,
                 resume_point(j, where, sizeof where));
        return;
    }
    if (j->partitioned && reading)
        store__err(err + strlen(err), sizeof err - strlen(err), " (partition %u)", j->cur_index);
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
        char why[400];
        int jrc = job_from_json(&j, row, w, why, sizeof why);
        if (jrc == 1) {
            job_finish(pg, &j, why);
            log_error(COMP, "job %s failed: %s", j.id, why);
        } else if (jrc == 0 && j.claims > REPLAY_MAX_CLAIMS) {
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
    atomic_store(&w->archive, cfg->retention.archive == RETENTION_ARCHIVE_POSTGRES);
}

store_replay_worker_t *store_replay_worker_start(const evbus_config_t *cfg,
                                                 store_replay_dispatch_fn fn, void *ud)
{
    return store_replay_worker_start_on(cfg, NULL, fn, ud);
}

store_replay_worker_t *store_replay_worker_start_on(const evbus_config_t *cfg,
                                                    const char *redis_cluster,
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
    w->partitions = cfg->core.partitions > 1 ? cfg->core.partitions : 1;
    w->redis_cluster = redis_cluster ? strdup(redis_cluster) : NULL;
    if (!w->pg_url || !w->redis_url || !w->stream || (redis_cluster && !w->redis_cluster))
        goto oom;
    w->timeout_ms = cfg->core.redis_command_timeout_ms ? cfg->core.redis_command_timeout_ms : 5000;
    w->retry_ms = 3 * w->timeout_ms;
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
        free(w->redis_cluster);
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
    free(w->redis_cluster);
    free(w->stream);
    free(w);
}
