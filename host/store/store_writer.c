/*
 * store_writer — the metadata writer thread.
 *
 * The consumer's hot path only copies an update into a bounded ring under a
 * short mutex (consumer threads queue a whole chunk's updates at once,
 * see store_pending_t); a single thread drains the ring in batches,
 * coalesces the updates of one event, and writes each batch in one
 * transaction as binary COPY rows built here (no JSON is built or parsed
 * on either side for the row envelope): straight into events while the
 * rows are new, else into a per-connection TEMP staging table and then ONE
 * upsert from it (see write_once()).  While the server works on a batch's
 * COPY, the thread takes and builds the next full batch (prepare_next()),
 * which it sends once the current one is answered.  The session runs with
 * synchronous_commit = off: metadata already accepts loss under overload,
 * and a commit that does not wait for the WAL flush lets the next batch
 * start at once (a server crash can lose the last fraction of a second of
 * acknowledged batches, never corrupt the table).
 *
 * Partitions (migration 0006): events is partitioned by day of created_at
 * and its key is (id, created_at).  A row's created_at is the time of its
 * stream id, which every update of one event carries, so an update meets
 * its row through that key whatever day it comes on, and the direct COPY
 * and the upsert need no lookup.  A batch holding an update without a
 * usable stream id cannot know its row's created_at: it skips the direct
 * COPY and looks its ids up across the partitions before the upsert
 * (lookup_sql).  Between batches the thread also runs the partition
 * upkeep (store_events_upkeep: partitions ahead, retention), hourly.
 *
 * Overflow policy: metadata is best-effort.  When PostgreSQL is slow or
 * down, the ring fills to metadata_queue_size and further updates are
 * dropped and counted (metadata_dropped) instead of slowing delivery.  A
 * batch that fails is retried 3 times (100/200/400 ms); while the
 * connection is down the writer keeps the batch and reconnects with
 * backoff, so an outage only loses what overflows the ring.  A batch that
 * still fails with a live connection is given up (metadata_giveups) and its
 * updates are counted as dropped.
 */
#include "store/store_internal.h"
#include "util/log.h"
#include "util/metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMP "store"
#define WRITER_RETRIES 3
#define RECONNECT_MAX_MS 5000
#define DROP_WARN_EVERY_MS 10000
#define IDLE_PROBE_MS 2000
#define UPKEEP_EVERY_MS (3600 * 1000)
#define UPKEEP_RETRY_MS (60 * 1000)

/* An owned copy of an update: the strings live right after the struct. */
typedef struct witem {
    store_update_t u;
    size_t seq; /* submission order inside a batch, for stable coalescing */
} witem_t;

struct store_writer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    witem_t **ring;
    size_t cap, head, count;
    bool stopping;
    int64_t stop_deadline; /* monotonic ms; valid once stopping */

    size_t batch_size;
    atomic_int flush_ms;  /* live: store_writer_configure */
    char *url;
    witem_t **batch; /* writer thread only: the batch being written */
    pthread_t thread;
    PGconn *conn;        /* writer thread only; has the staging table */
    char *copy_buf;      /* writer thread only: the batch's COPY text */
    size_t copy_len, copy_cap;
    bool copy_lookup;    /* writer thread only: a row of copy_buf has no anchor */
    /* writer thread only: the next batch, taken and built while the
     * server works on the current one (see prepare_next()) */
    witem_t **next;
    size_t next_total;   /* updates taken (to free) */
    size_t next_n;       /* of which storable */
    long next_rows;      /* < 0: none prepared */
    char *next_buf;
    size_t next_len, next_cap;
    bool next_lookup;
    bool prepare;        /* the current batch's first COPY may prepare the next */
    int direct_skip;     /* writer thread only: see write_once() */
    bool history;        /* writer thread only: events has status_history (0010) */
    bool conn_warned;    /* writer thread only: "unreachable" already logged */
    int64_t conn_warn_at;
    _Atomic int64_t drop_warn_at;
    _Atomic int64_t last_write_ms; /* monotonic ms of the last batch written */

    /* what /health says about PostgreSQL; written by the writer thread */
    atomic_bool connected;
    _Atomic int64_t state_since_ms; /* wall ms the current state began */
    pthread_mutex_t err_mu;
    char last_error[256];           /* under err_mu; "" once reconnected */
    /* partition upkeep: live settings, and when the next round is due
     * (monotonic ms; store_writer_configure sets 0 for "at once") */
    atomic_uint retention_s;
    atomic_uint partitions_ahead;
    _Atomic int64_t upkeep_due;
};

/* Record the writer's contact with PostgreSQL (writer thread). */
static void note_state(store_writer_t *w, bool ok, const char *err)
{
    if (atomic_exchange(&w->connected, ok) != ok)
        atomic_store(&w->state_since_ms, store__wall_ms());
    pthread_mutex_lock(&w->err_mu);
    snprintf(w->last_error, sizeof w->last_error, "%.255s", ok ? "" : err);
    pthread_mutex_unlock(&w->err_mu);
}

/*
 * Both COPY targets take the same binary rows (ROW_COLUMNS), so one buffer
 * serves either path.  The staging table is created once per connection;
 * ON COMMIT DELETE ROWS empties it with each batch's transaction (also on
 * rollback), so there is no TRUNCATE round trip.
 */
#define BASE_COLUMNS                                                                         \
    "id, type, tenant, correlation_id, source, stream_id, schema_version, status, attempts," \
    " last_error, handler_outcomes, status_at, created_at, completed_at"
#define ROW_COLUMNS BASE_COLUMNS ", status_history"
enum { ROW_NCOLUMNS = 15 };

/* The staging table always has status_history (it is ours); events has it
 * from migration 0010 on (w->history). */
static const char stage_sql[] =
    "SET synchronous_commit = off;"
    " CREATE TEMP TABLE evbus_writer_stage (id text, type text, tenant text,"
    " correlation_id text, source text, stream_id text, schema_version int, status text,"
    " attempts int, last_error text, handler_outcomes json, status_at timestamptz,"
    " created_at timestamptz, completed_at timestamptz, status_history json)"
    " ON COMMIT DELETE ROWS";

/* The direct COPY is its own transaction (no BEGIN/COMMIT round trip);
 * the staging path needs one: BEGIN rides in the same round trip, as
 * PQexec stops at the COPY. */
static const char copy_direct_sql[] =
    "COPY events (" ROW_COLUMNS ") FROM STDIN (FORMAT binary)";
static const char copy_stage_sql[] =
    "BEGIN; COPY evbus_writer_stage FROM STDIN (FORMAT binary)";
enum { COPY_CHUNK = 1 << 20 };
/* After a batch met existing rows, this many batches go straight to the
 * staging path before the direct COPY is tried again. */
enum { DIRECT_BACKOFF_BATCHES = 16 };

/* created_at is part of the key (the partition key), so the update leaves
 * it as it is: the row stays in its partition.
 *
 * An older update (by its own timestamp) never overwrites a newer one, so
 * a late PROCESSING cannot regress a COMPLETED row.  PENDING is the
 * publisher's, stamped on another host's clock: any consumer status
 * replaces it whatever the clocks say. */
#define UPSERT_HEAD(cols)                                                                    \
    "INSERT INTO events AS e (" cols ", updated_at)"                                         \
    " SELECT " cols ", now() FROM evbus_writer_stage"                                        \
    " ON CONFLICT (id, created_at) DO UPDATE SET"
/* json has no ||: handler outcomes merge as jsonb, stored as json (0004) */
#define UPSERT_TAIL                                                                          \
    " type = COALESCE(EXCLUDED.type, e.type),"                                               \
    " tenant = COALESCE(EXCLUDED.tenant, e.tenant),"                                         \
    " correlation_id = COALESCE(EXCLUDED.correlation_id, e.correlation_id),"                 \
    " source = COALESCE(EXCLUDED.source, e.source),"                                         \
    " stream_id = COALESCE(EXCLUDED.stream_id, e.stream_id),"                                \
    " schema_version = COALESCE(EXCLUDED.schema_version, e.schema_version),"                 \
    " status = EXCLUDED.status,"                                                             \
    " attempts = GREATEST(e.attempts, EXCLUDED.attempts),"                                   \
    " last_error = COALESCE(EXCLUDED.last_error, e.last_error),"                             \
    " handler_outcomes = CASE WHEN EXCLUDED.handler_outcomes IS NULL THEN e.handler_outcomes" \
    "   ELSE (COALESCE(e.handler_outcomes::jsonb, '{}'::jsonb)"                              \
    "         || EXCLUDED.handler_outcomes::jsonb)::json END,"                               \
    " status_at = EXCLUDED.status_at,"                                                       \
    " updated_at = now(),"                                                                   \
    " completed_at = EXCLUDED.completed_at"                                                  \
    " WHERE EXCLUDED.status_at >= e.status_at OR e.status = 'PENDING'"
#define STR_(x) #x
#define STR(x) STR_(x)
/* From migration 0010 on: the batch's transitions are appended to the
 * row's status history, the newest STORE_STATUS_HISTORY_MAX kept.  A late
 * update the WHERE refuses is not in the history either. */
static const char upsert_sql[] =
    UPSERT_HEAD(ROW_COLUMNS)
    " status_history = evbus_status_history_append(e.status_history, EXCLUDED.status_history, "
    STR(STORE_STATUS_HISTORY_MAX) ")," UPSERT_TAIL;
/* Before it (an evbusd upgraded before `evbusctl migrate up`): no history. */
static const char upsert_v9_sql[] = UPSERT_HEAD(BASE_COLUMNS) UPSERT_TAIL;

/*
 * Before the upsert of a batch with rows that have no anchor (their
 * created_at is not their stream id's time: coalesce() took their first
 * update's timestamp), give each such row the created_at of the id's
 * stored row, the newest when there are several, so the upsert meets it.
 * Every partition's primary key is probed once per such id.
 */
static const char lookup_sql[] =
    "UPDATE evbus_writer_stage s SET created_at = e.created_at"
    " FROM (SELECT DISTINCT ON (ev.id) ev.id, ev.created_at FROM events ev"
    "       WHERE ev.id IN (SELECT id FROM evbus_writer_stage"
    "                       WHERE created_at IS DISTINCT FROM evbus_stream_time(stream_id))"
    "       ORDER BY ev.id, ev.created_at DESC) e"
    " WHERE s.id = e.id AND s.created_at IS DISTINCT FROM evbus_stream_time(s.stream_id)";

/* at: the stream id's time (anchored), else ts; a row without an anchor
 * is only inserted when its id is stored nowhere. */
static const char insert_pending_sql[] =
    "INSERT INTO events (id, type, tenant, correlation_id, source, stream_id, schema_version,"
    " status, attempts, status_at, created_at, updated_at)"
    " SELECT u.id, u.type, u.tenant, u.correlation_id, u.source, u.stream_id, u.schema_version,"
    " 'PENDING', 0, to_timestamp(0) + u.ts * interval '1 millisecond',"
    " to_timestamp(0) + u.at * interval '1 millisecond', now()"
    " FROM jsonb_to_recordset($1::jsonb) AS u(id text, type text, tenant text,"
    " correlation_id text, source text, stream_id text, schema_version int, ts bigint,"
    " at bigint, anchored boolean)"
    " WHERE u.anchored OR NOT EXISTS (SELECT 1 FROM events e WHERE e.id = u.id)"
    " ON CONFLICT (id, created_at) DO NOTHING";

/* ------------------------------------------------------------- the copy */

static witem_t *item_copy(const store_update_t *u)
{
    const char *src[] = {u->id,        u->type,       u->tenant,     u->correlation_id,
                         u->source,    u->stream_id,  u->last_error, u->handler_outcomes_json};
    enum { NSTR = sizeof src / sizeof *src };
    size_t lens[NSTR], total = 0;
    for (size_t i = 0; i < NSTR; i++) {
        lens[i] = src[i] ? strlen(src[i]) + 1 : 0;
        total += lens[i];
    }
    witem_t *it = malloc(sizeof *it + total);
    if (!it)
        return NULL;
    it->u = *u;
    char *p = (char *)(it + 1);
    const char **dst[] = {&it->u.id,        &it->u.type,       &it->u.tenant,
                          &it->u.correlation_id, &it->u.source, &it->u.stream_id,
                          &it->u.last_error, &it->u.handler_outcomes_json};
    for (size_t i = 0; i < NSTR; i++) {
        if (!src[i]) {
            *dst[i] = NULL;
            continue;
        }
        memcpy(p, src[i], lens[i]);
        *dst[i] = p;
        p += lens[i];
    }
    return it;
}

static void drop_warn(store_writer_t *w, const char *why)
{
    int64_t now = store__mono_ms();
    int64_t last = atomic_load_explicit(&w->drop_warn_at, memory_order_relaxed);
    if (last != 0 && now - last < DROP_WARN_EVERY_MS)
        return;
    if (!atomic_compare_exchange_strong(&w->drop_warn_at, &last, now))
        return; /* another thread just warned */
    log_warn(COMP, "metadata update dropped (%s); %llu dropped so far", why,
             (unsigned long long)METRIC_GET(metadata_dropped));
}

/* Queues items (the ring takes them) under one lock; what does not fit is
 * freed, counted and warned about.  Returns how many were dropped. */
static size_t ring_push(store_writer_t *w, witem_t *const *items, size_t n)
{
    size_t queued = 0;
    if (!n)
        return 0;
    pthread_mutex_lock(&w->mu);
    bool stopping = w->stopping;
    size_t was = w->count;
    while (!stopping && queued < n && w->count < w->cap) {
        w->ring[(w->head + w->count) % w->cap] = items[queued++];
        w->count++;
    }
    size_t count = w->count;
    /* the writer sleeps until an empty queue gets its first update, or
     * until a batch is complete (see writer_main) */
    if (queued && (was == 0 || (was < w->batch_size && count >= w->batch_size)))
        pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    METRIC_SET(metadata_queue, count);
    for (size_t i = queued; i < n; i++)
        free(items[i]);
    if (queued < n) {
        METRIC_ADD(metadata_dropped, n - queued);
        drop_warn(w, stopping ? "writer stopping" : "queue full");
    }
    return n - queued;
}

int store_writer_submit(store_writer_t *w, const store_update_t *u)
{
    if (!u || !u->id)
        return -1;
    witem_t *it = item_copy(u);
    if (!it) {
        METRIC_INC(metadata_dropped);
        drop_warn(w, "out of memory");
        return -1;
    }
    return ring_push(w, &it, 1) == 0 ? 0 : -1;
}

int store_pending_add(store_pending_t *p, const store_update_t *u)
{
    if (!u || !u->id)
        return -1;
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 256;
        void **items = realloc(p->items, cap * sizeof *items);
        if (!items) {
            METRIC_INC(metadata_dropped);
            return -1;
        }
        p->items = items;
        p->cap = cap;
    }
    witem_t *it = item_copy(u);
    if (!it) {
        METRIC_INC(metadata_dropped);
        return -1;
    }
    p->items[p->n++] = it;
    return 0;
}

size_t store_writer_submit_pending(store_writer_t *w, store_pending_t *p)
{
    size_t n = p->n;
    p->n = 0;
    if (!w) {
        for (size_t i = 0; i < n; i++)
            free(p->items[i]);
        return 0;
    }
    return ring_push(w, (witem_t *const *)p->items, n);
}

void store_pending_free(store_pending_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->items[i]);
    free(p->items);
    p->items = NULL;
    p->n = p->cap = 0;
}

bool store_writer_congested(store_writer_t *w)
{
    if (!w)
        return false;
    pthread_mutex_lock(&w->mu);
    bool full = w->count * 4 >= w->cap * 3;
    pthread_mutex_unlock(&w->mu);
    /* only a writer that is draining (wrote within the last second) may
     * slow the consumer down; a stuck or disconnected one never does */
    return full && store__mono_ms() - atomic_load(&w->last_write_ms) < 1000;
}

/* ------------------------------------------------------------ batching */

static int cmp_items(const void *a, const void *b)
{
    const witem_t *x = *(witem_t *const *)a, *y = *(witem_t *const *)b;
    int c = strcmp(x->u.id, y->u.id);
    if (c)
        return c;
    if (x->u.timestamp_ms != y->u.timestamp_ms)
        return x->u.timestamp_ms < y->u.timestamp_ms ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* ------------------------------------------------- validation and COPY */

/*
 * Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF):
 * exactly what the server's input verification accepts, so one bad string
 * can be left out here instead of failing the whole batch's COPY.
 */
static bool utf8_valid(const unsigned char *s)
{
    while (*s) {
        unsigned char c = *s;
        if (c < 0x80) {
            s++;
            continue;
        }
        int n;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            n = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else
            return false;
        if (s[1] < lo || s[1] > hi)
            return false;
        for (int k = 2; k <= n; k++)
            if (s[k] < 0x80 || s[k] > 0xBF)
                return false;
        s += n + 1;
    }
    return true;
}

static bool str_valid(const char *s)
{
    return utf8_valid((const unsigned char *)s);
}

/*
 * A validating scanner for RFC 8259 JSON that also refuses what jsonb
 * refuses (\u0000, unpaired surrogates), so handler outcomes can go to the
 * server as text without building a DOM.  *p advances past the value.
 */
enum { JSON_MAX_DEPTH = 64 };

static void json_ws(const char **p)
{
    while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r')
        (*p)++;
}

static int json_hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static bool json_string_scan(const char **p)
{
    const char *s = *p + 1; /* past the opening quote */
    for (;;) {
        unsigned char c = (unsigned char)*s;
        if (c == '"')
            break;
        if (c < 0x20)
            return false; /* also the terminating NUL */
        if (c != '\\') {
            s++;
            continue;
        }
        s++;
        if (strchr("\"\\/bfnrt", *s) && *s) {
            s++;
            continue;
        }
        if (*s != 'u')
            return false;
        int u = json_hex4(s + 1);
        if (u <= 0 || (u >= 0xDC00 && u <= 0xDFFF))
            return false;
        s += 5;
        if (u >= 0xD800 && u <= 0xDBFF) {
            int l = s[0] == '\\' && s[1] == 'u' ? json_hex4(s + 2) : -1;
            if (l < 0xDC00 || l > 0xDFFF)
                return false;
            s += 6;
        }
    }
    *p = s + 1;
    return true;
}

static bool json_digits(const char **p)
{
    if (**p < '0' || **p > '9')
        return false;
    while (**p >= '0' && **p <= '9')
        (*p)++;
    return true;
}

static bool json_value_scan(const char **p, int depth)
{
    json_ws(p);
    const char *s = *p;
    switch (*s) {
    case '"':
        return json_string_scan(p);
    case '{':
    case '[': {
        if (depth >= JSON_MAX_DEPTH)
            return false;
        bool obj = *s == '{';
        char close = obj ? '}' : ']';
        (*p)++;
        json_ws(p);
        if (**p == close) {
            (*p)++;
            return true;
        }
        for (;;) {
            if (obj) {
                json_ws(p);
                if (**p != '"' || !json_string_scan(p))
                    return false;
                json_ws(p);
                if (**p != ':')
                    return false;
                (*p)++;
            }
            if (!json_value_scan(p, depth + 1))
                return false;
            json_ws(p);
            if (**p == close) {
                (*p)++;
                return true;
            }
            if (**p != ',')
                return false;
            (*p)++;
        }
    }
    case 't':
        *p += 4;
        return strncmp(s, "true", 4) == 0;
    case 'f':
        *p += 5;
        return strncmp(s, "false", 5) == 0;
    case 'n':
        *p += 4;
        return strncmp(s, "null", 4) == 0;
    default:
        if (**p == '-')
            (*p)++;
        if (**p == '0')
            (*p)++;
        else if (!json_digits(p))
            return false;
        if (**p == '.') {
            (*p)++;
            if (!json_digits(p))
                return false;
        }
        if (**p == 'e' || **p == 'E') {
            (*p)++;
            if (**p == '+' || **p == '-')
                (*p)++;
            if (!json_digits(p))
                return false;
        }
        return true;
    }
}

/* A whole string holding exactly one JSON object that jsonb accepts. */
static bool json_object_text_valid(const char *s)
{
    if (!str_valid(s))
        return false;
    const char *p = s;
    json_ws(&p);
    if (*p != '{' || !json_value_scan(&p, 0))
        return false;
    json_ws(&p);
    return *p == '\0';
}

static bool buf_reserve(store_writer_t *w, size_t more)
{
    if (w->copy_len + more <= w->copy_cap)
        return true;
    size_t cap = w->copy_cap ? w->copy_cap : 65536;
    while (cap < w->copy_len + more)
        cap *= 2;
    char *p = realloc(w->copy_buf, cap);
    if (!p)
        return false;
    w->copy_buf = p;
    w->copy_cap = cap;
    return true;
}

/* Binary COPY: big-endian integers, each field as length + bytes. */
static void put_be(char *o, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        o[i] = (char)(v & 0xff);
}

static bool buf_raw(store_writer_t *w, const void *p, size_t len)
{
    if (!buf_reserve(w, len))
        return false;
    memcpy(w->copy_buf + w->copy_len, p, len);
    w->copy_len += len;
    return true;
}

static bool buf_be(store_writer_t *w, uint64_t v, int bytes)
{
    if (!buf_reserve(w, (size_t)bytes))
        return false;
    put_be(w->copy_buf + w->copy_len, v, bytes);
    w->copy_len += (size_t)bytes;
    return true;
}

static bool buf_null(store_writer_t *w)
{
    return buf_be(w, UINT32_MAX, 4); /* length -1 */
}

/* text and json share their binary form: the bytes; NULL for v == NULL. */
static bool buf_text(store_writer_t *w, const char *v)
{
    if (!v)
        return buf_null(w);
    size_t len = strlen(v);
    if (len > INT32_MAX)
        return false;
    return buf_be(w, len, 4) && buf_raw(w, v, len);
}

static bool buf_int4(store_writer_t *w, int v, bool null)
{
    if (null)
        return buf_null(w);
    return buf_be(w, 4, 4) && buf_be(w, (uint32_t)v, 4);
}

/* Unix epoch ms as a timestamptz: microseconds since 2000-01-01 UTC. */
static bool buf_time(store_writer_t *w, int64_t ms, bool null)
{
    if (null)
        return buf_null(w);
    int64_t us = (ms - INT64_C(946684800000)) * 1000;
    return buf_be(w, 8, 4) && buf_be(w, (uint64_t)us, 8);
}

/* v as a JSON string, cut at max bytes on a character boundary (v is
 * valid UTF-8: str_valid). */
static bool buf_json_str(store_writer_t *w, const char *v, size_t max)
{
    size_t n = strlen(v);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)v[n] & 0xC0) == 0x80)
            n--;
    }
    if (!buf_raw(w, "\"", 1))
        return false;
    size_t plain = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        char esc[8];
        int el = ch == '"' || ch == '\\' ? snprintf(esc, sizeof esc, "\\%c", ch)
                                          : snprintf(esc, sizeof esc, "\\u%04x", ch);
        if (!buf_raw(w, v + plain, i - plain) || !buf_raw(w, esc, (size_t)el))
            return false;
        plain = i + 1;
    }
    return buf_raw(w, v + plain, n - plain) && buf_raw(w, "\"", 1);
}

/*
 * The run's updates items[a..b) as the status_history field (a json array,
 * see store.h), written in place: its length is patched once the text is
 * there, so no second buffer.  Only the newest STORE_STATUS_HISTORY_MAX.
 */
static bool buf_history(store_writer_t *w, witem_t *const *items, size_t a, size_t b)
{
    if (b - a > STORE_STATUS_HISTORY_MAX)
        a = b - STORE_STATUS_HISTORY_MAX;
    size_t len_at = w->copy_len;
    if (!buf_be(w, 0, 4) || !buf_raw(w, "[", 1))
        return false;
    for (size_t k = a; k < b; k++) {
        const store_update_t *u = &items[k]->u;
        const char *st = store_status_name(u->status);
        char at[CLOCK_RFC3339_LEN], head[160];
        int hl = snprintf(head, sizeof head,
                          "%s{\"status\":\"%s\",\"at\":\"%s\",\"attempts\":%d,\"error\":",
                          k > a ? "," : "", st ? st : "PROCESSING",
                          clock_rfc3339(u->timestamp_ms, at), u->attempts);
        bool ok = hl > 0 && (size_t)hl < sizeof head && buf_raw(w, head, (size_t)hl) &&
                  (u->last_error && str_valid(u->last_error)
                       ? buf_json_str(w, u->last_error, STORE_STATUS_HISTORY_ERROR_MAX)
                       : buf_raw(w, "null", 4)) &&
                  buf_raw(w, "}", 1);
        if (!ok)
            return false;
    }
    if (!buf_raw(w, "]", 1))
        return false;
    put_be(w->copy_buf + len_at, w->copy_len - len_at - 4, 4);
    return true;
}

/* The newest valid non-NULL value of one string field (at byte offset off
 * in store_update_t) across items[a..b). */
static const char *newest_str(witem_t *const *items, size_t a, size_t b, size_t off)
{
    for (size_t k = b; k > a; k--) {
        const char *v = *(const char *const *)((const char *)&items[k - 1]->u + off);
        if (v && str_valid(v))
            return v;
    }
    return NULL;
}

#define NEWEST_STR(field) newest_str(items, run_start, run_end, offsetof(store_update_t, field))

/*
 * The run's handler outcomes as one JSON object text, or NULL.  The common
 * case (one update with outcomes) passes the caller's text through after
 * validation; several are merged in order with jansson.  *owned receives
 * what the caller must free.
 */
static const char *merged_outcomes(witem_t *const *items, size_t a, size_t b, char **owned)
{
    *owned = NULL;
    const char *single = NULL;
    json_t *merged = NULL;
    for (size_t k = a; k < b; k++) {
        const store_update_t *u = &items[k]->u;
        if (!u->handler_outcomes_json)
            continue;
        if (!json_object_text_valid(u->handler_outcomes_json)) {
            log_warn(COMP, "event %s: handler_outcomes is not a JSON object; ignored",
                     str_valid(u->id) ? u->id : "(invalid UTF-8 id)");
            continue;
        }
        if (!single && !merged) {
            single = u->handler_outcomes_json;
            continue;
        }
        if (!merged) {
            merged = json_loads(single, 0, NULL);
            single = NULL;
        }
        json_t *o = json_loads(u->handler_outcomes_json, 0, NULL);
        if (json_is_object(merged) && json_is_object(o))
            json_object_update(merged, o);
        json_decref(o);
    }
    if (!merged)
        return single;
    *owned = json_is_object(merged) ? json_dumps(merged, JSON_COMPACT) : NULL;
    json_decref(merged);
    return *owned;
}

/*
 * Sort by (id, timestamp, submission order) and fold each id's run into
 * one binary COPY row in w->copy_buf: the newest update's status wins, attempts
 * is the maximum, other fields take their newest known value and handler
 * outcomes merge in order.  created_at is the stream id's time, or without
 * one the run's first timestamp (w->copy_lookup is then set).  An id that
 * is not valid UTF-8 cannot be stored: its updates are dropped and counted
 * in *bad.  Returns the number of rows, or -1 when out of memory.
 */
static long coalesce(store_writer_t *w, witem_t **items, size_t n, size_t *bad)
{
    static const char header[19] = "PGCOPY\n\377\r\n"; /* + zero flags and extension */
    qsort(items, n, sizeof *items, cmp_items);
    w->copy_len = 0;
    w->copy_lookup = false;
    *bad = 0;
    long rows = 0;
    if (!buf_raw(w, header, sizeof header))
        return -1;
    for (size_t run_start = 0; run_start < n;) {
        size_t run_end = run_start + 1;
        while (run_end < n && strcmp(items[run_end]->u.id, items[run_start]->u.id) == 0)
            run_end++;
        const store_update_t *last = &items[run_end - 1]->u;
        if (!str_valid(last->id)) {
            *bad += run_end - run_start;
            run_start = run_end;
            continue;
        }
        int attempts = 0, schema_version = 0;
        for (size_t k = run_start; k < run_end; k++) {
            const store_update_t *u = &items[k]->u;
            if (u->attempts > attempts)
                attempts = u->attempts;
            if (u->schema_version > 0)
                schema_version = u->schema_version;
        }
        char *owned;
        const char *outcomes = merged_outcomes(items, run_start, run_end, &owned);
        const char *status = store_status_name(last->status);
        const char *stream_id = NEWEST_STR(stream_id);
        int64_t created = store__stream_time_ms(stream_id);
        if (created < 0) {
            created = items[run_start]->u.timestamp_ms;
            w->copy_lookup = true;
        }
        bool ok = buf_be(w, ROW_NCOLUMNS, 2) && buf_text(w, last->id) &&
                  buf_text(w, NEWEST_STR(type)) && buf_text(w, NEWEST_STR(tenant)) &&
                  buf_text(w, NEWEST_STR(correlation_id)) &&
                  buf_text(w, NEWEST_STR(source)) && buf_text(w, stream_id) &&
                  buf_int4(w, schema_version, schema_version == 0) &&
                  buf_text(w, status ? status : "PROCESSING") &&
                  buf_int4(w, attempts, false) && buf_text(w, NEWEST_STR(last_error)) &&
                  buf_text(w, outcomes) && buf_time(w, last->timestamp_ms, false) &&
                  buf_time(w, created, false) &&
                  buf_time(w, last->timestamp_ms, !store_status_terminal(last->status)) &&
                  buf_history(w, items, run_start, run_end);
        free(owned);
        if (!ok)
            return -1;
        rows++;
        run_start = run_end;
    }
    return buf_be(w, UINT16_MAX, 2) ? rows : -1; /* trailer: field count -1 */
}

/* ---------------------------------------------------------- connection */

static bool deadline_passed(store_writer_t *w)
{
    pthread_mutex_lock(&w->mu);
    bool past = w->stopping && store__mono_ms() >= w->stop_deadline;
    pthread_mutex_unlock(&w->mu);
    return past;
}

static struct timespec mono_abs(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    return ts;
}

/* Sleep up to ms, or less when a stop's flush deadline comes first. */
static void writer_wait(store_writer_t *w, int64_t ms)
{
    int64_t until = store__mono_ms() + ms;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        int64_t end = until;
        if (w->stopping && w->stop_deadline < end)
            end = w->stop_deadline;
        if (store__mono_ms() >= end)
            break;
        struct timespec ts = mono_abs(end);
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    pthread_mutex_unlock(&w->mu);
}

/* The per-connection setup: session settings, the staging table and the
 * prepared upsert and lookup (planned once, not once per batch). */
static int writer_session(store_writer_t *w, PGconn *c, char *err, size_t errlen)
{
    int applied = store_migration_applied(c, STORE_STATUS_HISTORY_MIGRATION, err, errlen);
    if (applied < 0)
        return -1;
    if (!applied)
        log_warn(COMP, "events has no status_history column (migration 0010): metadata is "
                       "written without the status history until `evbusctl migrate up`");
    w->history = applied;
    PGresult *r = PQexec(c, stage_sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        store__pg_err(err, errlen, "metadata writer setup", c, r);
    PQclear(r);
    if (!ok)
        return -1;
    const struct {
        const char *name, *sql;
    } prepared[] = {{"evbus_upsert", w->history ? upsert_sql : upsert_v9_sql},
                    {"evbus_lookup", lookup_sql}};
    for (size_t i = 0; ok && i < sizeof prepared / sizeof *prepared; i++) {
        r = PQprepare(c, prepared[i].name, prepared[i].sql, 0, NULL);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            store__pg_err(err, errlen, "metadata writer setup", c, r);
        PQclear(r);
    }
    return ok ? 0 : -1;
}

/* One connection attempt, session set up.  A fresh connection counts as
 * healthy for pacing, so the reader slows down before the first batch has
 * even been written. */
static bool writer_try_connect(store_writer_t *w, char *err, size_t errlen)
{
    w->conn = store_connect(w->url, err, errlen);
    if (w->conn && writer_session(w, w->conn, err, errlen) != 0) {
        PQfinish(w->conn);
        w->conn = NULL;
    }
    if (w->conn)
        atomic_store(&w->last_write_ms, store__mono_ms());
    return w->conn != NULL;
}

/* Connected, or waits with backoff until connected or the stop deadline. */
static bool writer_connect(store_writer_t *w)
{
    int64_t backoff = 100;
    for (;;) {
        if (w->conn && PQstatus(w->conn) == CONNECTION_OK)
            return true;
        if (w->conn) {
            PQfinish(w->conn);
            w->conn = NULL;
        }
        char err[512];
        if (writer_try_connect(w, err, sizeof err)) {
            if (w->conn_warned)
                log_info(COMP, "metadata writer reconnected to PostgreSQL; errors cleared");
            w->conn_warned = false;
            note_state(w, true, NULL);
            return true;
        }
        note_state(w, false, err);
        int64_t now = store__mono_ms();
        if (!w->conn_warned || now - w->conn_warn_at >= DROP_WARN_EVERY_MS) {
            log_warn(COMP, "metadata writer: %s; retrying (queue keeps filling)", err);
            w->conn_warned = true;
            w->conn_warn_at = now;
        }
        if (deadline_passed(w))
            return false;
        writer_wait(w, backoff);
        if (deadline_passed(w))
            return false;
        backoff = backoff * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : backoff * 2;
    }
}

static void prepare_next(store_writer_t *w);

/* Send w->copy_buf as the data of the COPY `sql` (which opens the
 * transaction).  0, or -1 with err; *sqlstate gets the error's code. */
static int copy_batch(store_writer_t *w, const char *sql, char *sqlstate, char *err,
                      size_t errlen)
{
    PGconn *c = w->conn;
    sqlstate[0] = '\0';
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COPY_IN;
    if (!ok)
        store__pg_err(err, errlen, "metadata copy", c, r);
    PQclear(r);
    if (!ok)
        return -1;
    for (size_t off = 0; ok && off < w->copy_len; off += COPY_CHUNK) {
        size_t len = w->copy_len - off < COPY_CHUNK ? w->copy_len - off : COPY_CHUNK;
        ok = PQputCopyData(c, w->copy_buf + off, (int)len) == 1;
    }
    if (PQputCopyEnd(c, ok ? NULL : "metadata writer: send failed") != 1)
        ok = false;
    if (!ok)
        store__pg_err(err, errlen, "metadata copy", c, NULL);
    if (ok && w->prepare) {
        /* the rows are on their way: build the next batch meanwhile */
        w->prepare = false;
        prepare_next(w);
    }
    while ((r = PQgetResult(c))) {
        if (ok && PQresultStatus(r) != PGRES_COMMAND_OK) {
            store__pg_err(err, errlen, "metadata copy", c, r);
            const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            snprintf(sqlstate, 6, "%s", st ? st : "");
            ok = false;
        }
        PQclear(r);
    }
    return ok ? 0 : -1;
}

static void rollback(PGconn *c)
{
    if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE)
        PQclear(PQexec(c, "ROLLBACK"));
}

/*
 * One attempt at the batch in w->copy_buf, in one transaction.  Usually
 * every id is new (the consumer reports an event once), so the rows are
 * first COPYed straight into events: no staging, no conflict checks.  When
 * some id already exists (unique violation: a PENDING row, an earlier
 * status, another host) that is rolled back and the batch goes through the
 * staging table and the upsert instead, which also skips the direct try
 * for the next DIRECT_BACKOFF_BATCHES batches.  A batch with rows that
 * have no anchor (w->copy_lookup) cannot trust the key to find their rows:
 * it always takes the staging path, with the lookup before the upsert.
 * 0 with *affected = rows the server changed, or -1 with err (rolled back).
 */
static int write_once(store_writer_t *w, long rows, long *affected, char *err, size_t errlen)
{
    PGconn *c = w->conn;
    char sqlstate[6];
    if (w->copy_lookup || !w->history) {
        /* neither tries the direct COPY nor counts against its backoff
         * (without migration 0010 events lacks the rows' last column) */
    } else if (w->direct_skip > 0) {
        w->direct_skip--;
    } else {
        if (copy_batch(w, copy_direct_sql, sqlstate, err, errlen) == 0) {
            *affected = rows;
            return 0;
        }
        rollback(c);
        if (strcmp(sqlstate, "23505") != 0)
            return -1;
        w->direct_skip = DIRECT_BACKOFF_BATCHES;
    }
    bool ok = copy_batch(w, copy_stage_sql, sqlstate, err, errlen) == 0;
    if (ok && w->copy_lookup) {
        PGresult *r = PQexecPrepared(c, "evbus_lookup", 0, NULL, NULL, NULL, 0);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            store__pg_err(err, errlen, "metadata lookup", c, r);
        PQclear(r);
    }
    if (ok) {
        PGresult *r = PQexecPrepared(c, "evbus_upsert", 0, NULL, NULL, NULL, 0);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (ok)
            *affected = strtol(PQcmdTuples(r), NULL, 10);
        else
            store__pg_err(err, errlen, "metadata upsert", c, r);
        PQclear(r);
    }
    if (ok)
        ok = store__exec(c, "metadata commit", "COMMIT", 0, NULL, NULL, err, errlen) == 0;
    if (!ok)
        rollback(c);
    return ok ? 0 : -1;
}

/* Coalesces items into w->copy_buf: the number of rows (0: nothing to
 * write), or -1 when the batch was dropped (counted); *n loses the
 * updates that cannot be stored. */
static long build_batch(store_writer_t *w, witem_t **items, size_t *n)
{
    size_t bad = 0;
    long rows = coalesce(w, items, *n, &bad);
    if (bad) {
        log_warn(COMP, "%zu metadata updates dropped: event id is not valid UTF-8", bad);
        METRIC_ADD(metadata_dropped, bad);
    }
    if (rows < 0) {
        log_error(COMP, "metadata batch of %zu updates dropped: out of memory", *n);
        METRIC_INC(metadata_giveups);
        METRIC_ADD(metadata_dropped, *n - bad);
        return -1;
    }
    *n -= bad;
    return rows;
}

static void swap_bufs(store_writer_t *w)
{
    char *p = w->copy_buf;
    size_t len = w->copy_len, cap = w->copy_cap;
    bool lookup = w->copy_lookup;
    w->copy_buf = w->next_buf;
    w->copy_len = w->next_len;
    w->copy_cap = w->next_cap;
    w->copy_lookup = w->next_lookup;
    w->next_buf = p;
    w->next_len = len;
    w->next_cap = cap;
    w->next_lookup = lookup;
}

/* Takes the next batch when a whole one is queued, into w->next, and
 * builds it in the spare buffer: the thread would otherwise only wait for
 * the server's reply, and the server would wait for the next COPY while
 * the thread builds it.  Batches still reach the server one after the
 * other, in queue order, so one event's updates stay in order. */
static void prepare_next(store_writer_t *w)
{
    size_t n = 0;
    pthread_mutex_lock(&w->mu);
    if (w->count >= w->batch_size && !w->stopping) {
        n = w->batch_size;
        for (size_t i = 0; i < n; i++) {
            w->next[i] = w->ring[w->head];
            w->next[i]->seq = i;
            w->head = (w->head + 1) % w->cap;
        }
        w->count -= n;
        METRIC_SET(metadata_queue, w->count);
    }
    pthread_mutex_unlock(&w->mu);
    if (n == 0)
        return;
    w->next_total = w->next_n = n;
    swap_bufs(w);
    w->next_rows = build_batch(w, w->next, &w->next_n);
    swap_bufs(w);
    if (w->next_rows < 0)
        w->next_rows = 0; /* dropped and counted: only its items to free */
}

static void write_batch(store_writer_t *w, long rows, size_t n)
{
    if (rows <= 0)
        return;
    w->prepare = w->next_rows < 0;
    for (int attempt = 1;; attempt++) {
        if (!writer_connect(w)) {
            log_error(COMP, "metadata batch of %zu updates dropped: stopping while "
                            "PostgreSQL is unreachable", n);
            METRIC_INC(metadata_giveups);
            METRIC_ADD(metadata_dropped, n);
            break;
        }
        char err[512];
        long affected = 0;
        METRIC_INC(metadata_batches);
        if (write_once(w, rows, &affected, err, sizeof err) == 0) {
            METRIC_ADD(metadata_written, (uint64_t)affected);
            atomic_store(&w->last_write_ms, store__mono_ms());
            break;
        }
        log_warn(COMP, "metadata batch of %ld rows failed (attempt %d of %d): %s", rows,
                 attempt, WRITER_RETRIES + 1, err);
        if (!w->conn || PQstatus(w->conn) != CONNECTION_OK)
            note_state(w, false, err);
        if (attempt > WRITER_RETRIES) {
            log_error(COMP, "metadata batch of %zu updates given up after %d attempts: %s", n,
                      attempt, err);
            METRIC_INC(metadata_giveups);
            METRIC_ADD(metadata_dropped, n);
            break;
        }
        writer_wait(w, 100 << (attempt - 1));
    }
}

/* One cheap round trip, or one reconnect attempt, while idle. */
static void idle_probe(store_writer_t *w)
{
    char err[512];
    if (!w->conn || PQstatus(w->conn) != CONNECTION_OK) {
        if (w->conn) {
            PQfinish(w->conn);
            w->conn = NULL;
        }
        bool ok = writer_try_connect(w, err, sizeof err);
        if (ok && !atomic_load(&w->connected))
            log_info(COMP, "metadata writer reconnected to PostgreSQL; errors cleared");
        else if (!ok && atomic_load(&w->connected))
            log_warn(COMP, "metadata writer: PostgreSQL unreachable: %s", err);
        note_state(w, ok, err);
        return;
    }
    PGresult *r = PQexec(w->conn, "SELECT 1");
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) {
        snprintf(err, sizeof err, "%s", PQerrorMessage(w->conn));
        err[strcspn(err, "\n")] = '\0';
        log_warn(COMP, "metadata writer: PostgreSQL unreachable: %s", err);
        PQfinish(w->conn);
        w->conn = NULL;
    }
    PQclear(r);
    note_state(w, ok, err);
}

bool store_writer_connected(const store_writer_t *w)
{
    return atomic_load(&((store_writer_t *)w)->connected);
}

json_t *store_writer_health(const store_writer_t *w)
{
    store_writer_t *m = (store_writer_t *)w;
    pthread_mutex_lock(&m->err_mu);
    json_t *o = json_pack("{s:b, s:s?, s:I, s:I, s:I, s:I}", "connected",
                          atomic_load(&m->connected), "last_error",
                          m->last_error[0] ? m->last_error : NULL, "since_ms",
                          (json_int_t)(store__wall_ms() - atomic_load(&m->state_since_ms)),
                          "queue", (json_int_t)METRIC_GET(metadata_queue), "capacity",
                          (json_int_t)m->cap, "dropped",
                          (json_int_t)METRIC_GET(metadata_dropped));
    pthread_mutex_unlock(&m->err_mu);
    return o;
}

/* ------------------------------------------------------------- thread */

/* The partition upkeep round, when due.  A failed round (PostgreSQL down,
 * a lock not granted in time) is retried a minute later; batches wait for
 * a round, which is a few statements. */
static void writer_upkeep(store_writer_t *w)
{
    int64_t now = store__mono_ms(), due = atomic_load(&w->upkeep_due);
    if (now < due)
        return;
    pthread_mutex_lock(&w->mu);
    bool stopping = w->stopping;
    pthread_mutex_unlock(&w->mu);
    if (stopping)
        return;
    int64_t retry = now + UPKEEP_RETRY_MS;
    atomic_store(&w->upkeep_due, retry);
    char err[512];
    if (w->conn && PQstatus(w->conn) != CONNECTION_OK) {
        PQfinish(w->conn);
        w->conn = NULL;
    }
    if (!w->conn && !writer_try_connect(w, err, sizeof err))
        return; /* writer_connect() reports the outage when a batch waits */
    store_retention_t r = {.retention_s = atomic_load(&w->retention_s),
                           .partitions_ahead = atomic_load(&w->partitions_ahead)};
    store_upkeep_t up;
    if (store_events_upkeep(w->conn, &r, store__wall_ms(), &up, err, sizeof err) != 0) {
        log_warn(COMP, "metadata partition upkeep failed (retrying in %d s): %s",
                 UPKEEP_RETRY_MS / 1000, err);
        return;
    }
    /* unless a reload asked for another round meanwhile */
    atomic_compare_exchange_strong(&w->upkeep_due, &retry, now + UPKEEP_EVERY_MS);
    if (up.created || up.dropped)
        log_info(COMP, "metadata partitions: %d created ahead, %d dropped (retention %u s)",
                 up.created, up.dropped, r.retention_s);
}

static void *writer_main(void *arg)
{
    store_writer_t *w = arg;
    pthread_setname_np(pthread_self(), "evbus-metadata");
    /* Connect before the first update arrives: at start the consumer can
     * fill the queue faster than a lazy connection would be made. */
    char err[512];
    note_state(w, writer_try_connect(w, err, sizeof err), err);
    for (;;) {
        witem_t **batch = w->batch;
        writer_upkeep(w);
        pthread_mutex_lock(&w->mu);
        while (w->count == 0 && !w->stopping) {
            int64_t due = atomic_load(&w->upkeep_due), now = store__mono_ms();
            if (now >= due)
                break;
            /* idle: probe PostgreSQL every 2 s so health knows it is down
             * even when there is nothing to write */
            struct timespec ts = mono_abs(due < now + IDLE_PROBE_MS ? due : now + IDLE_PROBE_MS);
            if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT && w->count == 0 &&
                !w->stopping && store__mono_ms() < atomic_load(&w->upkeep_due)) {
                pthread_mutex_unlock(&w->mu);
                idle_probe(w);
                pthread_mutex_lock(&w->mu);
            }
        }
        if (w->count == 0 && !w->stopping) { /* only the upkeep is due */
            pthread_mutex_unlock(&w->mu);
            continue;
        }
        if (w->count == 0 || (w->stopping && store__mono_ms() >= w->stop_deadline)) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        if (w->count < w->batch_size && !w->stopping) {
            /* Let a batch build up for at most flush_ms after its first update. */
            struct timespec ts = mono_abs(store__mono_ms() + atomic_load(&w->flush_ms));
            while (w->count < w->batch_size && !w->stopping)
                if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT)
                    break;
        }
        size_t n = w->count < w->batch_size ? w->count : w->batch_size;
        for (size_t i = 0; i < n; i++) {
            batch[i] = w->ring[w->head];
            batch[i]->seq = i;
            w->head = (w->head + 1) % w->cap;
        }
        w->count -= n;
        METRIC_SET(metadata_queue, w->count);
        pthread_mutex_unlock(&w->mu);
        size_t kept = n;
        write_batch(w, build_batch(w, batch, &kept), kept);
        for (size_t i = 0; i < n; i++)
            free(batch[i]);
        /* Batches prepared while the previous one was being written. */
        while (w->next_rows >= 0) {
            witem_t **t = w->batch;
            batch = w->batch = w->next;
            w->next = t;
            long rows = w->next_rows;
            w->next_rows = -1;
            swap_bufs(w);
            write_batch(w, rows, w->next_n);
            for (size_t i = 0; i < w->next_total; i++)
                free(batch[i]);
        }
    }
    /* Whatever is left after the flush deadline is dropped and counted. */
    pthread_mutex_lock(&w->mu);
    size_t left = w->count;
    for (; w->count > 0; w->count--) {
        free(w->ring[w->head]);
        w->head = (w->head + 1) % w->cap;
    }
    pthread_mutex_unlock(&w->mu);
    if (left) {
        METRIC_ADD(metadata_dropped, left);
        log_error(COMP, "metadata writer stopped with %zu updates unwritten (dropped)", left);
    }
    METRIC_SET(metadata_queue, 0);
    return NULL;
}

int store_writer_flush_ms(const store_writer_t *w)
{
    return atomic_load(&((store_writer_t *)w)->flush_ms);
}

void store_writer_configure(store_writer_t *w, const evbus_config_t *cfg)
{
    if (!w)
        return;
    atomic_store(&w->flush_ms, (int)cfg->store.metadata_flush_ms);
    unsigned retention = (unsigned)(cfg->store.metadata_retention_ms / 1000);
    unsigned ahead = cfg->store.metadata_partitions_ahead;
    bool changed = atomic_exchange(&w->retention_s, retention) != retention;
    changed |= atomic_exchange(&w->partitions_ahead, ahead) != ahead;
    if (changed) {
        atomic_store(&w->upkeep_due, 0);
        pthread_mutex_lock(&w->mu);
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
}

store_writer_t *store_writer_start(const evbus_config_t *cfg)
{
    if (!cfg || !cfg->store.postgres_url) {
        log_error(COMP, "metadata writer: no postgres.url configured");
        return NULL;
    }
    store_writer_t *w = calloc(1, sizeof *w);
    if (!w)
        goto oom;
    w->cap = cfg->store.metadata_queue_size ? cfg->store.metadata_queue_size : 65536;
    w->batch_size = cfg->store.metadata_batch_size ? cfg->store.metadata_batch_size : 5000;
    atomic_init(&w->flush_ms, cfg->store.metadata_flush_ms ? (int)cfg->store.metadata_flush_ms : 50);
    atomic_init(&w->retention_s, (unsigned)(cfg->store.metadata_retention_ms / 1000));
    atomic_init(&w->partitions_ahead, cfg->store.metadata_partitions_ahead);
    atomic_init(&w->upkeep_due, 0);
    w->ring = calloc(w->cap, sizeof *w->ring);
    w->batch = calloc(w->batch_size, sizeof *w->batch);
    w->next = calloc(w->batch_size, sizeof *w->next);
    w->next_rows = -1;
    w->url = strdup(cfg->store.postgres_url);
    if (!w->ring || !w->batch || !w->next || !w->url)
        goto oom;
    pthread_mutex_init(&w->mu, NULL);
    pthread_mutex_init(&w->err_mu, NULL);
    atomic_init(&w->state_since_ms, store__wall_ms());
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&w->thread, NULL, writer_main, w);
    if (rc != 0) {
        log_error(COMP, "metadata writer: cannot start thread: %s", strerror(rc));
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w->ring);
        free(w->batch);
        free(w->next);
        free(w->url);
        free(w);
        return NULL;
    }
    return w;
oom:
    log_error(COMP, "metadata writer: out of memory");
    if (w) {
        free(w->ring);
        free(w->batch);
        free(w->next);
        free(w->url);
    }
    free(w);
    return NULL;
}

void store_writer_stop(store_writer_t *w, int flush_timeout_ms)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    w->stop_deadline = store__mono_ms() + (flush_timeout_ms > 0 ? flush_timeout_ms : 0);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    if (w->conn)
        PQfinish(w->conn);
    free(w->copy_buf);
    free(w->next_buf);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w->ring);
    free(w->batch);
    free(w->next);
    free(w->url);
    free(w);
}

static void set_str(json_t *o, const char *k, const char *v)
{
    json_object_set_new(o, k, v ? json_string(v) : json_null());
}

int store_record_published(PGconn *c, const store_update_t *events, size_t n, char *err,
                           size_t errlen)
{
    if (n == 0)
        return 0;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        const store_update_t *u = &events[i];
        if (!u->id) {
            json_decref(arr);
            store__err(err, errlen, "record published: event %zu has no id", i);
            return -1;
        }
        json_t *row = json_object();
        set_str(row, "id", u->id);
        set_str(row, "type", u->type);
        set_str(row, "tenant", u->tenant);
        set_str(row, "correlation_id", u->correlation_id);
        set_str(row, "source", u->source);
        set_str(row, "stream_id", u->stream_id);
        json_object_set_new(row, "schema_version",
                            u->schema_version ? json_integer(u->schema_version) : json_null());
        int64_t ts = u->timestamp_ms ? u->timestamp_ms : store__wall_ms();
        int64_t anchor = store__stream_time_ms(u->stream_id);
        json_object_set_new(row, "ts", json_integer(ts));
        json_object_set_new(row, "at", json_integer(anchor >= 0 ? anchor : ts));
        json_object_set_new(row, "anchored", json_boolean(anchor >= 0));
        json_array_append_new(arr, row);
    }
    char *payload = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    if (!payload) {
        store__err(err, errlen, "record published: out of memory");
        return -1;
    }
    const char *params[] = {payload};
    long affected = 0;
    int rc = store__exec(c, "record published", insert_pending_sql, 1, params, &affected, err,
                         errlen);
    free(payload);
    return rc == 0 ? (int)affected : -1;
}
