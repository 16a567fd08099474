/*
 * store_events — read queries over the events table for evbusctl and the
 * admin API, and the one status change an operator makes (PURGED).  Rows
 * are rendered by PostgreSQL itself (row_to_json), so the JSON always has
 * every column under its column name.  An id is looked up in every
 * partition (the key is (id, created_at) since migration 0006).
 */
#include "store/store_internal.h"

#include <stdio.h>
#include <stdlib.h>

#define STR_(x) #x
#define STR(x) STR_(x)

#define EVENT_COLUMNS                                                                          \
    "id, type, tenant, correlation_id, source, stream_id, schema_version, status, attempts,"    \
    " last_error, handler_outcomes, status_at, created_at, updated_at, completed_at"

int store_events_get(PGconn *c, const char *id, json_t **out, char *err, size_t errlen)
{
    const char *params[] = {id};
    int rc = store__query_json(c, "events get",
                             /* every column: status_history too once migration
                              * 0010 added it (lists leave it out) */
                             "SELECT row_to_json(e) FROM (SELECT *"
                             " FROM events WHERE id = $1 ORDER BY created_at DESC LIMIT 1) e",
                             1, params, out, err, errlen);
    /* a row from before the history (or before 0010) has none: [] */
    if (rc == 0 && *out && !json_is_array(json_object_get(*out, "status_history")))
        json_object_set_new(*out, "status_history", json_array());
    return rc;
}

int store_events_expired(PGconn *c, json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    json_t *exists = NULL;
    if (store__query_json(c, "events expired",
                          "SELECT to_json(to_regclass('events_expired') IS NOT NULL)", 0, NULL,
                          &exists, err, errlen) != 0)
        return -1;
    bool has_table = json_is_true(exists);
    json_decref(exists);
    if (!has_table)
        return 0;
    return store__query_json(
        c, "events expired",
        "SELECT json_build_object('before', to_ts, 'retention_s', retention_s,"
        " 'dropped_at', dropped_at)"
        " FROM events_expired ORDER BY to_ts DESC, dropped_at DESC LIMIT 1",
        0, NULL, out, err, errlen);
}

int store_events_list(PGconn *c, const store_event_filter_t *f, json_t **out, char *err,
                      size_t errlen)
{
    *out = NULL;
    int limit = f->limit ? f->limit : 100;
    if (limit < 1 || limit > 1000) {
        store__err(err, errlen, "limit: must be between 1 and 1000 (got %d)", f->limit);
        return STORE_EINVAL;
    }
    if (f->offset < 0) {
        store__err(err, errlen, "offset: must not be negative");
        return STORE_EINVAL;
    }
    if (!f->after_created != !f->after_id) {
        store__err(err, errlen, "after: needs both created_at and id");
        return STORE_EINVAL;
    }
    const char *status = NULL;
    if (f->status >= 0 && !(status = store_status_name((store_status_t)f->status))) {
        store__err(err, errlen, "status: unknown status %d", f->status);
        return STORE_EINVAL;
    }
    char since[32], until[32], lim[16], off[16];
    snprintf(since, sizeof since, "%lld", (long long)f->since_ms);
    snprintf(until, sizeof until, "%lld", (long long)f->until_ms);
    snprintf(lim, sizeof lim, "%d", limit);
    snprintf(off, sizeof off, "%d", f->offset);
    const char *params[] = {f->tenant, f->type, status, f->since_ms ? since : NULL,
                            f->until_ms ? until : NULL, f->after_created, f->after_id, lim, off};
    int rc = store__query_json(
        c, "events list",
        "SELECT COALESCE(json_agg(row_to_json(e) ORDER BY e.created_at DESC, e.id), '[]')"
        " FROM (SELECT " EVENT_COLUMNS " FROM events"
        " WHERE ($1::text IS NULL OR tenant = $1)"
        "   AND ($2::text IS NULL OR type = $2)"
        "   AND ($3::text IS NULL OR status = $3)"
        "   AND ($4::bigint IS NULL OR created_at >= to_timestamp(0) + $4 * interval '1 millisecond')"
        "   AND ($5::bigint IS NULL OR created_at <= to_timestamp(0) + $5 * interval '1 millisecond')"
        "   AND ($6::timestamptz IS NULL OR created_at < $6"
        "        OR (created_at = $6 AND id > $7::text))"
        " ORDER BY created_at DESC, id LIMIT $8::int OFFSET $9::int) e",
        9, params, out, err, errlen);
    return rc;
}

int store_events_mark_purged(PGconn *c, const char *const *ids, size_t n, char *err,
                             size_t errlen)
{
    if (n == 0)
        return 0;
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_string(ids[i])) != 0) {
            json_decref(a);
            a = NULL;
        }
    char *text = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    if (!text) {
        store__err(err, errlen, "events mark purged: out of memory (or an id is not UTF-8)");
        return -1;
    }
    const char *params[] = {text};
    long changed = 0;
    /* the status history gets the PURGED transition once 0010 made room */
    int history = store_migration_applied(c, STORE_STATUS_HISTORY_MIGRATION, err, errlen);
    if (history < 0) {
        free(text);
        return -1;
    }
    int rc = store__exec(
        c, "events mark purged",
        history ? "UPDATE events SET status = 'PURGED',"
                  " status_at = GREATEST(status_at, now()), completed_at = now(),"
                  " updated_at = now(),"
                  " status_history = evbus_status_history_append(status_history,"
                  "   json_build_array(json_build_object('status', 'PURGED', 'at',"
                  "     to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
                  "     'attempts', attempts, 'error', NULL)), " STR(STORE_STATUS_HISTORY_MAX) ")"
                  " WHERE status = 'DEAD_LETTERED'"
                  "   AND id IN (SELECT jsonb_array_elements_text($1::jsonb))"
                : "UPDATE events SET status = 'PURGED',"
                  " status_at = GREATEST(status_at, now()), completed_at = now(),"
                  " updated_at = now()"
                  " WHERE status = 'DEAD_LETTERED'"
                  "   AND id IN (SELECT jsonb_array_elements_text($1::jsonb))",
        1, params, &changed, err, errlen);
    free(text);
    return rc != 0 ? -1 : (int)changed;
}
