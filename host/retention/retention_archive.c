/*
 * retention_archive — see retention_archive.h.  The thread loops over
 * steps: read the trimmer's offer, run the partition upkeep when due, and
 * while archiving is on and this host trims, archive one chunk and record
 * the watermark.  Failures back off (0.5 s doubling to 10 s) and are
 * reported in health; nothing here ever trims.
 */
#include "retention/retention_archive.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/rconn.h"
#include "client/retention_lua.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/metrics.h"

#define COMP "retention"
#define UPKEEP_EVERY_MS (3600 * 1000)
#define UPKEEP_RETRY_MS (60 * 1000)
#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS 10000
/* a PostgreSQL that hangs (rather than refusing) shows up as an error */
#define STATEMENT_TIMEOUT "30s"

static const char MARK_LUA[] =
    EVBUS_RETENTION_LUA_FUNCS
    "local cur = redis.call('HGET', KEYS[1], 'archived')\n"
    "if cur == false or idcmp(ARGV[1], cur) > 0 then\n"
    "  redis.call('HSET', KEYS[1], 'archived', ARGV[1])\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

/* Lower the watermark from ARGV[1] to ARGV[2] ('' = none) unless it moved. */
static const char LOWER_LUA[] =
    "if redis.call('HGET', KEYS[1], 'archived') ~= ARGV[1] then return 0 end\n"
    "if ARGV[2] == '' then redis.call('HDEL', KEYS[1], 'archived')\n"
    "else redis.call('HSET', KEYS[1], 'archived', ARGV[2]) end\n"
    "return 1\n";

typedef enum state {
    ST_OFF = 0,     /* retention.archive: off */
    ST_STANDBY,     /* another host holds the trimmer's lease: it archives */
    ST_IDLE,        /* nothing to archive (no limit, or no group read anything) */
    ST_OK,          /* caught up with the floor */
    ST_BEHIND,      /* archiving a backlog */
    ST_PACED,       /* behind, one chunk per interval: a consumer group catches up */
    ST_ERROR,       /* the last step failed: trimming waits */
} state_t;

static const char *const state_names[] = {"off",         "standby", "idle", "ok",
                                          "catching up", "paced",   "error"};

/* One stream the archiver serves: the stream, or one partition's. */
typedef struct slot {
    char *stream, *policy_key;
    /* under mu: from its trimmer */
    bool on, leased, urgent;
    bool fresh;            /* an offer with new work since the thread last looked */
    char upto[48];
    /* under mu: the thread's view, for health */
    state_t state;
    char watermark[48];
    char confirmed[48];    /* the watermark seen in PostgreSQL ("" = none yet) */
    long long lag_entries;
    int64_t lag_ms;
    long long archived_total, errors_total;
    char last_error[256];
    int64_t error_since;   /* wall ms, 0 = no error */
    /* thread only */
    bool reconciled;       /* the watermark was checked against this pg connection */
    int64_t next_at;       /* monotonic: caught up or paced until then */
} slot_t;

struct retention_archive {
    char *pg_url;
    slot_t *slots;
    unsigned n_slots;
    pthread_t thread;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu: from the trimmers and the engine (the settings are one
     * generation's, the same in every slot's offer: the latest one wins) */
    bool stop;
    uint64_t interval_ms, retention_ms;
    uint32_t ahead;
    bool upkeep_now;       /* a setting of the upkeep changed */
    bool upkeep_on;        /* retention.archive is on (for the upkeep) */
    /* under mu: the thread's view, for health */
    bool connected;

    /* thread only */
    evbus_rconn_t *rcn;    /* one server, or a cluster's masters */
    redisContext *rc;      /* the connection of the slot being archived (rcn's) */
    PGconn *pg;
    bool failing;          /* the last step failed (logged once until one succeeds) */
    char failed_on[256];   /* the stream whose step failed first, while failing */
    int64_t upkeep_due, retry_at, backoff;
};

/* ------------------------------------------------------------- steps */

/* "<ms>-<seq>" ids in stream order: -1, 0, 1. */
static int idcmp(const char *a, const char *b)
{
    unsigned long long am = strtoull(a, NULL, 10), bm = strtoull(b, NULL, 10);
    if (am != bm)
        return am < bm ? -1 : 1;
    const char *ad = strchr(a, '-'), *bd = strchr(b, '-');
    unsigned long long as = ad ? strtoull(ad + 1, NULL, 10) : 0;
    unsigned long long bs = bd ? strtoull(bd + 1, NULL, 10) : 0;
    return as < bs ? -1 : as > bs;
}

static const char *str_of(const redisReply *x)
{
    return x && x->type == REDIS_REPLY_STRING ? x->str : "";
}

static char *policy_key_of(const char *stream)
{
    char *k = NULL;
    return asprintf(&k, "%s:retention", stream) < 0 ? NULL : k;
}

int retention_archive_watermark(redisContext *c, const char *stream, char *out, size_t len)
{
    redisReply *x = redisCommand(c, "HGET %s:retention archived", stream);
    if (!x)
        return -1;
    int rc = x->type == REDIS_REPLY_ERROR ? -1 : 0;
    snprintf(out, len, "%s", str_of(x));
    freeReplyObject(x);
    return rc;
}

int retention_archive_mark(redisContext *c, const char *stream, const char *id)
{
    char *key = policy_key_of(stream);
    if (!key)
        return -1;
    const char *argv[] = {"EVAL", MARK_LUA, "1", key, id};
    redisReply *x = redisCommandArgv(c, 5, argv, NULL);
    free(key);
    if (!x)
        return -1;
    int rc = x->type == REDIS_REPLY_ERROR ? -1 : 0;
    if (rc)
        log_error(COMP, "archive: recording the watermark of %s: %s", stream, x->str);
    freeReplyObject(x);
    return rc;
}

int retention_archive_chunk(redisContext *c, PGconn *pg, const char *stream, const char *after,
                            const char *upto, size_t max, retention_archive_step_t *out,
                            char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!upto[0] || strcmp(upto, "0-0") == 0) {
        out->caught_up = true; /* nothing is below the first possible id */
        return 0;
    }
    char start[64], end[64], count[24];
    snprintf(start, sizeof start, "%s%s", after[0] ? "(" : "", after[0] ? after : "-");
    snprintf(end, sizeof end, "(%s", upto);
    snprintf(count, sizeof count, "%zu", max);
    const char *argv[] = {"XRANGE", stream, start, end, "COUNT", count};
    redisReply *x = redisCommandArgv(c, 6, argv, NULL);
    if (!x || x->type != REDIS_REPLY_ARRAY) {
        snprintf(err, errlen, "redis: XRANGE %s: %s", stream,
                 x && x->type == REDIS_REPLY_ERROR ? x->str : c->errstr);
        if (x)
            freeReplyObject(x);
        return -1;
    }
    size_t n = x->elements;
    store_archive_entry_t *e = calloc(n ? n : 1, sizeof *e);
    const char **fields = NULL;
    size_t *lens = NULL, total = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *kv = x->element[i]->elements >= 2 ? x->element[i]->element[1] : NULL;
        total += kv && kv->type == REDIS_REPLY_ARRAY ? kv->elements : 0;
    }
    fields = malloc((total ? total : 1) * sizeof *fields);
    lens = malloc((total ? total : 1) * sizeof *lens);
    if (!e || !fields || !lens) {
        snprintf(err, errlen, "archive: out of memory for %zu entries", n);
        free(e);
        free(fields);
        free(lens);
        freeReplyObject(x);
        return -1;
    }
    size_t f = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *ent = x->element[i];
        e[i].id = str_of(ent->elements >= 1 ? ent->element[0] : NULL);
        e[i].fields = fields + f;
        e[i].lens = lens + f;
        const redisReply *kv = ent->elements >= 2 ? ent->element[1] : NULL;
        for (size_t k = 0; kv && kv->type == REDIS_REPLY_ARRAY && k < kv->elements; k++) {
            fields[f] = kv->element[k]->str ? kv->element[k]->str : "";
            lens[f++] = kv->element[k]->len;
        }
        e[i].n_fields = (size_t)(fields + f - e[i].fields);
    }
    int rc = store_archive_write(pg, stream, e, n, &out->inserted, err, errlen);
    if (rc == 0) {
        out->read = n;
        out->caught_up = n < max;
        if (n) {
            snprintf(out->first, sizeof out->first, "%s", e[0].id);
            snprintf(out->last, sizeof out->last, "%s", e[n - 1].id);
        }
    }
    free(e);
    free(fields);
    free(lens);
    freeReplyObject(x);
    return rc == 0 ? 0 : -1;
}

/* ------------------------------------------------------------- thread */

static struct timespec mono_abs(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    return ts;
}

/* Wait until `until` (monotonic ms), an offer with new work or stop. */
static void wait_until(retention_archive_t *a, int64_t until)
{
    pthread_mutex_lock(&a->mu);
    struct timespec ts = mono_abs(until);
    while (!a->stop && clock_mono_ms() < until)
        if (pthread_cond_timedwait(&a->cv, &a->mu, &ts) != ETIMEDOUT)
            break;
    pthread_mutex_unlock(&a->mu);
}

static void drop_pg(retention_archive_t *a)
{
    if (a->pg)
        PQfinish(a->pg);
    a->pg = NULL;
    for (unsigned i = 0; i < a->n_slots; i++)
        a->slots[i].reconciled = false;
    pthread_mutex_lock(&a->mu);
    a->connected = false;
    pthread_mutex_unlock(&a->mu);
}

/* After any Redis failure: on a cluster a redirect (a reshard, a failover)
 * or a lost node makes the slot map be read again at the next step. */
static void drop_redis(retention_archive_t *a)
{
    evbus_rconn_reset(a->rcn);
    a->rc = NULL;
}

static int ensure_pg(retention_archive_t *a, char *err, size_t errlen)
{
    if (a->pg && PQstatus(a->pg) == CONNECTION_OK)
        return 0;
    drop_pg(a);
    a->pg = store_connect(a->pg_url, err, errlen);
    if (!a->pg)
        return -1;
    PGresult *r = PQexec(a->pg, "SET statement_timeout = '" STATEMENT_TIMEOUT "'");
    PQclear(r);
    pthread_mutex_lock(&a->mu);
    a->connected = true;
    pthread_mutex_unlock(&a->mu);
    return 0;
}

/* a->rc: the connection of sl's stream, whose keys all share its hash
 * tag ({S:p}, {S:p}:retention): on a cluster, the master of its slot. */
static int ensure_redis(retention_archive_t *a, const slot_t *sl, char *err, size_t errlen)
{
    char e[400];
    a->rc = evbus_rconn_get(a->rcn, sl->stream, e, sizeof e);
    if (!a->rc) {
        snprintf(err, errlen, "redis: %s", e);
        return -1;
    }
    return 0;
}

/* The archive must hold what the watermark says; when PostgreSQL lost rows
 * (a restore, a truncate), lower the watermark to its newest entry so the
 * rows still in the stream are archived again.  Once per connection and
 * slot. */
static int reconcile(retention_archive_t *a, slot_t *sl, const char *wm, char *err, size_t errlen)
{
    if (sl->reconciled || !wm[0])
        return 0;
    const char *params[] = {sl->stream};
    PGresult *r = PQexecParams(a->pg, "SELECT ms || '-' || seq FROM events_archive"
                                      " WHERE stream = $1 ORDER BY ms DESC, seq DESC LIMIT 1",
                               1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "archive: %s", PQresultErrorMessage(r));
        err[strcspn(err, "\n")] = '\0';
        PQclear(r);
        return -1;
    }
    char newest[48] = "";
    if (PQntuples(r) > 0)
        snprintf(newest, sizeof newest, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    bool behind = !newest[0] || idcmp(newest, wm) < 0;
    if (behind) {
        log_warn(COMP, "archive: the watermark of %s is %s but PostgreSQL's newest archived entry "
                 "is %s: archiving again from there", sl->stream, wm, newest[0] ? newest : "none");
        const char *argv[] = {"EVAL", LOWER_LUA, "1", sl->policy_key, wm, newest};
        redisReply *x = redisCommandArgv(a->rc, 6, argv, NULL);
        if (!x || x->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "redis: lowering the watermark of %s: %s", sl->stream,
                     x ? x->str : a->rc->errstr);
            freeReplyObject(x);
            drop_redis(a);
            return -1;
        }
        freeReplyObject(x);
    }
    pthread_mutex_lock(&a->mu);
    snprintf(sl->confirmed, sizeof sl->confirmed, "%s", behind ? newest : wm);
    pthread_mutex_unlock(&a->mu);
    sl->reconciled = true;
    return 0;
}

/* A step of `failed` failed: the archiver backs off, so every slot it is
 * archiving waits and says so.  Logged once until a step succeeds. */
static void note_failure(retention_archive_t *a, slot_t *failed, const char *err)
{
    METRIC_INC(archive_errors);
    int64_t now = clock_wall_ms();
    pthread_mutex_lock(&a->mu);
    for (unsigned i = 0; i < a->n_slots; i++) {
        slot_t *sl = &a->slots[i];
        if (sl != failed && !(sl->on && sl->leased && sl->upto[0]))
            continue;
        if (!sl->error_since)
            sl->error_since = now;
        if (sl == failed)
            sl->errors_total++;
        sl->state = ST_ERROR;
        snprintf(sl->last_error, sizeof sl->last_error, "%.255s", err);
    }
    pthread_mutex_unlock(&a->mu);
    if (!a->failing) {
        log_error(COMP, "stream %s: archive failed, trimming waits for it%s: %s", failed->stream,
                  a->n_slots > 1 ? " (in every partition it archives)" : "", err);
        snprintf(a->failed_on, sizeof a->failed_on, "%s", failed->stream);
    }
    a->failing = true;
}

static void note_ok(retention_archive_t *a, slot_t *sl)
{
    pthread_mutex_lock(&a->mu);
    int64_t since = sl->error_since;
    sl->error_since = 0;
    sl->last_error[0] = '\0';
    pthread_mutex_unlock(&a->mu);
    if (a->failing) {
        char after[48] = "";
        if (since)
            snprintf(after, sizeof after, " after %lld ms", (long long)(clock_wall_ms() - since));
        /* named by the stream that failed, which the operator saw in the
         * error, not by sl: with partitions the next step to succeed may
         * be another partition's */
        log_info(COMP, "stream %s: archive works again%s; errors cleared", a->failed_on, after);
    }
    a->failing = false;
}

static long long id_ms(const char *id) { return strtoll(id, NULL, 10); }

/* sl's watermark into wm, read on a->rc.  0, or -1 with the reason (a
 * redirect's text on a cluster) and the connections closed. */
static int watermark_of(retention_archive_t *a, const slot_t *sl, char *wm, size_t len,
                        char *err, size_t errlen)
{
    redisReply *x = redisCommand(a->rc, "HGET %s archived", sl->policy_key);
    if (x && x->type != REDIS_REPLY_ERROR) {
        snprintf(wm, len, "%s", str_of(x));
        freeReplyObject(x);
        return 0;
    }
    snprintf(err, errlen, "redis: HGET %s: %s", sl->policy_key, x ? x->str : a->rc->errstr);
    freeReplyObject(x);
    drop_redis(a);
    return -1;
}

/* One chunk of sl below upto.  1 caught up, 0 more to do, -1 failed (err). */
static int archive_step(retention_archive_t *a, slot_t *sl, const char *upto, char *err,
                        size_t errlen)
{
    if (ensure_redis(a, sl, err, errlen) != 0)
        return -1;
    char wm[48];
    if (watermark_of(a, sl, wm, sizeof wm, err, errlen) != 0)
        return -1;
    if (ensure_pg(a, err, errlen) != 0)
        return -1;
    bool checked = sl->reconciled;
    if (reconcile(a, sl, wm, err, errlen) != 0) {
        if (strncmp(err, "redis:", 6) != 0)
            drop_pg(a);
        return -1;
    }
    /* reconcile may have lowered it */
    if (!checked && sl->reconciled && watermark_of(a, sl, wm, sizeof wm, err, errlen) != 0)
        return -1;
    retention_archive_step_t st;
    if (retention_archive_chunk(a->rc, a->pg, sl->stream, wm, upto, RETENTION_ARCHIVE_CHUNK, &st,
                                err, errlen) != 0) {
        if (a->rc->err || strncmp(err, "redis:", 6) == 0)
            drop_redis(a);
        if (PQstatus(a->pg) != CONNECTION_OK)
            drop_pg(a);
        return -1;
    }
    if (st.last[0] && retention_archive_mark(a->rc, sl->stream, st.last) != 0) {
        snprintf(err, errlen, "redis: recording the watermark: %s",
                 a->rc->err ? a->rc->errstr : "script error");
        drop_redis(a);
        return -1;
    }
    METRIC_ADD(archived, (uint64_t)st.inserted);
    /* the backlog: exact within a chunk, else from the ids' times */
    long long lag = 0;
    int64_t lag_ms = 0;
    if (!st.caught_up && st.read > 0) {
        long long span = id_ms(st.last) - id_ms(st.first);
        lag_ms = id_ms(upto) - id_ms(st.last);
        lag = (long long)((double)st.read * (double)lag_ms / (double)(span > 0 ? span : 1));
        if (lag < 1)
            lag = 1;
    }
    pthread_mutex_lock(&a->mu);
    if (st.last[0])
        snprintf(sl->watermark, sizeof sl->watermark, "%s", st.last);
    else
        snprintf(sl->watermark, sizeof sl->watermark, "%s", wm);
    /* only what this archiver committed itself raises what it vouches for */
    if (st.last[0] && (!sl->confirmed[0] || idcmp(st.last, sl->confirmed) > 0))
        snprintf(sl->confirmed, sizeof sl->confirmed, "%s", st.last);
    sl->archived_total += st.inserted;
    sl->lag_entries = lag;
    sl->lag_ms = lag_ms;
    sl->state = st.caught_up ? ST_OK : ST_BEHIND;
    pthread_mutex_unlock(&a->mu);
    return st.caught_up ? 1 : 0;
}

/* Whether some consumer group of sl's stream is draining a backlog (its
 * lag, Redis 7, above RETENTION_ARCHIVE_BUSY_LAG).  False when unknown. */
static bool groups_behind(retention_archive_t *a, const slot_t *sl)
{
    redisReply *x = redisCommand(a->rc, "XINFO GROUPS %s", sl->stream);
    if (!x)
        return false;
    bool behind = false;
    for (size_t g = 0; x->type == REDIS_REPLY_ARRAY && g < x->elements && !behind; g++) {
        const redisReply *f = x->element[g];
        for (size_t k = 0; f->type == REDIS_REPLY_ARRAY && k + 1 < f->elements; k += 2)
            if (f->element[k]->type == REDIS_REPLY_STRING && !strcmp(f->element[k]->str, "lag") &&
                f->element[k + 1]->type == REDIS_REPLY_INTEGER &&
                f->element[k + 1]->integer > RETENTION_ARCHIVE_BUSY_LAG)
                behind = true;
    }
    freeReplyObject(x);
    return behind;
}

static void run_upkeep(retention_archive_t *a, bool on, uint64_t retention_ms, uint32_t ahead)
{
    int64_t now = clock_mono_ms();
    char err[512];
    a->upkeep_due = now + UPKEEP_RETRY_MS;
    if (ensure_pg(a, err, sizeof err) != 0) {
        if (on)
            log_warn(COMP, "archive partition upkeep: %s (retrying in %d s)", err,
                     UPKEEP_RETRY_MS / 1000);
        return;
    }
    store_retention_t r = {.retention_s = (uint32_t)(retention_ms / 1000),
                           .partitions_ahead = ahead};
    store_upkeep_t up;
    if (store_archive_upkeep(a->pg, &r, on, clock_wall_ms(), &up, err, sizeof err) != 0) {
        log_warn(COMP, "archive partition upkeep failed (retrying in %d s): %s",
                 UPKEEP_RETRY_MS / 1000, err);
        if (PQstatus(a->pg) != CONNECTION_OK)
            drop_pg(a);
        return;
    }
    a->upkeep_due = now + UPKEEP_EVERY_MS;
    if (up.created || up.dropped)
        log_info(COMP, "archive partitions: %d created ahead, %d dropped (archive retention "
                 "%u s)", up.created, up.dropped, r.retention_s);
}

/* The lag gauges: every slot's backlog added up, the longest span. */
static void publish_lag(retention_archive_t *a)
{
    long long lag = 0;
    int64_t lag_ms = 0;
    pthread_mutex_lock(&a->mu);
    for (unsigned i = 0; i < a->n_slots; i++) {
        lag += a->slots[i].lag_entries;
        if (a->slots[i].lag_ms > lag_ms)
            lag_ms = a->slots[i].lag_ms;
    }
    pthread_mutex_unlock(&a->mu);
    METRIC_SET(archive_lag_entries, (uint64_t)lag);
    METRIC_SET(archive_lag_ms, (uint64_t)(lag_ms > 0 ? lag_ms : 0));
}

/* One pass over the slots: a chunk of each that has work and is not
 * caught up or paced.  1 when some slot has more to do at once, 0 when
 * none has (*wake: the earliest slot due), -1 when a step failed or the
 * archiver is stopping. */
static int archive_pass(retention_archive_t *a, uint64_t every, bool *any_on, int64_t *wake)
{
    bool busy = false;
    for (unsigned i = 0; i < a->n_slots; i++) {
        slot_t *sl = &a->slots[i];
        char upto[48];
        pthread_mutex_lock(&a->mu);
        bool stop = a->stop, on = sl->on, leased = sl->leased, urgent = sl->urgent;
        bool fresh = sl->fresh;
        snprintf(upto, sizeof upto, "%s", sl->upto);
        /* the interval read with the offer it came with: an offer that
         * lands after the caller read `every` must not pace this step by
         * the old interval */
        every = a->interval_ms ? a->interval_ms : 1000;
        sl->fresh = false;
        bool idle = !on || !leased || !upto[0];
        if (idle) {
            sl->state = !on ? ST_OFF : !leased ? ST_STANDBY : ST_IDLE;
            sl->lag_entries = 0;
            sl->lag_ms = 0;
            sl->error_since = 0;
            sl->last_error[0] = '\0';
        }
        pthread_mutex_unlock(&a->mu);
        if (stop)
            return -1;
        *any_on = *any_on || on;
        if (idle)
            continue;
        if (!fresh && clock_mono_ms() < sl->next_at) {
            if (sl->next_at < *wake)
                *wake = sl->next_at;
            continue;
        }
        char err[512];
        bool paced = !urgent && ensure_redis(a, sl, err, sizeof err) == 0 && groups_behind(a, sl);
        int rc = archive_step(a, sl, upto, err, sizeof err);
        if (rc < 0) {
            note_failure(a, sl, err);
            a->retry_at = clock_mono_ms() + a->backoff;
            a->backoff = a->backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : a->backoff * 2;
            return -1;
        }
        note_ok(a, sl);
        a->backoff = BACKOFF_FIRST_MS;
        if (rc == 0 && paced) {
            pthread_mutex_lock(&a->mu);
            sl->state = ST_PACED;
            pthread_mutex_unlock(&a->mu);
        }
        if (rc == 1 || paced) {
            sl->next_at = clock_mono_ms() + (int64_t)every;
            if (sl->next_at < *wake)
                *wake = sl->next_at;
        } else {
            busy = true;
        }
    }
    return busy ? 1 : 0;
}

static void *archive_main(void *arg)
{
    retention_archive_t *a = arg;
    pthread_setname_np(pthread_self(), "evbus-archive");
    a->backoff = BACKOFF_FIRST_MS;
    for (;;) {
        pthread_mutex_lock(&a->mu);
        bool stop = a->stop, upkeep_now = a->upkeep_now, on = a->upkeep_on;
        uint64_t every = a->interval_ms ? a->interval_ms : 1000, keep = a->retention_ms;
        uint32_t ahead = a->ahead;
        a->upkeep_now = false;
        pthread_mutex_unlock(&a->mu);
        if (stop)
            break;
        int64_t now = clock_mono_ms();
        if (upkeep_now || now >= a->upkeep_due)
            run_upkeep(a, on, keep, ahead);
        if (now < a->retry_at) {
            wait_until(a, a->retry_at);
            continue;
        }
        bool any_on = false;
        int64_t wake = now + (int64_t)every;
        if (a->upkeep_due < wake)
            wake = a->upkeep_due;
        int rc = archive_pass(a, every, &any_on, &wake);
        publish_lag(a);
        if (rc < 0)
            continue; /* stopping, or backing off until retry_at */
        if (a->pg && !any_on)
            drop_pg(a); /* only the hourly upkeep needs PostgreSQL now */
        if (rc == 0)
            wait_until(a, wake);
    }
    drop_pg(a);
    drop_redis(a);
    return NULL;
}

/* -------------------------------------------------------------- control */

static void free_archive(retention_archive_t *a)
{
    if (!a)
        return;
    for (unsigned i = 0; a->slots && i < a->n_slots; i++) {
        free(a->slots[i].stream);
        free(a->slots[i].policy_key);
    }
    free(a->slots);
    free(a->pg_url);
    evbus_rconn_free(a->rcn);
    free(a);
}

retention_archive_t *retention_archive_start(const retention_archive_opts_t *o)
{
    retention_archive_t *a = calloc(1, sizeof *a);
    if (!a)
        goto oom;
    a->pg_url = o->postgres_url ? strdup(o->postgres_url) : NULL;
    a->n_slots = o->n_streams ? o->n_streams : 1;
    a->slots = calloc(a->n_slots, sizeof *a->slots);
    if (!a->pg_url || !a->slots)
        goto oom;
    char err[400];
    a->rcn = evbus_rconn_new(o->redis_url ? o->redis_url : "redis://127.0.0.1:6379/0",
                             o->redis_cluster, (int)o->redis_connect_ms,
                             (int)o->redis_command_ms, err, sizeof err);
    if (!a->rcn) {
        log_error(COMP, "archive: %s", err);
        free_archive(a);
        return NULL;
    }
    for (unsigned i = 0; i < a->n_slots; i++) {
        slot_t *sl = &a->slots[i];
        sl->stream = strdup(o->streams && o->streams[i] ? o->streams[i] : "evbus:events");
        sl->policy_key = sl->stream ? policy_key_of(sl->stream) : NULL;
        if (!sl->stream || !sl->policy_key)
            goto oom;
    }
    a->ahead = o->partitions_ahead ? o->partitions_ahead : 3;
    a->interval_ms = 1000;
    a->retention_ms = 30ULL * 86400000;
    pthread_mutex_init(&a->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&a->thread, NULL, archive_main, a);
    if (rc == 0)
        return a;
    log_error(COMP, "archive: cannot start its thread: %s", strerror(rc));
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free_archive(a);
    return NULL;
oom:
    log_error(COMP, "archive: out of memory");
    free_archive(a);
    return NULL;
}

void retention_archive_stop(retention_archive_t *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->mu);
    a->stop = true;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free_archive(a);
}

void retention_archive_offer(retention_archive_t *a, unsigned slot,
                             const retention_archive_offer_t *o)
{
    if (!a || slot >= a->n_slots)
        return;
    slot_t *sl = &a->slots[slot];
    const char *upto = o->upto ? o->upto : "";
    pthread_mutex_lock(&a->mu);
    bool work = o->on != sl->on || o->leased != sl->leased || strcmp(upto, sl->upto) != 0;
    if (o->on != a->upkeep_on || o->retention_ms != a->retention_ms)
        a->upkeep_now = true;
    sl->on = o->on;
    sl->leased = o->leased;
    sl->urgent = o->urgent;
    snprintf(sl->upto, sizeof sl->upto, "%s", upto);
    sl->fresh = sl->fresh || work;
    a->upkeep_on = o->on;
    a->interval_ms = o->interval_ms;
    a->retention_ms = o->retention_ms;
    if (work || a->upkeep_now)
        pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

void retention_archive_configure(retention_archive_t *a, uint32_t partitions_ahead)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->mu);
    if (partitions_ahead != a->ahead) {
        a->ahead = partitions_ahead;
        a->upkeep_now = true;
        pthread_cond_signal(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
}

void retention_archive_confirmed(retention_archive_t *a, unsigned slot, char *out, size_t len)
{
    if (!a || slot >= a->n_slots) {
        snprintf(out, len, "%s", "");
        return;
    }
    pthread_mutex_lock(&a->mu);
    snprintf(out, len, "%s", a->slots[slot].confirmed);
    pthread_mutex_unlock(&a->mu);
}

int retention_archive_level(retention_archive_t *a, unsigned slot)
{
    if (!a || slot >= a->n_slots)
        return 0;
    pthread_mutex_lock(&a->mu);
    const slot_t *sl = &a->slots[slot];
    int l = sl->on && sl->state == ST_ERROR ? 2 : 0;
    pthread_mutex_unlock(&a->mu);
    return l;
}

json_t *retention_archive_health(retention_archive_t *a, unsigned slot)
{
    if (slot >= a->n_slots)
        return json_object();
    pthread_mutex_lock(&a->mu);
    const slot_t *sl = &a->slots[slot];
    json_t *o = json_pack(
        "{s:s, s:s, s:b, s:s, s:s, s:I, s:I, s:I, s:I, s:s?, s:I}", "mode",
        sl->on ? "postgres" : "off", "state", state_names[sl->state], "connected", a->connected,
        "watermark", sl->watermark, "upto", sl->upto, "lag_entries",
        (json_int_t)sl->lag_entries, "lag_ms", (json_int_t)sl->lag_ms, "archived_total",
        (json_int_t)sl->archived_total, "errors_total", (json_int_t)sl->errors_total,
        "last_error", sl->last_error[0] ? sl->last_error : NULL, "error_for_ms",
        (json_int_t)(sl->error_since ? clock_wall_ms() - sl->error_since : 0));
    pthread_mutex_unlock(&a->mu);
    return o;
}
