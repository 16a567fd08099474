/*
 * store_archive — the PostgreSQL side of the stream archive (migration
 * 0008, retention.archive: postgres): writing entries with binary COPY,
 * reading ranges back for replay, and the upkeep of its day partitions.
 *
 * Writes are built like the metadata writer's (store_writer.c): one buffer
 * of binary COPY rows sent in one statement, straight into events_archive
 * while every row is new.  A COPY that meets a row already stored (unique
 * violation: the chunk was archived before a crash kept its watermark from
 * being recorded, or by another host) is rolled back and sent again
 * through a per-session TEMP staging table and INSERT ... ON CONFLICT DO
 * NOTHING, so writing the same entries twice stores them once.
 *
 * It does not decide what to archive or when (host/retention/ does), and
 * it never parses an event: the `event` field goes to a bytea as it is.
 */
#include "store/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* STORE_MIGRATE_LOCK_KEY + 2 (store_migrate.c, store_partitions.c):
 * archive upkeep rounds of several hosts run one at a time. */
#define STORE_ARCHIVE_UPKEEP_LOCK_KEY "435509404773"
#define UPKEEP_LOCK_TIMEOUT "2s"
#define BYTEA_OID 17
enum { COPY_CHUNK = 1 << 20 };

#define ARCHIVE_COLUMNS "stream, ms, seq, event, fields"

static const char copy_direct_sql[] =
    "COPY events_archive (" ARCHIVE_COLUMNS ") FROM STDIN (FORMAT binary)";
static const char copy_stage_sql[] =
    "BEGIN; CREATE TEMP TABLE IF NOT EXISTS evbus_archive_stage (stream text, ms bigint,"
    " seq bigint, event bytea, fields bytea[]) ON COMMIT DELETE ROWS;"
    " COPY evbus_archive_stage FROM STDIN (FORMAT binary)";
static const char insert_stage_sql[] =
    "INSERT INTO events_archive (" ARCHIVE_COLUMNS ") SELECT " ARCHIVE_COLUMNS
    " FROM evbus_archive_stage ON CONFLICT DO NOTHING";

int store__stream_id_parse(const char *sid, int64_t *ms, int64_t *seq)
{
    int64_t t = store__stream_time_ms(sid);
    if (t < 0)
        return -1;
    const char *s = strchr(sid, '-') + 1;
    /* bigint: 19 digits at most, and not above INT64_MAX */
    if (strlen(s) > 19 || (strlen(s) == 19 && strcmp(s, "9223372036854775807") > 0))
        return -1;
    *ms = t;
    *seq = strtoll(s, NULL, 10);
    return 0;
}

/* ----------------------------------------------------------- copy rows */

typedef struct copybuf {
    char *p;
    size_t len, cap;
    bool oom;
} copybuf_t;

static void cb_raw(copybuf_t *b, const void *p, size_t len)
{
    if (b->oom)
        return;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + len)
            cap *= 2;
        char *n = realloc(b->p, cap);
        if (!n) {
            b->oom = true;
            return;
        }
        b->p = n;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, len);
    b->len += len;
}

/* Binary COPY: big-endian integers, each field as length + bytes. */
static void cb_be(copybuf_t *b, uint64_t v, int bytes)
{
    unsigned char o[8];
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        o[i] = (unsigned char)(v & 0xff);
    cb_raw(b, o, (size_t)bytes);
}

static void cb_bytes(copybuf_t *b, const char *v, size_t len)
{
    if (!v) {
        cb_be(b, UINT32_MAX, 4); /* length -1: NULL */
        return;
    }
    cb_be(b, len, 4);
    cb_raw(b, v, len);
}

/* A one-dimensional bytea[] in array_send's form: header, then each
 * element as length + bytes. */
static void cb_bytea_array(copybuf_t *b, const char *const *v, const size_t *lens, size_t n)
{
    size_t body = 20;
    for (size_t i = 0; i < n; i++)
        body += 4 + lens[i];
    cb_be(b, body, 4);
    cb_be(b, 1, 4);         /* dimensions */
    cb_be(b, 0, 4);         /* no NULL elements */
    cb_be(b, BYTEA_OID, 4); /* element type */
    cb_be(b, n, 4);         /* elements */
    cb_be(b, 1, 4);         /* lower bound */
    for (size_t i = 0; i < n; i++)
        cb_bytes(b, v[i], lens[i]);
}

/* The rows of entries in b; STORE_EINVAL naming the entry that cannot be
 * stored, -1 when out of memory. */
static int build_rows(copybuf_t *b, const char *stream, const store_archive_entry_t *e, size_t n,
                      char *err, size_t errlen)
{
    static const char header[19] = "PGCOPY\n\377\r\n"; /* + zero flags and extension */
    cb_raw(b, header, sizeof header);
    size_t stream_len = strlen(stream);
    for (size_t i = 0; i < n; i++) {
        int64_t ms, seq;
        if (store__stream_id_parse(e[i].id, &ms, &seq) != 0) {
            store__err(err, errlen, "entries[%zu]: id %.60s is not <ms>-<seq> within bigint", i,
                       e[i].id ? e[i].id : "(null)");
            return STORE_EINVAL;
        }
        if (e[i].n_fields % 2) {
            store__err(err, errlen, "entries[%zu] (%s): a field name without its value", i,
                       e[i].id);
            return STORE_EINVAL;
        }
        /* `event` has a column; the other fields keep their order */
        size_t event_k = e[i].n_fields;
        for (size_t k = 0; k < e[i].n_fields && event_k == e[i].n_fields; k += 2)
            if (e[i].lens[k] == 5 && memcmp(e[i].fields[k], "event", 5) == 0)
                event_k = k;
        bool has_event = event_k < e[i].n_fields;
        const char *event = has_event ? e[i].fields[event_k + 1] : NULL;
        size_t event_len = has_event ? e[i].lens[event_k + 1] : 0;
        size_t others = e[i].n_fields - (has_event ? 2 : 0);
        cb_be(b, 5, 2);
        cb_bytes(b, stream, stream_len);
        cb_be(b, 8, 4);
        cb_be(b, (uint64_t)ms, 8);
        cb_be(b, 8, 4);
        cb_be(b, (uint64_t)seq, 8);
        cb_bytes(b, event, event_len);
        if (others == 0) {
            cb_bytes(b, NULL, 0);
            continue;
        }
        const char **v = malloc(others * sizeof *v);
        size_t *l = malloc(others * sizeof *l);
        if (!v || !l) {
            free(v);
            free(l);
            return -1;
        }
        size_t m = 0;
        for (size_t k = 0; k < e[i].n_fields; k += 2) {
            if (k == event_k)
                continue;
            v[m] = e[i].fields[k], l[m++] = e[i].lens[k];
            v[m] = e[i].fields[k + 1], l[m++] = e[i].lens[k + 1];
        }
        cb_bytea_array(b, v, l, m);
        free(v);
        free(l);
    }
    cb_be(b, UINT16_MAX, 2); /* trailer: field count -1 */
    return b->oom ? -1 : 0;
}

/* Send b as the data of the COPY `sql` (which may open a transaction
 * first).  0, or -1 with err and the error's SQLSTATE in sqlstate. */
static int copy_send(PGconn *c, const char *sql, const copybuf_t *b, char sqlstate[6], char *err,
                     size_t errlen)
{
    sqlstate[0] = '\0';
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COPY_IN;
    if (!ok)
        store__pg_err(err, errlen, "archive copy", c, r);
    PQclear(r);
    if (!ok)
        return -1;
    for (size_t off = 0; ok && off < b->len; off += COPY_CHUNK) {
        size_t len = b->len - off < COPY_CHUNK ? b->len - off : COPY_CHUNK;
        ok = PQputCopyData(c, b->p + off, (int)len) == 1;
    }
    if (PQputCopyEnd(c, ok ? NULL : "archive: send failed") != 1)
        ok = false;
    if (!ok)
        store__pg_err(err, errlen, "archive copy", c, NULL);
    while ((r = PQgetResult(c))) {
        if (ok && PQresultStatus(r) != PGRES_COMMAND_OK) {
            store__pg_err(err, errlen, "archive copy", c, r);
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

int store_archive_write(PGconn *c, const char *stream, const store_archive_entry_t *entries,
                        size_t n, long *inserted, char *err, size_t errlen)
{
    *inserted = 0;
    if (n == 0)
        return 0;
    copybuf_t b = {0};
    int rc = build_rows(&b, stream, entries, n, err, errlen);
    if (rc != 0) {
        if (rc == -1)
            store__err(err, errlen, "archive: out of memory building %zu rows", n);
        free(b.p);
        return rc;
    }
    char sqlstate[6];
    if (copy_send(c, copy_direct_sql, &b, sqlstate, err, errlen) == 0) {
        *inserted = (long)n;
        free(b.p);
        return 0;
    }
    rollback(c);
    if (strcmp(sqlstate, "23505") != 0) {
        free(b.p);
        return -1;
    }
    /* some rows are there already: only the others go in */
    bool ok = copy_send(c, copy_stage_sql, &b, sqlstate, err, errlen) == 0;
    free(b.p);
    if (ok) {
        PGresult *r = PQexec(c, insert_stage_sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (ok)
            *inserted = strtol(PQcmdTuples(r), NULL, 10);
        else
            store__pg_err(err, errlen, "archive insert", c, r);
        PQclear(r);
    }
    if (ok)
        ok = store__exec(c, "archive commit", "COMMIT", 0, NULL, NULL, err, errlen) == 0;
    if (!ok) {
        rollback(c);
        *inserted = 0;
    }
    return ok ? 0 : -1;
}

/* ---------------------------------------------------------------- reads */

int store__archive_present(PGconn *c, bool *present, char *err, size_t errlen)
{
    PGresult *r = PQexec(c, "SELECT to_regclass('events_archive') IS NOT NULL");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        store__pg_err(err, errlen, "archive", c, r);
        PQclear(r);
        return -1;
    }
    *present = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return 0;
}

int store__archive_first(PGconn *c, const char *stream, int64_t *ms, int64_t *seq, bool *found,
                          char *err, size_t errlen)
{
    const char *params[] = {stream};
    PGresult *r = PQexecParams(c, "SELECT ms, seq FROM events_archive WHERE stream = $1"
                                  " ORDER BY ms, seq LIMIT 1",
                               1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        store__pg_err(err, errlen, "archive: first entry", c, r);
        PQclear(r);
        return -1;
    }
    *found = PQntuples(r) > 0;
    if (*found) {
        *ms = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        *seq = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    }
    PQclear(r);
    return 0;
}

/* The parameters of a range [lo, hi) of ids as text. */
typedef struct range_params {
    char lo_ms[24], lo_seq[24], hi_ms[24], hi_seq[24], limit[24];
} range_params_t;

static void range_text(range_params_t *p, const store__archive_range_t *rg, int limit)
{
    snprintf(p->lo_ms, sizeof p->lo_ms, "%lld", (long long)rg->lo_ms);
    snprintf(p->lo_seq, sizeof p->lo_seq, "%lld", (long long)rg->lo_seq);
    snprintf(p->hi_ms, sizeof p->hi_ms, "%lld", (long long)rg->hi_ms);
    snprintf(p->hi_seq, sizeof p->hi_seq, "%lld", (long long)rg->hi_seq);
    snprintf(p->limit, sizeof p->limit, "%d", limit);
}

/* The plain ms bounds let the planner skip whole partitions (it does not
 * prune on row comparisons); the row comparisons are the exact range. */
#define RANGE_WHERE                                                                            \
    " WHERE stream = $1 AND ms >= $2::bigint AND ms <= $4::bigint"                           \
    " AND (ms, seq) >= ($2::bigint, $3::bigint) AND (ms, seq) < ($4::bigint, $5::bigint)"

int64_t store__archive_count(PGconn *c, const char *stream, const store__archive_range_t *rg,
                             char *err, size_t errlen)
{
    range_params_t p;
    range_text(&p, rg, 0);
    const char *params[] = {stream, p.lo_ms, p.lo_seq, p.hi_ms, p.hi_seq};
    PGresult *r = PQexecParams(c, "SELECT count(*) FROM events_archive" RANGE_WHERE, 5, NULL,
                               params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        store__pg_err(err, errlen, "archive: count", c, r);
        PQclear(r);
        return -1;
    }
    int64_t n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return n;
}

PGresult *store__archive_read(PGconn *c, const char *stream, const store__archive_range_t *rg,
                              int limit, char *err, size_t errlen)
{
    range_params_t p;
    range_text(&p, rg, limit);
    const char *params[] = {stream, p.lo_ms, p.lo_seq, p.hi_ms, p.hi_seq, p.limit};
    /* binary results: the event's bytes as they were stored */
    PGresult *r = PQexecParams(
        c,
        "SELECT ms, seq, event, EXISTS (SELECT 1 FROM generate_subscripts(fields, 1) AS i"
        " WHERE i % 2 = 1 AND fields[i] = 'retry'::bytea) FROM events_archive"
        RANGE_WHERE " ORDER BY ms, seq LIMIT $6::int",
        6, NULL, params, NULL, NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        store__pg_err(err, errlen, "archive: read", c, r);
        PQclear(r);
        return NULL;
    }
    return r;
}

/* --------------------------------------------------------------- upkeep */

/* store__exec1 with this module's label in its errors */
static int exec1(PGconn *c, const char *sql, int nparams, const char *const *params,
                 char *value, size_t vlen, char *err, size_t errlen)
{
    return store__exec1(c, "archive upkeep", sql, nparams, params, value, vlen, err, errlen);
}


int store_archive_upkeep(PGconn *c, const store_retention_t *rt, bool create, int64_t now_ms,
                         store_upkeep_t *out, char *err, size_t errlen)
{
    *out = (store_upkeep_t){.skipped = false};
    bool present;
    if (store__archive_present(c, &present, err, errlen) != 0)
        return -1;
    if (!present) {
        out->skipped = true; /* migration 0008 not applied: nothing to keep */
        return 0;
    }
    time_t now_s = (time_t)(now_ms / 1000);
    struct tm tm;
    gmtime_r(&now_s, &tm);
    char today[16], ahead[16], cutoff[32], got[32];
    strftime(today, sizeof today, "%Y-%m-%d", &tm);
    snprintf(ahead, sizeof ahead, "%u", rt->partitions_ahead);
    snprintf(cutoff, sizeof cutoff, "%lld", (long long)(now_ms - (int64_t)rt->retention_s * 1000));

    if (exec1(c, "BEGIN", 0, NULL, NULL, 0, err, errlen) != 0)
        return -1;
    if (exec1(c, "SET LOCAL lock_timeout = '" UPKEEP_LOCK_TIMEOUT "'", 0, NULL, NULL, 0, err,
              errlen) != 0 ||
        exec1(c, "SELECT pg_try_advisory_xact_lock(" STORE_ARCHIVE_UPKEEP_LOCK_KEY ")", 0, NULL,
              got, sizeof got, err, errlen) != 0)
        goto fail;
    if (strcmp(got, "t") != 0) {
        out->skipped = true;
        return exec1(c, "COMMIT", 0, NULL, NULL, 0, err, errlen);
    }
    if (create) {
        const char *ahead_params[] = {today, ahead};
        if (exec1(c,
                  "SELECT count(*) FILTER (WHERE evbus_archive_partition_create(d::date))"
                  " FROM generate_series($1::date, $1::date + $2::int, interval '1 day') AS d",
                  2, ahead_params, got, sizeof got, err, errlen) != 0)
            goto fail;
        out->created = atoi(got);
    }
    if (rt->retention_s > 0) {
        const char *expire_params[] = {cutoff};
        if (exec1(c, "SELECT evbus_archive_expire($1::bigint)", 1, expire_params, got,
                  sizeof got, err, errlen) != 0)
            goto fail;
        out->dropped = atoi(got);
    }
    if (exec1(c, "COMMIT", 0, NULL, NULL, 0, err, errlen) != 0)
        goto fail;
    return 0;
fail:
    PQclear(PQexec(c, "ROLLBACK"));
    out->created = out->dropped = 0;
    return -1;
}
