/*
 * routes_dlq — dead letters over the operator API: list, get, retry,
 * delete, and the bulk re-drive with its background jobs.
 *
 * Everything that touches the queue is libevbus's (evbus_dlq_page, _get,
 * _retry, _remove, _scan, _count): tenant isolation, the filters, the
 * cursors' stability and the atomic retry live there, the same code
 * `evbusctl dlq` runs.  This file adds the HTTP shapes, the signed
 * cursors and confirm tokens, and the re-drive jobs.
 *
 * A re-drive is two calls: a dry run that counts the matching entries and
 * returns a confirm token (an HMAC over the caller's tenant, the
 * canonical filter, the count and an expiry), then the real call with
 * that token.  The real call collects the entries' ids at once (oldest
 * first), and one job thread retries them at each job's own rate, jobs
 * interleaved by due time.  Jobs live in memory only: they end with the
 * process (the entries not yet retried simply stay in the queue).
 *
 * It does not choose where an entry goes: evbus_dlq_retry sends it back
 * to its own stream, to be delivered again to the handlers of its type.
 * On a partitioned stream the selection covers every partition's
 * dead-letter stream {S:p}:dlq, the job goes through them merged oldest
 * first, and each entry goes back into its own partition's stream {S:p}
 * (the stream it names).
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "admin/admin_internal.h"
#include "core/core_settings.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/log.h"

enum {
    LIST_DEFAULT = 50,
    LIST_MAX = 500,
    /* the list's reply cache (api.h cache_ms): a retry, delete or re-drive
     * start through the API clears it at once */
    LIST_CACHE_MS = 250,
    /* `total` is a scan of the queue: given only when the queue is small */
    TOTAL_SCAN_MAX = 10000,
    REDRIVE_RATE_DEFAULT = 100,
    CONFIRM_TTL_MS = 10 * 60 * 1000,
    /* jobs kept in memory; the oldest finished one makes room */
    JOBS_MAX = 32,
    /* the migration that adds the PURGED status (as evbusctl dlq delete) */
    PURGED_MIGRATION = 7,
};

static const char DLQ_WHAT[] = "dead letter";

/* ---- values ------------------------------------------------------------- */

/* "ms" or "ms-seq", as Redis stream ids are written. */
static bool stream_id_ok(const char *s)
{
    size_t n = strlen(s), ms = strspn(s, "0123456789");
    if (n == 0 || n >= EVBUS_STREAM_ID_LEN || ms == 0 || ms > 20)
        return false;
    if (s[ms] == '\0')
        return true;
    size_t seq = strspn(s + ms + 1, "0123456789");
    return s[ms] == '-' && seq > 0 && seq <= 20 && s[ms + 1 + seq] == '\0';
}

/* The dead-letter id of the path, or NULL with a 400 set. */
static const char *path_id(admin_req_t *r)
{
    const char *id = r->params[0];
    if (!id || !stream_id_ok(id)) {
        admin_bad(r, "id", "a dead-letter id is a stream id such as 1733570000000-0");
        return NULL;
    }
    return id;
}

/* Where the dead letter {id} names is: the plain id and its dead-letter
 * stream (owned).  With partitions, {id} is "<id>:<partition>"
 * (evbus_dlq_merged_id) and the stream is that partition's. */
typedef struct dlq_target {
    const char *shown; /* {id} as given */
    char id[EVBUS_STREAM_ID_LEN];
    char *dlq;
} dlq_target_t;

/* 0, or -1 with the reply set (400 naming "id", or 500). */
static int target_of(admin_req_t *r, dlq_target_t *t)
{
    const evbus_config_t *cfg = r->gen->cfg;
    t->dlq = NULL;
    t->shown = r->params[0];
    if (cfg->core.partitions <= 1) {
        if (!path_id(r))
            return -1;
        snprintf(t->id, sizeof t->id, "%s", t->shown);
        t->dlq = strdup(cfg->core.dlq_stream);
    } else {
        size_t p = 0;
        if (!t->shown || evbus_dlq_merged_id(t->shown, cfg->core.partitions, t->id, &p) != 0) {
            admin_bad(r, "id", "a dead-letter id of a partitioned stream is ID:PARTITION such "
                      "as 1733570000000-0:3 (partitions: %u)", cfg->core.partitions);
            return -1;
        }
        t->dlq = core_partition_key(cfg, (unsigned)p, ":dlq");
    }
    if (!t->dlq) {
        admin_error(r, 500, "internal", "", "out of memory");
        return -1;
    }
    return 0;
}

/* The leading word of a libevbus filter message ("reason \"x\": ...",
 * "since: ...") is the field at fault. */
static void filter_field(const char *err, const char *prefix, char *out, size_t len)
{
    static const char *const fields[] = {"tenant", "type",  "reason",  "handler",
                                         "since",  "until", "event_id"};
    size_t n = strspn(err, "abcdefghijklmnopqrstuvwxyz_");
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        if (strlen(fields[i]) == n && strncmp(err, fields[i], n) == 0) {
            snprintf(out, len, "%s%s", prefix, fields[i]);
            return;
        }
    snprintf(out, len, "%s", *prefix ? "filter" : "query");
}

/* 400 naming the field when f is not a valid filter; 0 when it is. */
static int filter_check(admin_req_t *r, const evbus_dlq_filter_t *f, const char *prefix)
{
    char err[256], field[32];
    if (evbus_dlq_filter_check(NULL, f, err, sizeof err) == 0)
        return 0;
    filter_field(err, prefix, field, sizeof field);
    admin_bad(r, field, "%s", err);
    return -1;
}

/* The list's filter from the query; -1 with the reply set. */
static int query_filter(admin_req_t *r, evbus_dlq_filter_t *f)
{
    *f = (evbus_dlq_filter_t){0};
    if (admin_query_tenant(r, &f->tenant) != 0 || admin_query_word(r, "type", 256, &f->type) != 0 ||
        admin_query_word(r, "handler", 160, &f->handler) != 0 ||
        admin_query_word(r, "reason", 64, &f->reason) != 0 ||
        admin_query_time(r, "since", &f->since_ms) != 0 ||
        admin_query_time(r, "until", &f->until_ms) != 0)
        return -1;
    /* any CloudEvent id (spaces included): libevbus's check bounds it */
    f->event_id = admin_query(r, "event_id");
    return filter_check(r, f, "");
}

/* A failed libevbus call as a reply: the caller's input (400), or Redis (503). */
static int client_failure(admin_req_t *r, int rc, const char *field, const char *err)
{
    if (rc == EVBUS_CLIENT_EINVAL)
        return admin_bad(r, field, "%s", err);
    if (rc == EVBUS_CLIENT_EFULL)
        return admin_unavailable(r, "", "%s", err);
    return admin_unavailable(r, "", "redis: %s", err);
}

/* ---- entries as JSON ------------------------------------------------------ */

/* A list item: everything but the event itself and the attempt errors
 * (up to 16 texts each: the detail has them). */
static json_t *entry_item(const evbus_dlq_entry_t *e)
{
    json_t *o = evbus_dlq_entry_json(e);
    if (o) {
        json_object_del(o, "raw");
        json_object_del(o, "event");
        json_object_del(o, "attempt_errors");
    }
    return o;
}

/* One entry in full: the event parsed when it is JSON, else its bytes in
 * base64 (event_encoding says which). */
static json_t *entry_full(const evbus_dlq_entry_t *e)
{
    json_t *o = evbus_dlq_entry_json(e);
    if (!o)
        return NULL;
    json_object_del(o, "raw");
    if (!json_is_null(json_object_get(o, "event"))) {
        json_object_set_new(o, "event_encoding", json_string("json"));
        return o;
    }
    size_t cap = 4 * ((e->event_len + 2) / 3) + 1;
    char *b64 = malloc(cap);
    if (!b64) {
        json_decref(o);
        return NULL;
    }
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)e->event, (int)e->event_len);
    json_object_set_new(o, "event", json_string(b64));
    json_object_set_new(o, "event_encoding", json_string("base64"));
    free(b64);
    return o;
}

/* ---- GET /api/v1/dlq ------------------------------------------------------ */

/* Number of entries of the caller's tenant matching f, or -1 when the
 * queue is too long to count on every request. */
static long long cheap_total(evbus_client_t *c, const char *dlq, const evbus_dlq_filter_t *f)
{
    char err[256];
    long long len = evbus_dlq_length(c, dlq, err, sizeof err);
    if (len < 0 || len > TOTAL_SCAN_MAX)
        return -1;
    ssize_t n = evbus_dlq_count(c, dlq, f, err, sizeof err);
    return n < 0 ? -1 : (long long)n;
}

/* The names of the partitions' dead-letter streams ({S:p}:dlq), NULL when
 * memory runs out; free with free_names. */
static char **partition_dlqs(const evbus_config_t *cfg)
{
    unsigned n = cfg->core.partitions;
    char **v = calloc(n, sizeof *v);
    for (unsigned p = 0; v && p < n; p++)
        if (!(v[p] = core_partition_key(cfg, p, ":dlq"))) {
            for (unsigned k = 0; k < p; k++)
                free(v[k]);
            free(v);
            return NULL;
        }
    return v;
}

static void free_names(char **v, unsigned n)
{
    for (unsigned p = 0; v && p < n; p++)
        free(v[p]);
    free(v);
}

/*
 * GET /api/v1/dlq on a partitioned stream: every partition's dead letters
 * merged newest first (evbus_dlq_page_merged); an item's dlq_id is
 * "<id>:<partition>" and it says its "partition".
 */
static int dlq_list_partitions(admin_req_t *r, const evbus_dlq_filter_t *f, long limit,
                               char *after)
{
    const evbus_config_t *cfg = r->gen->cfg;
    unsigned np = cfg->core.partitions;
    evbus_client_t *c = admin_redis(r);
    char **dlqs = c ? partition_dlqs(cfg) : NULL;
    size_t *from = dlqs ? calloc((size_t)limit, sizeof *from) : NULL;
    if (!from) {
        free(after);
        free_names(dlqs, np);
        return c ? admin_error(r, 500, "internal", "", "out of memory") : 0;
    }
    evbus_dlq_entry_t *es = NULL;
    size_t n = 0;
    char next[EVBUS_DLQ_MERGED_CURSOR_LEN], err[256];
    int rc = evbus_dlq_page_merged(c, (const char *const *)dlqs, np, f, after, (size_t)limit, &es,
                                   &n, from, next, err, sizeof err);
    if (rc != 0) {
        free(after);
        free(from);
        free_names(dlqs, np);
        char field[32];
        filter_field(err, "", field, sizeof field);
        return client_failure(r, rc, strncmp(err, "cursor", 6) ? field : "cursor", err);
    }
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = entry_item(&es[i]);
        char id[EVBUS_DLQ_MERGED_CURSOR_LEN];
        snprintf(id, sizeof id, "%s:%zu", es[i].dlq_id, from[i]);
        json_object_set_new(o, "dlq_id", json_string(id));
        json_object_set_new(o, "partition", json_integer((json_int_t)from[i]));
        json_array_append_new(items, o);
    }
    evbus_dlq_list_free(es, n);
    json_t *o = json_pack("{s:o}", "items", items);
    if (next[0]) {
        char *cur = admin_cursor_make(r, next);
        json_object_set_new(o, "next_cursor", json_string(cur));
        free(cur);
    } else {
        json_object_set_new(o, "next_cursor", json_null());
    }
    long long total = 0;
    for (unsigned p = 0; p < np && !after && total >= 0; p++) {
        long long t = cheap_total(c, dlqs[p], f);
        total = t < 0 ? -1 : total + t;
    }
    if (!after && total >= 0)
        json_object_set_new(o, "total", json_integer(total));
    free(after);
    free(from);
    free_names(dlqs, np);
    return admin_json(r, 200, o);
}

static int dlq_list(admin_req_t *r)
{
    long limit;
    evbus_dlq_filter_t f;
    char *after = NULL;
    if (admin_query_int(r, "limit", 1, LIST_MAX, LIST_DEFAULT, &limit) != 0 ||
        query_filter(r, &f) != 0 || admin_query_cursor(r, &after) != 0)
        return 0;
    if (r->gen->cfg->core.partitions > 1)
        return dlq_list_partitions(r, &f, limit, after);
    if (after && !stream_id_ok(after)) {
        free(after);
        return admin_bad(r, "cursor", "not a cursor of this endpoint");
    }
    evbus_client_t *c = admin_redis(r);
    if (!c) {
        free(after);
        return 0;
    }
    const char *dlq = r->gen->cfg->core.dlq_stream;
    evbus_dlq_entry_t *es = NULL;
    size_t n = 0;
    char next[EVBUS_STREAM_ID_LEN], err[256];
    int rc = evbus_dlq_page(c, dlq, &f, after, (size_t)limit, &es, &n, next, err, sizeof err);
    if (rc != 0) {
        free(after);
        char field[32];
        filter_field(err, "", field, sizeof field);
        return client_failure(r, rc, field, err);
    }
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(items, entry_item(&es[i]));
    evbus_dlq_list_free(es, n);
    json_t *o = json_pack("{s:o}", "items", items);
    if (next[0]) {
        char *cur = admin_cursor_make(r, next);
        json_object_set_new(o, "next_cursor", json_string(cur));
        free(cur);
    } else {
        json_object_set_new(o, "next_cursor", json_null());
    }
    /* the first page of a walk says how many there are, when that is cheap */
    long long total = after ? -1 : cheap_total(c, dlq, &f);
    if (total >= 0)
        json_object_set_new(o, "total", json_integer(total));
    free(after);
    return admin_json(r, 200, o);
}

/* ---- one entry ------------------------------------------------------------ */

static int dlq_get(admin_req_t *r)
{
    dlq_target_t t;
    if (target_of(r, &t) != 0)
        return 0;
    evbus_client_t *c = admin_redis(r);
    if (!c) {
        free(t.dlq);
        return 0;
    }
    evbus_dlq_entry_t e;
    char err[256];
    int rc = evbus_dlq_get(c, t.dlq, t.id, r->tenant, &e, err, sizeof err);
    free(t.dlq);
    if (rc == 1)
        return admin_not_found(r, "id", DLQ_WHAT);
    if (rc != 0)
        return client_failure(r, rc, "id", err);
    json_t *o = entry_full(&e);
    evbus_dlq_entry_free(&e);
    if (!o)
        return admin_error(r, 500, "internal", "", "out of memory");
    json_object_set_new(o, "dlq_id", json_string(t.shown));
    return admin_json(r, 200, o);
}

static int dlq_retry(admin_req_t *r)
{
    dlq_target_t t;
    if (target_of(r, &t) != 0)
        return 0;
    const char *id = t.shown;
    evbus_client_t *c = admin_redis(r);
    if (!c) {
        free(t.dlq);
        return 0;
    }
    char new_id[EVBUS_STREAM_ID_LEN], err[256];
    int rc = evbus_dlq_retry(c, t.dlq, t.id, r->tenant, new_id, sizeof new_id, err, sizeof err);
    free(t.dlq);
    admin_audit(r, id, rc == 0 ? 1 : 0, rc == 0 ? "ok" : rc == 1 ? "error: not found" : "error: failed");
    if (rc == 1)
        return admin_not_found(r, "id", DLQ_WHAT);
    if (rc != 0)
        return client_failure(r, rc, "id", err);
    return admin_json(r, 200, json_pack("{s:s, s:s}", "dlq_id", id, "stream_id", new_id));
}

/*
 * As `evbusctl dlq delete ID`: with PostgreSQL configured, the event's
 * metadata row is marked PURGED, and when PostgreSQL cannot do that the
 * entry is not removed.
 */
static int dlq_delete_at(admin_req_t *r, const dlq_target_t *t);

static int dlq_delete(admin_req_t *r)
{
    dlq_target_t t;
    if (target_of(r, &t) != 0)
        return 0;
    int rc = dlq_delete_at(r, &t);
    free(t.dlq);
    return rc;
}

static int dlq_delete_at(admin_req_t *r, const dlq_target_t *t)
{
    const char *id = t->shown;
    PGconn *pg = NULL;
    char err[512];
    if (r->gen->cfg->store.postgres_url) {
        if (!(pg = admin_pg(r)))
            return 0;
        int applied = store_migration_applied(pg, PURGED_MIGRATION, err, sizeof err);
        if (applied != 1) {
            if (applied < 0)
                admin_pg_broken(r);
            return admin_unavailable(r, "", "%s; nothing was removed",
                                     applied == 0 ? "PostgreSQL's schema has no PURGED status "
                                                    "yet (migration 0007): run `evbusctl "
                                                    "migrate up`"
                                                  : err);
        }
    }
    evbus_client_t *c = admin_redis(r);
    if (!c)
        return 0;
    evbus_dlq_entry_t *es = NULL;
    size_t n = 0;
    const char *ids[1] = {t->id};
    ssize_t d = evbus_dlq_remove(c, t->dlq, ids, 1, r->tenant, NULL, &es, &n, err, sizeof err);
    if (d < 0) {
        admin_audit(r, id, 0, "error: failed");
        return client_failure(r, (int)d, "id", err);
    }
    if (n == 0) {
        admin_audit(r, id, 0, "error: not found");
        return admin_not_found(r, "id", DLQ_WHAT);
    }
    json_t *marked = json_null();
    const char *warning = NULL;
    if (pg && es[0].event_id[0] && !es[0].replay_job) {
        const char *ev[1] = {es[0].event_id};
        int m = store_events_mark_purged(pg, ev, 1, err, sizeof err);
        if (m < 0)
            warning = err;
        else
            marked = json_integer(m);
    } else if (pg) {
        marked = json_integer(0);
    }
    evbus_dlq_list_free(es, n);
    admin_audit(r, id, 1, warning ? "ok: metadata not marked PURGED" : "ok");
    json_t *o = json_pack("{s:s, s:b, s:o}", "dlq_id", id, "deleted", 1, "marked_purged", marked);
    if (warning)
        json_object_set_new(o, "warning", json_string(warning));
    return admin_json(r, 200, o);
}

/* ---- re-drive jobs ------------------------------------------------------------ */

typedef enum { JOB_RUNNING, JOB_DONE, JOB_CANCELLED, JOB_FAILED } job_state_t;

static const char *const JOB_STATES[] = {"running", "done", "cancelled", "failed"};

/* A dead letter a re-drive retries: its id in the dead-letter stream of
 * partition `part` (0 on an unpartitioned stream). */
typedef struct redrive_id {
    char id[EVBUS_STREAM_ID_LEN];
    unsigned part;
} redrive_id_t;

typedef struct job {
    char id[24];
    char *tenant;      /* whose entries it retries (NULL = every tenant's): immutable */
    char *owner;       /* the starting token's tenant (NULL = "*"), for the end's audit */
    char *token_name;  /* the starting token's name */
    char *filter_json; /* canonical filter text */
    redrive_id_t *ids; /* oldest first: immutable */
    size_t total;
    unsigned rate;
    /* guarded by jobs->mu */
    size_t next, done, failed, gone;
    bool busy; /* the job thread is retrying one of its entries */
    job_state_t state;
    int64_t start_mono, started_ms, finished_ms;
    char error[256];
} job_t;

struct admin_jobs {
    admin_t *admin;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a new job, a cancel, stop */
    bool stop;
    job_t *jobs[JOBS_MAX];
    size_t n;
    char *redis_url, *stream;
    char *cluster; /* redis.cluster's seeds, NULL: one server */
    /* the dead-letter streams: dlq.stream, or one per partition ({S:p}:dlq;
     * `partitions` is a restart setting) */
    char **dlqs;
    unsigned partitions;
};

static void job_free(job_t *j)
{
    if (!j)
        return;
    free(j->tenant);
    free(j->owner);
    free(j->token_name);
    free(j->filter_json);
    free(j->ids);
    free(j);
}

/* Under mu. */
static json_t *job_json(const job_t *j)
{
    char s[CLOCK_RFC3339_LEN], f[CLOCK_RFC3339_LEN];
    json_t *filter = json_loads(j->filter_json, 0, NULL);
    return json_pack("{s:s, s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:s, s:o, s:o}", "id", j->id,
                     "state", JOB_STATES[j->state], "filter", filter ? filter : json_object(),
                     "total", (json_int_t)j->total, "done", (json_int_t)j->done, "failed",
                     (json_int_t)j->failed, "gone", (json_int_t)j->gone, "rate",
                     (json_int_t)j->rate, "started_at", clock_rfc3339(j->started_ms, s),
                     "finished_at",
                     j->finished_ms ? json_string(clock_rfc3339(j->finished_ms, f)) : json_null(),
                     "error", j->error[0] ? json_string(j->error) : json_null());
}

/* Under mu. */
static void job_finish(job_t *j, job_state_t st, const char *error)
{
    j->state = st;
    j->finished_ms = clock_wall_ms();
    if (error)
        snprintf(j->error, sizeof j->error, "%s", error);
}

/* The audit record of a job's end, written from the job thread: a request
 * in the name of the token that started the job. */
static void job_audit_end(admin_t *a, const char *token_name, const char *owner,
                          const char *target, long long done, const char *result)
{
    admin_req_t r = {.admin = a, .engine = a->eng, .gen = engine_current(a->eng),
                     .method = "POST", .path = "/api/v1/dlq/redrive", .token_name = token_name,
                     .tenant = owner, .route = "dlq.redrive"};
    admin_audit(&r, target, done, result);
    if (r.gen)
        generation_unref(r.gen);
}

/* The running job whose next entry is due first (NULL when none), and when. */
static job_t *next_due(struct admin_jobs *js, int64_t *due)
{
    job_t *pick = NULL;
    for (size_t i = 0; i < js->n; i++) {
        job_t *j = js->jobs[i];
        if (j->state != JOB_RUNNING || j->busy || j->next >= j->total)
            continue;
        /* entry k of a job at rate r is due k/r s after its start: no bursts */
        int64_t d = j->start_mono + (int64_t)((double)j->next * 1000.0 / j->rate);
        if (!pick || d < *due) {
            pick = j;
            *due = d;
        }
    }
    return pick;
}

/* The job thread's client, with the deployment's partition count (its
 * first command compares it with the record, as every client's does). */
static evbus_client_t *jobs_client(const struct admin_jobs *js, char *err, size_t errlen)
{
    evbus_client_t *c = js->cluster ? evbus_client_new_cluster(js->cluster, js->stream, err, errlen)
                                    : evbus_client_new(js->redis_url, js->stream, err, errlen);
    if (c && evbus_client_set_partitions(c, js->partitions) != 0) {
        snprintf(err, errlen, "%s", evbus_client_error(c));
        evbus_client_free(c);
        c = NULL;
    }
    return c;
}

static void *jobs_main(void *arg)
{
    struct admin_jobs *js = arg;
    evbus_client_t *c = NULL;
    char err[256];
    pthread_mutex_lock(&js->mu);
    while (!js->stop) {
        int64_t due = 0;
        job_t *j = next_due(js, &due);
        if (!j) {
            pthread_cond_wait(&js->cv, &js->mu);
            continue;
        }
        if (due > clock_mono_ms()) {
            struct timespec ts = {(time_t)(due / 1000), (long)(due % 1000) * 1000000};
            pthread_cond_timedwait(&js->cv, &js->mu, &ts);
            continue;
        }
        redrive_id_t id = j->ids[j->next++];
        j->busy = true;
        pthread_mutex_unlock(&js->mu);

        int rc = EVBUS_CLIENT_EREDIS;
        bool fatal = false;
        if (!c && !(c = jobs_client(js, err, sizeof err)))
            fatal = true;
        char new_id[EVBUS_STREAM_ID_LEN];
        /* back into the stream the entry names: its partition's */
        if (c)
            rc = evbus_dlq_retry(c, js->dlqs[id.part], id.id, j->tenant, new_id, sizeof new_id,
                                 err, sizeof err);
        /* a full stream or a lost Redis is no entry's fault: stop there */
        if (c && rc != 0 && rc != 1 &&
            (rc == EVBUS_CLIENT_EFULL || evbus_client_check(c, NULL, 0) != 0))
            fatal = true;

        pthread_mutex_lock(&js->mu);
        j->busy = false;
        if (rc == 0)
            j->done++;
        else if (rc == 1)
            j->gone++;
        else if (!fatal)
            j->failed++;
        if (rc != 0 && rc != 1 && !fatal) {
            char shown[EVBUS_DLQ_MERGED_CURSOR_LEN];
            if (js->partitions > 1)
                snprintf(shown, sizeof shown, "%s:%u", id.id, id.part);
            else
                snprintf(shown, sizeof shown, "%s", id.id);
            log_warn("admin", "re-drive %s: dead letter %s: %s", j->id, shown, err);
        }
        bool ended = false;
        if (j->state == JOB_RUNNING && (fatal || j->next >= j->total)) {
            job_finish(j, fatal ? JOB_FAILED : JOB_DONE, fatal ? err : NULL);
            ended = true;
        }
        if (ended) {
            char target[600];
            snprintf(target, sizeof target, "job %s: %zu of %zu retried, %zu failed, %zu gone",
                     j->id, j->done, j->total, j->failed, j->gone);
            long long done = (long long)j->done;
            const char *result = j->state == JOB_DONE ? "ok: done" : "error: failed";
            char *name = strdup(j->token_name), *owner = j->owner ? strdup(j->owner) : NULL;
            pthread_mutex_unlock(&js->mu);
            job_audit_end(js->admin, name ? name : "-", owner, target, done, result);
            free(name);
            free(owner);
            pthread_mutex_lock(&js->mu);
        }
    }
    pthread_mutex_unlock(&js->mu);
    if (c)
        evbus_client_free(c);
    return NULL;
}

int admin__jobs_start(admin_t *a, const evbus_config_t *cfg, char *err, size_t errlen)
{
    struct admin_jobs *js = calloc(1, sizeof *js);
    if (!js) {
        snprintf(err, errlen, "admin: out of memory");
        return -1;
    }
    js->admin = a;
    js->redis_url = strdup(cfg->core.redis_url);
    js->cluster = core_redis_cluster(cfg) ? strdup(core_redis_cluster(cfg)) : NULL;
    js->stream = strdup(cfg->core.stream);
    js->partitions = cfg->core.partitions > 1 ? cfg->core.partitions : 1;
    js->dlqs = js->partitions > 1 ? partition_dlqs(cfg) : calloc(1, sizeof *js->dlqs);
    if (js->dlqs && js->partitions == 1 && !(js->dlqs[0] = strdup(cfg->core.dlq_stream))) {
        free(js->dlqs);
        js->dlqs = NULL;
    }
    if (!js->redis_url || !js->stream || !js->dlqs || (core_redis_cluster(cfg) && !js->cluster)) {
        free(js->redis_url);
        free(js->cluster);
        free(js->stream);
        free(js);
        snprintf(err, errlen, "admin: out of memory");
        return -1;
    }
    pthread_mutex_init(&js->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* due times are clock_mono_ms() */
    pthread_cond_init(&js->cv, &ca);
    pthread_condattr_destroy(&ca);
    a->jobs = js;
    int rc = pthread_create(&js->thread, NULL, jobs_main, js);
    if (rc != 0) {
        snprintf(err, errlen, "admin: cannot start the re-drive thread: %s", strerror(rc));
        return -1;
    }
    js->started = true;
    return 0;
}

void admin__jobs_stop(admin_t *a)
{
    struct admin_jobs *js = a->jobs;
    if (!js)
        return;
    if (js->started) {
        pthread_mutex_lock(&js->mu);
        js->stop = true;
        pthread_cond_broadcast(&js->cv);
        pthread_mutex_unlock(&js->mu);
        pthread_join(js->thread, NULL);
    }
    for (size_t i = 0; i < js->n; i++)
        job_free(js->jobs[i]);
    pthread_cond_destroy(&js->cv);
    pthread_mutex_destroy(&js->mu);
    free(js->redis_url);
    free(js->cluster);
    free(js->stream);
    free_names(js->dlqs, js->partitions);
    free(js);
    a->jobs = NULL;
}

/* Adds j (0), or -1 when every slot holds a running job.  Under mu. */
static int jobs_add(struct admin_jobs *js, job_t *j)
{
    if (js->n == JOBS_MAX) {
        size_t old = JOBS_MAX;
        for (size_t i = 0; i < js->n; i++) /* jobs are in start order */
            if (js->jobs[i]->state != JOB_RUNNING && !js->jobs[i]->busy) {
                old = i;
                break;
            }
        if (old == JOBS_MAX)
            return -1;
        job_free(js->jobs[old]);
        memmove(&js->jobs[old], &js->jobs[old + 1], (js->n - old - 1) * sizeof *js->jobs);
        js->n--;
    }
    js->jobs[js->n++] = j;
    return 0;
}

/* The job of the path the caller may see, or NULL.  Under mu. */
static job_t *job_find(struct admin_jobs *js, admin_req_t *r)
{
    for (size_t i = 0; i < js->n; i++) {
        job_t *j = js->jobs[i];
        if (strcmp(j->id, r->params[0]) != 0)
            continue;
        /* a tenant token sees the jobs over its own tenant's entries only */
        if (r->tenant && (!j->tenant || strcmp(j->tenant, r->tenant) != 0))
            return NULL;
        return j;
    }
    return NULL;
}

static int redrive_get(admin_req_t *r)
{
    struct admin_jobs *js = r->admin->jobs;
    pthread_mutex_lock(&js->mu);
    job_t *j = job_find(js, r);
    json_t *o = j ? job_json(j) : NULL;
    pthread_mutex_unlock(&js->mu);
    if (!o)
        return admin_not_found(r, "job", "re-drive job");
    return admin_json(r, 200, o);
}

/* Cancels a running job; a finished one is returned unchanged. */
static int redrive_cancel(admin_req_t *r)
{
    struct admin_jobs *js = r->admin->jobs;
    pthread_mutex_lock(&js->mu);
    job_t *j = job_find(js, r);
    json_t *o = NULL;
    bool cancelled = false;
    long long done = 0;
    char target[80] = "";
    if (j) {
        if (j->state == JOB_RUNNING) {
            job_finish(j, JOB_CANCELLED, NULL);
            cancelled = true;
            pthread_cond_broadcast(&js->cv);
        }
        done = (long long)j->done;
        snprintf(target, sizeof target, "job %s", j->id);
        o = job_json(j);
    }
    pthread_mutex_unlock(&js->mu);
    if (!o) {
        admin_audit(r, r->params[0], -1, "error: not found");
        return admin_not_found(r, "job", "re-drive job");
    }
    admin_audit(r, target, done, cancelled ? "ok: cancelled" : "ok: already finished");
    return admin_json(r, 200, o);
}

/* ---- POST /api/v1/dlq/redrive ---------------------------------------------- */

/* The body's filter; the strings point into r->body.  -1 with the reply set. */
static int body_filter(admin_req_t *r, evbus_dlq_filter_t *f)
{
    *f = (evbus_dlq_filter_t){0};
    json_t *jf = json_object_get(r->body, "filter");
    f->type = json_string_value(json_object_get(jf, "type"));
    f->handler = json_string_value(json_object_get(jf, "handler"));
    f->reason = json_string_value(json_object_get(jf, "reason"));
    const char *want = json_string_value(json_object_get(jf, "tenant"));
    if (r->tenant && want && strcmp(want, r->tenant) != 0) {
        admin__auth_failure(r->admin, ADMIN_AUTH_TENANT);
        admin_error(r, 403, "forbidden", "filter.tenant",
                    "token '%s' is scoped to one tenant and cannot re-drive another's",
                    r->token_name);
        return -1;
    }
    f->tenant = r->tenant ? r->tenant : want;
    static const char *const times[] = {"since", "until"};
    int64_t *out[] = {&f->since_ms, &f->until_ms};
    for (int i = 0; i < 2; i++) {
        const char *t = json_string_value(json_object_get(jf, times[i]));
        if (t && (store_parse_rfc3339(t, out[i]) != 0 || *out[i] <= 0)) {
            admin_bad(r, i ? "filter.until" : "filter.since",
                      "must be an RFC 3339 date-time such as 2026-12-07T10:00:00Z");
            return -1;
        }
    }
    return filter_check(r, f, "filter.");
}

/* The filter as canonical JSON text (sorted keys, normalised times):
 * what a confirm token is bound to and what a job shows.  Malloc'd. */
static char *filter_canonical(const evbus_dlq_filter_t *f)
{
    json_t *o = json_object();
    const char *keys[] = {"tenant", "type", "handler", "reason"};
    const char *vals[] = {f->tenant, f->type, f->handler, f->reason};
    for (int i = 0; i < 4; i++)
        if (vals[i])
            json_object_set_new(o, keys[i], json_string(vals[i]));
    char t[CLOCK_RFC3339_LEN];
    if (f->since_ms)
        json_object_set_new(o, "since", json_string(clock_rfc3339(f->since_ms, t)));
    if (f->until_ms)
        json_object_set_new(o, "until", json_string(clock_rfc3339(f->until_ms, t)));
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    json_decref(o);
    return s;
}

/*
 * confirm = "<count>.<expires, Unix ms>.<mac>", mac the signature part of
 * admin_cursor_make over the count, the expiry and the canonical filter
 * (and through it, over the route and the caller's tenant).  Malloc'd.
 */
static char *confirm_make(admin_req_t *r, const char *canon, size_t count, int64_t expires)
{
    size_t len = strlen(canon) + 64;
    char *payload = malloc(len);
    snprintf(payload, len, "redrive\n%zu\n%lld\n%s", count, (long long)expires, canon);
    char *signed_text = admin_cursor_make(r, payload);
    free(payload);
    const char *mac = strrchr(signed_text, '.') + 1;
    char *out = malloc(strlen(mac) + 64);
    sprintf(out, "%zu.%lld.%s", count, (long long)expires, mac);
    free(signed_text);
    return out;
}

typedef enum { CONFIRM_OK, CONFIRM_BAD, CONFIRM_EXPIRED } confirm_t;

/* Whether confirm was made for this caller and canon; *count gets its count. */
static confirm_t confirm_check(admin_req_t *r, const char *canon, const char *confirm,
                               size_t *count)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(confirm, &end, 10);
    if (end == confirm || *end != '.' || errno || confirm[0] == '-')
        return CONFIRM_BAD;
    const char *p = end + 1;
    long long expires = strtoll(p, &end, 10);
    if (end == p || *end != '.' || errno || *p == '-')
        return CONFIRM_BAD;
    char *want = confirm_make(r, canon, (size_t)n, expires);
    size_t wl = strlen(want), gl = strlen(confirm);
    bool same = wl == gl && CRYPTO_memcmp(want, confirm, wl) == 0;
    free(want);
    if (!same)
        return CONFIRM_BAD;
    if (clock_wall_ms() > expires)
        return CONFIRM_EXPIRED;
    *count = (size_t)n;
    return CONFIRM_OK;
}

struct collect {
    redrive_id_t *ids;
    size_t n, cap;
    unsigned part; /* the partition whose dead letters are being scanned */
};

static int collect_cb(const evbus_dlq_entry_t *e, void *ud)
{
    struct collect *c = ud;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        void *p = realloc(c->ids, cap * sizeof *c->ids);
        if (!p)
            return EVBUS_CLIENT_EREDIS;
        c->ids = p;
        c->cap = cap;
    }
    memcpy(c->ids[c->n].id, e->dlq_id, EVBUS_STREAM_ID_LEN);
    c->ids[c->n++].part = c->part;
    return 0;
}

/* Older dead letter first; the same id in two partitions (written within
 * one millisecond) in partition order. */
static int id_older(const void *a, const void *b)
{
    const redrive_id_t *x = a, *y = b;
    unsigned long long xm, xs, ym, ys;
    evbus_stream_id_split(x->id, &xm, &xs);
    evbus_stream_id_split(y->id, &ym, &ys);
    if (xm != ym)
        return xm < ym ? -1 : 1;
    if (xs != ys)
        return xs < ys ? -1 : 1;
    return x->part < y->part ? -1 : x->part > y->part;
}

/* The dead letters matching f into ids: dlq.stream's, or every
 * partition's.  0, or libevbus's code with err. */
static int collect(admin_req_t *r, evbus_client_t *c, const evbus_dlq_filter_t *f,
                   struct collect *ids, char *err, size_t errlen)
{
    const evbus_config_t *cfg = r->gen->cfg;
    if (cfg->core.partitions <= 1)
        return evbus_dlq_scan(c, cfg->core.dlq_stream, f, collect_cb, ids, err, errlen);
    char **dlqs = partition_dlqs(cfg);
    if (!dlqs) {
        snprintf(err, errlen, "out of memory");
        return EVBUS_CLIENT_EREDIS;
    }
    int rc = 0;
    for (unsigned p = 0; p < cfg->core.partitions && rc == 0; p++) {
        ids->part = p;
        rc = evbus_dlq_scan(c, dlqs[p], f, collect_cb, ids, err, errlen);
    }
    free_names(dlqs, cfg->core.partitions);
    return rc;
}

static void random_job_id(char out[24])
{
    unsigned char b[8];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        uint64_t t = (uint64_t)clock_mono_ms() ^ (uint64_t)clock_wall_ms() << 16;
        memcpy(b, &t, sizeof b);
    }
    snprintf(out, 24, "rd-%02x%02x%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5],
             b[6], b[7]);
}

/* Starts the job over ids (taken); the 202 reply. */
static int redrive_start(admin_req_t *r, const evbus_dlq_filter_t *f, char *canon,
                         struct collect *ids)
{
    json_t *jr = json_object_get(r->body, "rate");
    job_t *j = calloc(1, sizeof *j);
    random_job_id(j->id);
    j->tenant = f->tenant ? strdup(f->tenant) : NULL;
    j->owner = r->tenant ? strdup(r->tenant) : NULL;
    j->token_name = strdup(r->token_name);
    j->filter_json = canon;
    /* the scans went newest first, one stream after the other; the
     * re-drive goes oldest first across them, as they failed */
    if (ids->n)
        qsort(ids->ids, ids->n, sizeof *ids->ids, id_older);
    j->ids = ids->ids;
    j->total = ids->n;
    j->rate = jr ? (unsigned)json_integer_value(jr) : REDRIVE_RATE_DEFAULT;
    j->start_mono = clock_mono_ms();
    j->started_ms = clock_wall_ms();
    j->state = JOB_RUNNING;
    if (j->total == 0)
        job_finish(j, JOB_DONE, NULL);

    struct admin_jobs *js = r->admin->jobs;
    pthread_mutex_lock(&js->mu);
    int rc = jobs_add(js, j);
    json_t *o = rc == 0 ? job_json(j) : NULL;
    if (rc == 0)
        pthread_cond_broadcast(&js->cv);
    pthread_mutex_unlock(&js->mu);
    if (rc != 0) {
        job_free(j);
        admin_audit(r, canon, (long long)ids->n, "error: too many running re-drives");
        return admin_unavailable(r, "", "%d re-drives are running; wait for one to end or "
                                        "cancel one", JOBS_MAX);
    }
    char target[1024];
    snprintf(target, sizeof target, "job %s filter %.900s", j->id, canon);
    admin_audit(r, target, (long long)ids->n, "ok: started");
    return admin_json(r, 202, o);
}

static int redrive(admin_req_t *r)
{
    evbus_dlq_filter_t f;
    if (body_filter(r, &f) != 0)
        return 0;
    char *canon = filter_canonical(&f);
    if (!canon)
        return admin_error(r, 500, "internal", "", "out of memory");
    bool dry = json_is_true(json_object_get(r->body, "dry_run"));
    const char *confirm = json_string_value(json_object_get(r->body, "confirm"));
    size_t confirmed = 0;
    if (!dry) {
        confirm_t cs = confirm ? confirm_check(r, canon, confirm, &confirmed) : CONFIRM_BAD;
        if (cs != CONFIRM_OK) {
            free(canon);
            admin_audit(r, NULL, -1, "error: confirm");
            return admin_bad(r, "confirm",
                             !confirm ? "a re-drive needs the confirm token of a dry run "
                                        "({\"filter\": ..., \"dry_run\": true}) of this filter"
                             : cs == CONFIRM_EXPIRED
                                 ? "the confirm token has expired (they last 10 minutes): do "
                                   "the dry run again"
                                 : "this confirm token was not issued for this filter and this "
                                   "token's tenant: do the dry run again");
        }
    }
    evbus_client_t *c = admin_redis(r);
    if (!c) {
        free(canon);
        return 0;
    }
    struct collect ids = {0};
    char err[256];
    int rc = collect(r, c, &f, &ids, err, sizeof err);
    if (rc != 0) {
        free(ids.ids);
        free(canon);
        if (!dry)
            admin_audit(r, NULL, -1, "error: failed");
        char field[32];
        filter_field(err, "filter.", field, sizeof field);
        return client_failure(r, rc, field, err);
    }
    if (dry) {
        int64_t expires = clock_wall_ms() + CONFIRM_TTL_MS;
        char *tok = confirm_make(r, canon, ids.n, expires);
        char t[CLOCK_RFC3339_LEN];
        json_t *o = json_pack("{s:I, s:s, s:s, s:o}", "count", (json_int_t)ids.n, "confirm", tok,
                              "expires_at", clock_rfc3339(expires, t), "filter",
                              json_loads(canon, 0, NULL));
        free(tok);
        free(canon);
        free(ids.ids);
        return admin_json(r, 200, o);
    }
    if (ids.n != confirmed) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I}", "error", "conflict", "field", "confirm",
                              "message", "the number of matching dead letters changed since "
                              "the dry run: check it and do the dry run again",
                              "count", (json_int_t)ids.n, "confirmed", (json_int_t)confirmed);
        admin_audit(r, canon, (long long)ids.n, "error: count changed");
        free(canon);
        free(ids.ids);
        return admin_json(r, 409, o);
    }
    return redrive_start(r, &f, canon, &ids);
}

/* ---- the table ------------------------------------------------------------------ */

static const char *const LIST_QUERY[] = {"limit", "cursor", "type",   "handler", "reason",
                                         "since", "until",  "tenant", "event_id", NULL};

const admin_route_t admin_routes_dlq[] = {
    /* a list polled by many clients costs Redis one page read per 250 ms */
    {"GET", "/api/v1/dlq", CFG_ROLE_VIEWER, false, LIST_QUERY, NULL, "dlq.list", dlq_list,
     LIST_CACHE_MS},
    {"POST", "/api/v1/dlq/redrive", CFG_ROLE_OPERATOR, true, NULL, "dlq-redrive.json",
     "dlq.redrive", redrive, 0},
    {"GET", "/api/v1/dlq/redrive/{job}", CFG_ROLE_VIEWER, false, NULL, NULL, "dlq.redrive.get",
     redrive_get, 0},
    {"DELETE", "/api/v1/dlq/redrive/{job}", CFG_ROLE_OPERATOR, true, NULL, NULL,
     "dlq.redrive.cancel", redrive_cancel, 0},
    {"GET", "/api/v1/dlq/{id}", CFG_ROLE_VIEWER, false, NULL, NULL, "dlq.get", dlq_get, 0},
    {"POST", "/api/v1/dlq/{id}/retry", CFG_ROLE_OPERATOR, true, NULL, NULL, "dlq.retry",
     dlq_retry, 0},
    {"DELETE", "/api/v1/dlq/{id}", CFG_ROLE_OPERATOR, true, NULL, NULL, "dlq.delete",
     dlq_delete, 0},
    {0},
};
