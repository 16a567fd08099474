/*
 * audit — see audit.h.  The caller's thread only copies a record into the
 * ring; one thread per audit log drains it to PostgreSQL or to the JSONL
 * file.  Listing runs on the caller's thread with its own connection (or
 * its own read of the file), so a slow list never holds up the writer.
 *
 * Not here: who may read what (the HTTP layer decides the tenant filter and
 * signs cursors), and retention of the audit log (an operator's decision:
 * DELETE old rows, or rotate the file).
 */
#include "admin/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/private_dir.h"

#define COMP "audit"
#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 5000
#define DROP_WARN_EVERY_MS 10000
#define DB_RETRIES 3
/* Bounds on what one record may hold, so a queue of AUDIT_QUEUE_CAP
 * records stays a few tens of MiB at worst: a filter fits easily, a
 * pasted body does not. */
#define TARGET_MAX 8192
#define FIELD_MAX 256

/* An owned copy of a record: the strings live in one allocation with it. */
typedef struct aitem {
    int64_t ts_ms, count;
    char *token, *tenant, *action, *target, *result, *request_id;
} aitem_t;

struct audit {
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* writer: records queued or stopping */
    pthread_cond_t done_cv; /* audit_sync: done_seq moved */
    aitem_t **ring;
    size_t head, count;
    uint64_t queued_seq, done_seq; /* records accepted / finished (written or lost) */
    bool stopping;
    int64_t stop_deadline; /* monotonic ms; valid once stopping */
    pthread_t thread;

    bool pg;
    char *url;  /* pg */
    char *path; /* file */
    /* writer thread only */
    PGconn *wconn;
    int fd;
    int64_t next_id;
    bool need_nl;     /* the file does not end with a newline (a torn write) */
    bool conn_warned; /* "unreachable" logged for this outage */
    /* audit_list's connection, one caller at a time */
    pthread_mutex_t rd_mu;
    PGconn *rconn;

    _Atomic int64_t drop_warn_at;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void count_dropped(audit_t *a, size_t n, const char *why)
{
    METRIC_ADD(audit_dropped, n);
    int64_t now = clock_mono_ms(), last = atomic_load(&a->drop_warn_at);
    if ((last == 0 || now - last >= DROP_WARN_EVERY_MS) &&
        atomic_compare_exchange_strong(&a->drop_warn_at, &last, now))
        log_warn(COMP, "audit records dropped (%s); evbus_audit_dropped_total counts them", why);
}

/* ------------------------------------------------------------- copying */

/* Bytes of s to keep: at most max, cut on a UTF-8 boundary. */
static size_t kept_len(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return n;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    return max;
}

/* Copy n bytes of s to dst, replacing bytes that are not valid UTF-8 by
 * '?': the record must survive as JSON (file) and jsonb (PostgreSQL),
 * whatever bytes a request put in a path. */
static void copy_utf8(char *dst, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                   : (c & 0xF8) == 0xF0 ? 4 : 0;
        bool ok = len > 0 && i + len <= n && c != 0xC0 && c != 0xC1 && c <= 0xF4;
        for (size_t k = 1; ok && k < len; k++)
            ok = ((unsigned char)s[i + k] & 0xC0) == 0x80;
        if (ok) {
            memcpy(dst + i, s + i, len);
            i += len;
        } else {
            dst[i++] = '?';
        }
    }
    dst[n] = '\0';
}

static aitem_t *item_new(const audit_record_t *r)
{
    const char *src[6] = {r->token, r->tenant && *r->tenant ? r->tenant : "*", r->action,
                          r->target, r->result, r->request_id};
    size_t len[6], total = sizeof(aitem_t);
    for (int i = 0; i < 6; i++) {
        len[i] = src[i] ? kept_len(src[i], i == 3 ? TARGET_MAX : FIELD_MAX) : 0;
        total += src[i] ? len[i] + 1 : 0;
    }
    aitem_t *it = malloc(total);
    if (!it)
        return NULL;
    it->ts_ms = r->ts_ms > 0 ? r->ts_ms : clock_wall_ms();
    it->count = r->count < 0 ? -1 : r->count;
    char *p = (char *)(it + 1), **dst[6] = {&it->token, &it->tenant, &it->action,
                                            &it->target, &it->result, &it->request_id};
    for (int i = 0; i < 6; i++) {
        *dst[i] = NULL;
        if (src[i]) {
            copy_utf8(p, src[i], len[i]);
            *dst[i] = p;
            p += len[i] + 1;
        }
    }
    return it;
}

/* The record as audit.h shows it; id < 0 leaves "id" out. */
static json_t *item_json(const aitem_t *it, int64_t id)
{
    char at[CLOCK_RFC3339_LEN];
    json_t *o = json_object();
    if (id >= 0)
        json_object_set_new(o, "id", json_integer(id));
    json_object_set_new(o, "at", json_string(clock_rfc3339(it->ts_ms, at)));
    json_object_set_new(o, "ts_ms", json_integer(it->ts_ms));
    json_object_set_new(o, "token", json_string(it->token));
    json_object_set_new(o, "tenant", json_string(it->tenant));
    json_object_set_new(o, "action", json_string(it->action));
    json_object_set_new(o, "target", it->target ? json_string(it->target) : json_null());
    json_object_set_new(o, "count", it->count >= 0 ? json_integer(it->count) : json_null());
    json_object_set_new(o, "result", json_string(it->result));
    json_object_set_new(o, "request_id",
                        it->request_id ? json_string(it->request_id) : json_null());
    return o;
}

int audit_write(audit_t *a, const audit_record_t *r)
{
    if (!a)
        return -1;
    if (!r || !r->token || !r->action || !r->result) {
        count_dropped(a, 1, "a record without token, action or result");
        return -1;
    }
    aitem_t *it = item_new(r);
    if (!it) {
        count_dropped(a, 1, "out of memory");
        return -1;
    }
    pthread_mutex_lock(&a->mu);
    if (a->stopping || a->count == AUDIT_QUEUE_CAP) {
        bool stopping = a->stopping;
        pthread_mutex_unlock(&a->mu);
        free(it);
        count_dropped(a, 1, stopping ? "the audit log is stopping" : "queue full");
        return -1;
    }
    a->ring[(a->head + a->count) % AUDIT_QUEUE_CAP] = it;
    a->count++;
    a->queued_seq++;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    return 0;
}

/* ---------------------------------------------------------- the thread */

static bool is_stopping(audit_t *a, bool *past_deadline)
{
    pthread_mutex_lock(&a->mu);
    bool s = a->stopping;
    *past_deadline = s && clock_mono_ms() >= a->stop_deadline;
    pthread_mutex_unlock(&a->mu);
    return s;
}

/* Sleep ms, or less when stop is asked. */
static void nap(audit_t *a, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t end_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + ms * 1000000;
    ts.tv_sec = end_ns / 1000000000;
    ts.tv_nsec = end_ns % 1000000000;
    pthread_mutex_lock(&a->mu);
    while (!a->stopping && pthread_cond_timedwait(&a->cv, &a->mu, &ts) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&a->mu);
}

/* A connection whose connects and statements are bounded, so that
 * audit_stop()'s wait is bounded too; the URL's own settings are kept. */
static PGconn *pg_connect(const char *url, char *err, size_t errlen)
{
    const char *keys[] = {"dbname", "connect_timeout", "options", NULL};
    const char *vals[] = {url, "2", "-c statement_timeout=5000", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c) {
        set_err(err, errlen, "connect: out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        const char *m = PQerrorMessage(c);
        set_err(err, errlen, "connect: %.*s", (int)strcspn(m, "\n"), m);
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* Rows keep the batch's order in id: nextval() runs in the SELECT's order. */
static const char insert_sql[] =
    "INSERT INTO audit_log (at, token, tenant, action, target, count, result, request_id)"
    " SELECT to_timestamp(0) + r.ts * interval '1 millisecond', r.token, r.tenant, r.action,"
    " r.target, r.count, r.result, r.request_id"
    " FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (ts bigint, token text, tenant text,"
    "   action text, target text, count bigint, result text, request_id text))"
    " WITH ORDINALITY AS r(ts, token, tenant, action, target, count, result, request_id, ord)"
    " ORDER BY r.ord";

static void pg_write(audit_t *a, aitem_t **batch, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = item_json(batch[i], -1);
        json_object_set_new(o, "ts", json_integer(batch[i]->ts_ms));
        json_array_append_new(arr, o);
    }
    char *text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    if (!text) {
        count_dropped(a, n, "out of memory");
        return;
    }
    int64_t backoff = RECONNECT_MIN_MS;
    int failures = 0;
    char err[512];
    for (;;) {
        bool late;
        if (is_stopping(a, &late) && late) {
            count_dropped(a, n, "not written before the stop deadline");
            break;
        }
        if (!a->wconn) {
            a->wconn = pg_connect(a->url, err, sizeof err);
            if (!a->wconn) {
                if (!a->conn_warned)
                    log_warn(COMP, "PostgreSQL unreachable, audit records wait in the queue "
                                   "(%s)", err);
                a->conn_warned = true;
                nap(a, backoff);
                backoff = backoff * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : backoff * 2;
                continue;
            }
            if (a->conn_warned)
                log_info(COMP, "PostgreSQL reachable again, writing the audit log");
            a->conn_warned = false;
            backoff = RECONNECT_MIN_MS;
        }
        const char *params[1] = {text};
        PGresult *res = PQexecParams(a->wconn, insert_sql, 1, NULL, params, NULL, NULL, 0);
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (ok) {
            PQclear(res);
            METRIC_ADD(audit_written, n);
            break;
        }
        const char *m = PQresultErrorMessage(res);
        snprintf(err, sizeof err, "%.*s", (int)strcspn(m, "\n"), m);
        PQclear(res);
        if (PQstatus(a->wconn) != CONNECTION_OK) {
            /* the batch is kept across the outage; only the queue overflows */
            PQfinish(a->wconn);
            a->wconn = NULL;
            continue;
        }
        if (++failures >= DB_RETRIES) {
            log_error(COMP, "%zu audit records lost: PostgreSQL refused them %d times: %s "
                            "(is migration 0009 applied? evbusctl migrate up)",
                      n, failures, err);
            METRIC_ADD(audit_dropped, n);
            break;
        }
        nap(a, RECONNECT_MIN_MS << failures);
    }
    free(text);
}

/* -------------------------------------------------------- the JSONL file */

static int file_open(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        set_err(err, errlen, "%s: %s", path, strerror(errno));
    return fd;
}

/*
 * Call fn for each complete line of the file that is a JSON object with an
 * integer "id" (others — a torn last line, a line an operator mangled —
 * are skipped).  fn takes the object (decref it or keep it).  Returns 0,
 * or -1 with err; *ends_nl tells whether the file ends with a newline.
 */
static int file_scan(const char *path, void (*fn)(void *, json_t *, int64_t), void *ud,
                     bool *ends_nl, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (ends_nl)
        *ends_nl = true;
    if (!f) {
        if (errno == ENOENT)
            return 0;
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] != '\n') {
            if (ends_nl)
                *ends_nl = false;
            break;
        }
        json_t *o = json_loadb(line, (size_t)n, 0, NULL);
        json_t *id = json_object_get(o, "id");
        if (json_is_integer(id))
            fn(ud, o, json_integer_value(id));
        else
            json_decref(o);
    }
    bool bad = ferror(f);
    if (bad)
        set_err(err, errlen, "%s: %s", path, strerror(errno));
    free(line);
    fclose(f);
    return bad ? -1 : 0;
}

static void max_id(void *ud, json_t *o, int64_t id)
{
    int64_t *m = ud;
    if (id > *m)
        *m = id;
    json_decref(o);
}

/* The file was renamed away (rotation) or removed: write to a new one. */
static void file_follow(audit_t *a)
{
    struct stat by_path, by_fd;
    if (a->fd >= 0 && stat(a->path, &by_path) == 0 && fstat(a->fd, &by_fd) == 0 &&
        by_path.st_ino == by_fd.st_ino && by_path.st_dev == by_fd.st_dev)
        return;
    char err[512];
    int fd = file_open(a->path, err, sizeof err);
    if (fd < 0) {
        log_error(COMP, "cannot reopen the audit log: %s", err);
        return; /* keep writing to the old file rather than nowhere */
    }
    if (a->fd >= 0)
        close(a->fd);
    a->fd = fd;
    a->need_nl = false;
}

static void file_write(audit_t *a, aitem_t **batch, size_t n)
{
    file_follow(a);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m) {
        count_dropped(a, n, "out of memory");
        return;
    }
    if (a->need_nl)
        fputc('\n', m);
    for (size_t i = 0; i < n; i++) {
        json_t *o = item_json(batch[i], a->next_id++);
        json_dumpf(o, m, JSON_COMPACT | JSON_PRESERVE_ORDER);
        fputc('\n', m);
        json_decref(o);
    }
    if (fclose(m) != 0) {
        free(buf);
        count_dropped(a, n, "out of memory");
        return;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(a->fd, buf + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    int saved = errno;
    free(buf);
    if (off < len) {
        /* a torn line is skipped by readers; the next batch starts a new one */
        a->need_nl = off > 0;
        log_error(COMP, "%zu audit records lost: %s: %s", n, a->path, strerror(saved));
        METRIC_ADD(audit_dropped, n);
        return;
    }
    a->need_nl = false;
    /* an audit record a crash may take back is not much of a record */
    if (fdatasync(a->fd) != 0)
        log_warn(COMP, "%s: fdatasync: %s", a->path, strerror(errno));
    METRIC_ADD(audit_written, n);
}

static void *audit_thread(void *arg)
{
    audit_t *a = arg;
    if (!a->pg) {
        /* ids go on from the file's last one; scanning here keeps it off
         * the caller's start */
        char err[512];
        int64_t last = 0;
        bool ends_nl = true;
        if (file_scan(a->path, max_id, &last, &ends_nl, err, sizeof err) != 0)
            log_error(COMP, "cannot read the audit log for its last id: %s", err);
        a->next_id = last + 1;
        a->need_nl = !ends_nl;
    }
    aitem_t *batch[AUDIT_BATCH_MAX];
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (a->count == 0 && !a->stopping)
            pthread_cond_wait(&a->cv, &a->mu);
        if (a->count == 0)
            break;
        size_t n = 0, lost = 0;
        /* past the stop deadline, what is left is dropped in one go */
        bool late = a->stopping && clock_mono_ms() >= a->stop_deadline;
        while (a->count > 0 && (late || n < AUDIT_BATCH_MAX)) {
            aitem_t *it = a->ring[a->head];
            a->head = (a->head + 1) % AUDIT_QUEUE_CAP;
            a->count--;
            if (late) {
                free(it);
                lost++;
            } else {
                batch[n++] = it;
            }
        }
        a->done_seq += lost;
        pthread_mutex_unlock(&a->mu);
        if (lost)
            count_dropped(a, lost, "not written before the stop deadline");
        if (n) {
            if (a->pg)
                pg_write(a, batch, n);
            else
                file_write(a, batch, n);
            for (size_t i = 0; i < n; i++)
                free(batch[i]);
        }
        pthread_mutex_lock(&a->mu);
        a->done_seq += n;
        pthread_cond_broadcast(&a->done_cv);
    }
    pthread_cond_broadcast(&a->done_cv);
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* ------------------------------------------------------ start and stop */

static void audit_free(audit_t *a)
{
    if (a->wconn)
        PQfinish(a->wconn);
    if (a->rconn)
        PQfinish(a->rconn);
    if (a->fd >= 0)
        close(a->fd);
    for (size_t i = 0; i < a->count; i++)
        free(a->ring[(a->head + i) % AUDIT_QUEUE_CAP]);
    free(a->ring);
    free(a->url);
    free(a->path);
    pthread_mutex_destroy(&a->mu);
    pthread_mutex_destroy(&a->rd_mu);
    pthread_cond_destroy(&a->cv);
    pthread_cond_destroy(&a->done_cv);
    free(a);
}

audit_t *audit_start(const evbus_config_t *cfg, char *err, size_t errlen)
{
    const char *url = cfg->store.postgres_url && *cfg->store.postgres_url
                          ? cfg->store.postgres_url : NULL;
    const char *dir = cfg->daemon.state_dir;
    if (!url && (!dir || !*dir)) {
        set_err(err, errlen, "audit: no postgres.url and no daemon.state_dir to keep it in");
        return NULL;
    }
    audit_t *a = calloc(1, sizeof *a);
    if (!a) {
        set_err(err, errlen, "audit: out of memory");
        return NULL;
    }
    a->fd = -1;
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->rd_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->cv, &ca);
    pthread_cond_init(&a->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    a->ring = calloc(AUDIT_QUEUE_CAP, sizeof *a->ring);
    a->pg = url != NULL;
    if (!a->ring || (a->pg && !(a->url = strdup(url)))) {
        set_err(err, errlen, "audit: out of memory");
        audit_free(a);
        return NULL;
    }
    if (!a->pg) {
        char derr[512];
        if (private_dir_ensure(dir, "state_dir", derr, sizeof derr) != 0) {
            set_err(err, errlen, "audit: %s", derr);
            audit_free(a);
            return NULL;
        }
        if (asprintf(&a->path, "%s/%s", dir, AUDIT_FILE_NAME) < 0) {
            a->path = NULL;
            set_err(err, errlen, "audit: out of memory");
            audit_free(a);
            return NULL;
        }
        a->fd = file_open(a->path, derr, sizeof derr);
        if (a->fd < 0) {
            set_err(err, errlen, "audit: %s", derr);
            audit_free(a);
            return NULL;
        }
    }
    int rc = pthread_create(&a->thread, NULL, audit_thread, a);
    if (rc != 0) {
        set_err(err, errlen, "audit: cannot start its thread: %s", strerror(rc));
        audit_free(a);
        return NULL;
    }
    return a;
}

const char *audit_where(const audit_t *a)
{
    return a->pg ? "postgres" : a->path;
}

int audit_sync(audit_t *a, int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t end_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + (int64_t)timeout_ms * 1000000;
    ts.tv_sec = end_ns / 1000000000;
    ts.tv_nsec = end_ns % 1000000000;
    pthread_mutex_lock(&a->mu);
    uint64_t want = a->queued_seq;
    int rc = 0;
    while (a->done_seq < want && rc == 0)
        rc = pthread_cond_timedwait(&a->done_cv, &a->mu, &ts);
    bool done = a->done_seq >= want;
    pthread_mutex_unlock(&a->mu);
    return done ? 0 : -1;
}

void audit_stop(audit_t *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->mu);
    a->stopping = true;
    a->stop_deadline = clock_mono_ms() + AUDIT_STOP_TIMEOUT_MS;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    audit_free(a);
}

/* -------------------------------------------------------------- listing */

/* A cursor is the last listed id: decimal digits, no sign, fits int64. */
static int cursor_parse(const char *cursor, int64_t *id)
{
    *id = INT64_MAX;
    if (!cursor || !*cursor)
        return 0;
    if (strlen(cursor) > 18)
        return -1;
    int64_t v = 0;
    for (const char *p = cursor; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    if (v <= 0)
        return -1;
    *id = v;
    return 0;
}

static const char list_sql[] =
    "SELECT id, floor(extract(epoch FROM at) * 1000)::bigint, token, tenant, action, target,"
    " count, result, request_id FROM audit_log"
    " WHERE ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR action = $2)"
    " AND ($3::bigint IS NULL OR at >= to_timestamp(0) + $3 * interval '1 millisecond')"
    " AND ($4::bigint IS NULL OR at < to_timestamp(0) + $4 * interval '1 millisecond')"
    " AND id < $5::bigint"
    " ORDER BY id DESC LIMIT $6::bigint";

static int pg_list(audit_t *a, const char *tenant, const char *action, int64_t since_ms,
                   int64_t until_ms, int64_t before_id, size_t want, json_t *items, char *err,
                   size_t errlen)
{
    char s_since[24], s_until[24], s_before[24], s_limit[24];
    snprintf(s_since, sizeof s_since, "%" PRId64, since_ms);
    snprintf(s_until, sizeof s_until, "%" PRId64, until_ms);
    snprintf(s_before, sizeof s_before, "%" PRId64, before_id);
    snprintf(s_limit, sizeof s_limit, "%zu", want);
    const char *params[6] = {tenant, action, since_ms > 0 ? s_since : NULL,
                             until_ms < INT64_MAX ? s_until : NULL, s_before, s_limit};
    pthread_mutex_lock(&a->rd_mu);
    PGresult *res = NULL;
    /* a second try only when the kept connection had gone bad */
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!a->rconn && !(a->rconn = pg_connect(a->url, err, errlen))) {
            pthread_mutex_unlock(&a->rd_mu);
            return -1;
        }
        res = PQexecParams(a->rconn, list_sql, 6, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) == PGRES_TUPLES_OK || PQstatus(a->rconn) == CONNECTION_OK)
            break;
        PQclear(res);
        res = NULL;
        PQfinish(a->rconn);
        a->rconn = NULL;
    }
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *m = res ? PQresultErrorMessage(res) : "connection lost";
        set_err(err, errlen, "audit_log: %.*s", (int)strcspn(m, "\n"), m);
        PQclear(res);
        pthread_mutex_unlock(&a->rd_mu);
        return -1;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        aitem_t it = {
            .ts_ms = strtoll(PQgetvalue(res, r, 1), NULL, 10),
            .token = PQgetvalue(res, r, 2),
            .tenant = PQgetvalue(res, r, 3),
            .action = PQgetvalue(res, r, 4),
            .target = PQgetisnull(res, r, 5) ? NULL : PQgetvalue(res, r, 5),
            .count = PQgetisnull(res, r, 6) ? -1 : strtoll(PQgetvalue(res, r, 6), NULL, 10),
            .result = PQgetvalue(res, r, 7),
            .request_id = PQgetisnull(res, r, 8) ? NULL : PQgetvalue(res, r, 8),
        };
        json_array_append_new(items, item_json(&it, strtoll(PQgetvalue(res, r, 0), NULL, 10)));
    }
    PQclear(res);
    pthread_mutex_unlock(&a->rd_mu);
    return 0;
}

/* The file's newest `want` matches: a ring of the last ones seen, since ids
 * grow down the file. */
typedef struct file_page {
    const char *tenant, *action;
    int64_t since_ms, until_ms, before_id;
    json_t **ring;
    size_t want, n, next;
} file_page_t;

static bool str_is(json_t *o, const char *key, const char *want)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v && strcmp(v, want) == 0;
}

static void page_take(void *ud, json_t *o, int64_t id)
{
    file_page_t *p = ud;
    json_int_t ts = json_integer_value(json_object_get(o, "ts_ms"));
    if (id >= p->before_id || (p->tenant && !str_is(o, "tenant", p->tenant)) ||
        (p->action && !str_is(o, "action", p->action)) || ts < p->since_ms ||
        ts >= p->until_ms) {
        json_decref(o);
        return;
    }
    json_decref(p->ring[p->next]);
    p->ring[p->next] = o;
    p->next = (p->next + 1) % p->want;
    if (p->n < p->want)
        p->n++;
}

static int file_list(audit_t *a, const char *tenant, const char *action, int64_t since_ms,
                     int64_t until_ms, int64_t before_id, size_t want, json_t *items, char *err,
                     size_t errlen)
{
    file_page_t p = {tenant, action, since_ms, until_ms, before_id,
                     calloc(want, sizeof(json_t *)), want, 0, 0};
    if (!p.ring) {
        set_err(err, errlen, "audit: out of memory");
        return -1;
    }
    int rc = file_scan(a->path, page_take, &p, NULL, err, errlen);
    /* newest first: walk the ring backwards from the last one taken */
    for (size_t k = 0; k < p.n; k++) {
        json_t *o = p.ring[(p.next + want - 1 - k) % want];
        if (rc == 0)
            json_array_append(items, o);
    }
    for (size_t k = 0; k < want; k++)
        json_decref(p.ring[k]);
    free(p.ring);
    return rc;
}

int audit_list(audit_t *a, const char *tenant, const char *action, int64_t since_ms,
               int64_t until_ms, size_t limit, const char *cursor, json_t **out_items,
               char *next_cursor, size_t cursor_len, char *err, size_t errlen)
{
    *out_items = NULL;
    if (next_cursor && cursor_len)
        next_cursor[0] = '\0';
    int64_t before_id;
    if (limit < 1 || limit > AUDIT_LIST_MAX) {
        set_err(err, errlen, "limit: must be between 1 and %d, got %zu", AUDIT_LIST_MAX, limit);
        return AUDIT_EINVAL;
    }
    if (cursor_parse(cursor, &before_id) != 0) {
        set_err(err, errlen, "cursor: not a cursor of the audit log");
        return AUDIT_EINVAL;
    }
    if (since_ms < 0 || until_ms < 0) {
        set_err(err, errlen, "%s: must not be negative", since_ms < 0 ? "since" : "until");
        return AUDIT_EINVAL;
    }
    if (until_ms == 0)
        until_ms = INT64_MAX;
    if (until_ms <= since_ms) {
        set_err(err, errlen, "until: must be after since");
        return AUDIT_EINVAL;
    }
    /* one more than a page: whether there is a next page at all */
    json_t *items = json_array();
    int rc = a->pg ? pg_list(a, tenant, action, since_ms, until_ms, before_id, limit + 1, items,
                             err, errlen)
                   : file_list(a, tenant, action, since_ms, until_ms, before_id, limit + 1,
                               items, err, errlen);
    if (rc != 0) {
        json_decref(items);
        return -1;
    }
    if (json_array_size(items) > limit) {
        json_array_remove(items, limit);
        json_int_t last = json_integer_value(json_object_get(json_array_get(items, limit - 1), "id"));
        if (next_cursor && cursor_len)
            snprintf(next_cursor, cursor_len, "%" JSON_INTEGER_FORMAT, last);
    }
    *out_items = items;
    return 0;
}
