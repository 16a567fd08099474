/*
 * routes_data — events (metadata from PostgreSQL, publishing to the
 * stream) and replay jobs.  The user's view is docs/admin-api.md ("Events",
 * "Replays").
 *
 * Tenancy: a tenant token sees, publishes and replays its own tenant only.
 * Lists are filtered by tenant in the query itself (before paging), and a
 * single row of another tenant takes the very path a missing one takes:
 * the same query, then admin_not_found().
 *
 * Publishing checks every event of a request before the first one is
 * written, so a refused request writes nothing.  This module does not run
 * replays (store_replay_worker does, inside evbusd) and keeps no state of
 * its own: lists page with keyset cursors (created_at, id) signed by
 * admin_cursor_make(), so rows written meanwhile never shift a page.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin_internal.h"
#include "schema/schema.h"
#include "store/store.h"
#include "util/log.h"
#include "util/metrics.h"

#define PUBLISH_MAX 1000
#define LIST_MAX 500
#define LIST_DEFAULT 50
#define REPLAY_MAX_TYPES 16

/* ---- shared helpers ------------------------------------------------------- */

/* Whether a row (event or job) belongs to the caller: every row for a "*"
 * token, else rows whose tenant is exactly the token's. */
static bool row_visible(const admin_req_t *r, const json_t *row)
{
    if (!r->tenant)
        return true;
    const char *t = json_string_value(json_object_get(row, "tenant"));
    return t && strcmp(t, r->tenant) == 0;
}

/* A store call failed: 503 when the connection is gone (it is not pooled
 * again), 500 otherwise. */
static int store_failed(admin_req_t *r, const char *err)
{
    if (!r->pg || PQstatus(r->pg) != CONNECTION_OK) {
        admin_pg_broken(r);
        return admin_unavailable(r, "", "PostgreSQL: %s", err);
    }
    log_warn("admin", "%s: %s", r->route, err);
    return admin_error(r, 500, "internal", "", "PostgreSQL: %s", err);
}

/* STORE_EINVAL's message starts with the field ("types[1]: ..."). */
static int store_invalid(admin_req_t *r, const char *err)
{
    size_t n = strcspn(err, ":");
    char field[64];
    snprintf(field, sizeof field, "%.*s", err[n] && n < sizeof field ? (int)n : 0, err);
    const char *msg = err[n] ? err + n + 1 : err;
    while (*msg == ' ')
        msg++;
    return admin_bad(r, field, "%s", msg);
}

/* The "cursor" parameter of a keyset list: "<created_at>|<id>".  0 with
 * both NULL when absent, -1 with the 400 set. */
static int cursor_read(admin_req_t *r, char **payload, const char **created, const char **id)
{
    *created = *id = NULL;
    if (admin_query_cursor(r, payload) != 0)
        return -1;
    if (!*payload)
        return 0;
    char *bar = strchr(*payload, '|');
    if (!bar || bar == *payload || !bar[1]) { /* signed by us: cannot happen */
        free(*payload);
        *payload = NULL;
        admin_bad(r, "cursor", "not a cursor of this endpoint");
        return -1;
    }
    *bar = '\0';
    *created = *payload;
    *id = bar + 1;
    return 0;
}

/*
 * A page of rows fetched with limit + 1: the extra row only says there is
 * more.  Replies {<key>: rows, count, next_cursor} (next_cursor null on
 * the last page) and steals rows.
 */
static int page_reply(admin_req_t *r, const char *key, json_t *rows, long limit)
{
    json_t *next = json_null();
    if (json_array_size(rows) > (size_t)limit) {
        json_array_remove(rows, (size_t)limit);
        const json_t *last = json_array_get(rows, (size_t)limit - 1);
        const char *created = json_string_value(json_object_get(last, "created_at"));
        const char *id = json_string_value(json_object_get(last, "id"));
        if (created && id) {
            size_t n = strlen(created) + 1 + strlen(id) + 1;
            char *payload = malloc(n);
            snprintf(payload, n, "%s|%s", created, id);
            char *c = admin_cursor_make(r, payload);
            free(payload);
            next = json_string(c);
            free(c);
        }
    }
    json_t *o = json_object();
    json_object_set_new(o, "count", json_integer((json_int_t)json_array_size(rows)));
    json_object_set_new(o, key, rows);
    json_object_set_new(o, "next_cursor", next);
    return admin_json(r, 200, o);
}

/* ---- GET /api/v1/events/{id} ------------------------------------------------ */

static int events_get(admin_req_t *r)
{
    PGconn *pg = admin_pg(r);
    if (!pg)
        return 0;
    json_t *row = NULL;
    char err[512];
    if (store_events_get(pg, r->params[0], &row, err, sizeof err) != 0)
        return store_failed(r, err);
    if (!row || !row_visible(r, row)) {
        json_decref(row);
        return admin_not_found(r, "id", "event");
    }
    return admin_json(r, 200, row);
}

/* ---- GET /api/v1/events -------------------------------------------------------- */

static int events_list(admin_req_t *r)
{
    long limit;
    const char *tenant, *type, *status_s;
    int64_t since, until;
    if (admin_query_int(r, "limit", 1, LIST_MAX, LIST_DEFAULT, &limit) != 0 ||
        admin_query_tenant(r, &tenant) != 0 || admin_query_word(r, "type", 256, &type) != 0 ||
        admin_query_word(r, "status", 32, &status_s) != 0 ||
        admin_query_time(r, "since", &since) != 0 || admin_query_time(r, "until", &until) != 0)
        return 0;
    int status = -1;
    if (status_s && (status = store_status_parse(status_s)) < 0)
        return admin_bad(r, "status", "must be one of PENDING, PROCESSING, COMPLETED, RETRYING, "
                                      "DEAD_LETTERED, IGNORED, PURGED");
    if (since && until && since > until)
        return admin_bad(r, "until", "must not be before since");
    char *payload;
    const char *after_created, *after_id;
    if (cursor_read(r, &payload, &after_created, &after_id) != 0)
        return 0;
    PGconn *pg = admin_pg(r);
    if (!pg) {
        free(payload);
        return 0;
    }
    store_event_filter_t f = {.tenant = tenant,
                              .type = type,
                              .status = status,
                              .since_ms = since,
                              .until_ms = until,
                              .limit = (int)limit + 1,
                              .after_created = after_created,
                              .after_id = after_id};
    json_t *rows = NULL;
    char err[512];
    int rc = store_events_list(pg, &f, &rows, err, sizeof err);
    free(payload);
    if (rc == STORE_EINVAL)
        return store_invalid(r, err);
    if (rc != 0)
        return store_failed(r, err);
    return page_reply(r, "events", rows, limit);
}

/* ---- POST /api/v1/events ------------------------------------------------------ */

/* "[3].tenantid" for event 3 of an array, "tenantid" for a lone event;
 * attr "" names the event itself ("[3]" / "body"). */
static void event_field(bool many, size_t i, const char *attr, char *out, size_t len)
{
    if (many)
        snprintf(out, len, "[%zu]%s%s", i, *attr ? "." : "", attr);
    else
        snprintf(out, len, "%s", *attr ? attr : "body");
}

/*
 * Checks and completes event i in place: the token's tenant, the envelope
 * as libevbus checks it, then the catalog.  true: fine; false: the reply
 * (400 or 403) is set.
 */
static bool event_check(admin_req_t *r, json_t *ev, bool many, size_t i)
{
    char field[300], err[512];
    if (!json_is_object(ev)) {
        event_field(many, i, "", field, sizeof field);
        admin_bad(r, field, "must be a JSON object (a CloudEvent)");
        return false;
    }
    json_t *t = json_object_get(ev, "tenantid");
    if (r->tenant) {
        if (t && !(json_is_string(t) && strcmp(json_string_value(t), r->tenant) == 0)) {
            admin__auth_failure(r->admin, ADMIN_AUTH_TENANT);
            event_field(many, i, "tenantid", field, sizeof field);
            admin_error(r, 403, "forbidden", field,
                        "token '%s' publishes for tenant '%s' only", r->token_name, r->tenant);
            return false;
        }
        if (!t)
            json_object_set_new(ev, "tenantid", json_string(r->tenant));
    }
    if (!json_object_get(ev, "source")) {
        /* provenance: which token published it */
        char src[160];
        snprintf(src, sizeof src, "/evbus/admin/%s", r->token_name);
        json_object_set_new(ev, "source", json_string(src));
    }
    if (evbus_event_complete(NULL, ev, err, sizeof err) != 0) {
        /* libevbus's messages start with the attribute: "type: missing" */
        size_t n = strcspn(err, ":");
        char attr[64];
        snprintf(attr, sizeof attr, "%.*s", err[n] && n < sizeof attr ? (int)n : 0, err);
        const char *msg = err[n] ? err + n + 1 : err;
        while (*msg == ' ')
            msg++;
        event_field(many, i, attr, field, sizeof field);
        admin_bad(r, field, "%s", msg);
        return false;
    }
    const evbus_config_t *cfg = r->gen->cfg;
    if (cfg->schema.mode == SCHEMA_MODE_OFF)
        return true;
    js_errors_t errs = {0};
    int v = schema_catalog_validate_event(r->gen->schemas, ev, &errs, 0);
    bool ok = v == 1 || (v == -1 && errs.count &&
                         strcmp(errs.items[0].keyword, SCHEMA_KW_UNKNOWN_TYPE) == 0 &&
                         cfg->schema.unknown != SCHEMA_UNKNOWN_REJECT);
    if (!ok) {
        const js_error_t *e = errs.count ? &errs.items[0] : NULL;
        /* "/data/decidedBy/kind" -> "data.decidedBy.kind" */
        char attr[256];
        snprintf(attr, sizeof attr, "%s", e && e->instance_path[0] ? e->instance_path + 1 : "");
        for (char *p = attr; *p; p++)
            if (*p == '/')
                *p = '.';
        if (v == -1 && !attr[0])
            snprintf(attr, sizeof attr, "type");
        event_field(many, i, attr, field, sizeof field);
        admin_bad(r, field, "%s%s", e ? e->message : "does not match its schema",
                  v == -1 && e && strcmp(e->keyword, SCHEMA_KW_UNKNOWN_TYPE) == 0
                      ? " (schemas.unknown_type: reject)"
                      : "");
    }
    js_errors_clear(&errs);
    return ok;
}

/* PENDING rows for what was written, as evbusctl publish records them:
 * best effort (the events are in the stream already), so a failure is
 * logged and never changes the reply. */
static void record_published(admin_req_t *r, json_t *const *evs, size_t n,
                             char (*ids)[EVBUS_STREAM_ID_LEN], const int *rc)
{
    const store_settings_t *s = &r->gen->cfg->store;
    if (!s->postgres_url || !s->metadata_enabled)
        return;
    PGconn *pg = admin_pg(r);
    if (!pg) {
        log_warn("admin", "events.publish: not recording metadata: PostgreSQL is unreachable");
        return;
    }
    store_update_t *u = calloc(n, sizeof *u);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (rc[i] != 0)
            continue;
        u[k++] = (store_update_t){
            .id = json_string_value(json_object_get(evs[i], "id")),
            .type = json_string_value(json_object_get(evs[i], "type")),
            .tenant = json_string_value(json_object_get(evs[i], "tenantid")),
            .correlation_id = json_string_value(json_object_get(evs[i], "correlationid")),
            .source = json_string_value(json_object_get(evs[i], "source")),
            .stream_id = ids[i],
            .status = STORE_PENDING,
            .timestamp_ms = strtoll(ids[i], NULL, 10), /* the XADD time */
        };
    }
    char err[512];
    if (k && store_record_published(pg, u, k, err, sizeof err) < 0) {
        log_warn("admin", "events.publish: not recording metadata: %s", err);
        if (PQstatus(pg) != CONNECTION_OK)
            admin_pg_broken(r);
    }
    free(u);
}

static int events_publish(admin_req_t *r)
{
    json_t *body = r->body;
    if (!body)
        return admin_bad(r, "body", "send one event (a JSON object) or an array of 1 to %d",
                         PUBLISH_MAX);
    bool many = json_is_array(body);
    size_t n = many ? json_array_size(body) : 1;
    if (n < 1 || n > PUBLISH_MAX)
        return admin_bad(r, "body", "an array of 1 to %d events, got %zu", PUBLISH_MAX, n);
    json_t **evs = calloc(n, sizeof *evs);
    for (size_t i = 0; i < n; i++) {
        evs[i] = many ? json_array_get(body, i) : body;
        if (!event_check(r, evs[i], many, i)) {
            admin_audit(r, NULL, 0, r->status == 403 ? "forbidden" : "invalid");
            free(evs);
            return 0;
        }
    }
    evbus_client_t *c = admin_redis(r);
    if (!c) {
        admin_audit(r, NULL, 0, "unavailable");
        free(evs);
        return 0;
    }
    char(*ids)[EVBUS_STREAM_ID_LEN] = calloc(n, sizeof *ids);
    int *rc = calloc(n, sizeof *rc);
    char err[512] = "";
    /* redis.wait_replicas (live): one WAIT after the batch */
    const core_settings_t *core = &r->gen->cfg->core;
    evbus_client_set_wait_replicas(c, core->redis_wait_replicas, core->redis_wait_timeout_ms);
    uint64_t waits0 = 0, waits1 = 0, short0 = evbus_client_wait_short(c, &waits0);
    ssize_t written = evbus_publish_batch(c, evs, n, ids, rc, err, sizeof err);
    uint64_t short1 = evbus_client_wait_short(c, &waits1);
    METRIC_ADD(redis_waits, waits1 - waits0);
    METRIC_ADD(redis_wait_short, short1 - short0);
    size_t ok = 0, first_bad = n;
    for (size_t i = 0; i < n; i++) {
        if (rc[i] == 0)
            ok++;
        else if (first_bad == n)
            first_bad = i;
    }
    record_published(r, evs, n, ids, rc);

    json_t *sids = json_array(), *eids = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(sids, rc[i] == 0 ? json_string(ids[i]) : json_null());
        json_array_append_new(eids, json_string(json_string_value(json_object_get(evs[i], "id"))));
    }
    const char *target = many ? NULL : json_string_value(json_object_get(evs[0], "id"));
    json_t *o;
    if (ok == n) {
        admin_audit(r, target, (long long)n, "ok");
        o = json_pack("{s:o, s:o}", "ids", sids, "event_ids", eids);
        if (waits1 > waits0) /* written, but fewer replicas than asked may have it */
            json_object_set_new(o, "replicas_confirmed", json_boolean(short1 == short0));
        free(evs);
        free(ids);
        free(rc);
        return admin_json(r, 201, o);
    }
    /* Redis refused or failed part way: say which events are in the
     * stream (a stream id) and which are not (null). */
    char field[32];
    event_field(many, first_bad, "", field, sizeof field);
    bool full = rc[first_bad] == EVBUS_CLIENT_EFULL;
    admin_audit(r, target, (long long)ok, ok ? "partial" : "failed");
    o = json_pack("{s:s, s:s, s:s, s:o, s:o}", "error", "unavailable", "field", field, "message",
                  err[0] ? err : (written < 0 ? "Redis connection failed" : "not written"),
                  "ids", sids, "event_ids", eids);
    if (full)
        snprintf(r->retry_after, sizeof r->retry_after, "1");
    free(evs);
    free(ids);
    free(rc);
    return admin_json(r, 503, o);
}

/* ---- replays --------------------------------------------------------------------- */

/* The job with this id as the caller may see it; NULL with the reply set
 * (404 for a missing job and for another tenant's alike). */
static json_t *replay_load(admin_req_t *r, PGconn *pg, const char *id)
{
    json_t *job = NULL;
    char err[512];
    if (store_replay_get(pg, id, &job, err, sizeof err) != 0) {
        store_failed(r, err);
        return NULL;
    }
    if (!job || !row_visible(r, job)) {
        json_decref(job);
        admin_not_found(r, "id", "replay job");
        return NULL;
    }
    return job;
}

static int replay_create(admin_req_t *r)
{
    json_t *b = r->body;
    if (!b)
        return admin_bad(r, "body", "expected {\"from\": ..., \"to\": ...}");
    store_replay_request_t q = {0};
    if (store_parse_rfc3339(json_string_value(json_object_get(b, "from")), &q.from_ms) != 0)
        return admin_bad(r, "from", "must be an RFC 3339 date-time");
    if (store_parse_rfc3339(json_string_value(json_object_get(b, "to")), &q.to_ms) != 0)
        return admin_bad(r, "to", "must be an RFC 3339 date-time");
    const char *want = json_string_value(json_object_get(b, "tenant"));
    if (r->tenant && want && strcmp(want, r->tenant) != 0) {
        admin__auth_failure(r->admin, ADMIN_AUTH_TENANT);
        admin_audit(r, want, -1, "forbidden");
        return admin_error(r, 403, "forbidden", "tenant",
                           "token '%s' replays tenant '%s' only", r->token_name, r->tenant);
    }
    q.tenant = r->tenant ? r->tenant : want; /* NULL: every tenant's events */
    const char *types[REPLAY_MAX_TYPES];
    json_t *ta = json_object_get(b, "types");
    for (size_t i = 0; i < json_array_size(ta) && i < REPLAY_MAX_TYPES; i++)
        types[q.n_types++] = json_string_value(json_array_get(ta, i));
    q.types = types;
    q.rate = (int)json_integer_value(json_object_get(b, "rate"));
    char who[160];
    snprintf(who, sizeof who, "admin-api:%s", r->token_name);
    q.requested_by = who;
    q.partitions = r->gen->cfg->core.partitions; /* one progress record per partition */

    PGconn *pg = admin_pg(r);
    if (!pg)
        return 0;
    char id[64], err[512];
    int rc = store_replay_create(pg, &q, r->gen->cfg->store.replay_max_range_s, id, sizeof id,
                                 err, sizeof err);
    if (rc == STORE_EINVAL) {
        admin_audit(r, NULL, -1, "invalid");
        return store_invalid(r, err);
    }
    if (rc != 0)
        return store_failed(r, err);
    admin_audit(r, id, -1, "created");
    json_t *job = replay_load(r, pg, id);
    return job ? admin_json(r, 201, job) : 0;
}

static int replay_get(admin_req_t *r)
{
    PGconn *pg = admin_pg(r);
    if (!pg)
        return 0;
    json_t *job = replay_load(r, pg, r->params[0]);
    return job ? admin_json(r, 200, job) : 0;
}

static int replay_cancel(admin_req_t *r)
{
    PGconn *pg = admin_pg(r);
    if (!pg)
        return 0;
    const char *id = r->params[0];
    json_t *job = replay_load(r, pg, id); /* a job's tenant never changes */
    if (!job) {
        admin_audit(r, id, -1, r->status == 404 ? "not_found" : "failed");
        return 0;
    }
    json_decref(job);
    char err[512];
    if (store_replay_cancel(pg, id, err, sizeof err) != 0) {
        if (PQstatus(pg) != CONNECTION_OK)
            return store_failed(r, err);
        job = replay_load(r, pg, id);
        if (!job)
            return 0;
        const char *st = json_string_value(json_object_get(job, "status"));
        admin_audit(r, id, -1, "conflict");
        admin_error(r, 409, "conflict", "id", "replay job %s is already %s: only pending and "
                    "running jobs can be cancelled", id, st ? st : "finished");
        json_decref(job);
        return 0;
    }
    admin_audit(r, id, -1, "cancelled");
    job = replay_load(r, pg, id);
    return job ? admin_json(r, 200, job) : 0;
}

static int replay_list(admin_req_t *r)
{
    long limit;
    const char *tenant;
    if (admin_query_int(r, "limit", 1, LIST_MAX, LIST_DEFAULT, &limit) != 0 ||
        admin_query_tenant(r, &tenant) != 0)
        return 0;
    char *payload;
    const char *after_created, *after_id;
    if (cursor_read(r, &payload, &after_created, &after_id) != 0)
        return 0;
    PGconn *pg = admin_pg(r);
    if (!pg) {
        free(payload);
        return 0;
    }
    store_replay_filter_t f = {.tenant = tenant,
                               .limit = (int)limit + 1,
                               .after_created = after_created,
                               .after_id = after_id};
    json_t *rows = NULL;
    char err[512];
    int rc = store_replay_list_filtered(pg, &f, &rows, err, sizeof err);
    free(payload);
    if (rc == STORE_EINVAL)
        return store_invalid(r, err);
    if (rc != 0)
        return store_failed(r, err);
    return page_reply(r, "replays", rows, limit);
}

static const char *const events_list_query[] = {"type",  "status", "since",  "until",
                                                "limit", "cursor", "tenant", NULL};
static const char *const replay_list_query[] = {"limit", "cursor", "tenant", NULL};

const admin_route_t admin_routes_data[] = {
    {"GET", "/api/v1/events/{id}", CFG_ROLE_VIEWER, false, NULL, NULL, "events.get",
     events_get, 0},
    {"GET", "/api/v1/events", CFG_ROLE_VIEWER, false, events_list_query, NULL, "events.list",
     events_list, 0},
    {"POST", "/api/v1/events", CFG_ROLE_PUBLISHER, true, NULL, "events-publish.json",
     "events.publish", events_publish, 0},
    {"POST", "/api/v1/replays", CFG_ROLE_OPERATOR, true, NULL, "replay-create.json",
     "replays.create", replay_create, 0},
    {"GET", "/api/v1/replays/{id}", CFG_ROLE_VIEWER, false, NULL, NULL, "replays.get",
     replay_get, 0},
    {"DELETE", "/api/v1/replays/{id}", CFG_ROLE_OPERATOR, true, NULL, NULL, "replays.cancel",
     replay_cancel, 0},
    {"GET", "/api/v1/replays", CFG_ROLE_VIEWER, false, replay_list_query, NULL, "replays.list",
     replay_list, 0},
    {0},
};
