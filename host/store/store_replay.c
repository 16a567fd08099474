/*
 * store_replay — the replay_jobs table: validation, creation, listing,
 * cancellation, retention and the SKIP LOCKED claim the workers use.
 * Running a job (reading the stream) lives in store_replay_worker.c.
 */
#include "store/store_internal.h"

#include "router/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every column of row t plus the window as epoch ms (what the worker
 * needs).  partitions (migration 0011) is read through the row's jsonb, so
 * a schema without that migration reads as NULL there instead of failing:
 * jobs on unpartitioned streams do not need it. */
#define JOB_COLUMNS(t)                                                                         \
    "id, status, from_ts, to_ts, types, tenant, rate, total, processed, skipped, failed,"       \
    " created_at, started_at, finished_at, error, warning, requested_by,"                      \
    " heartbeat_at, position, claims,"                                                         \
    " (extract(epoch FROM from_ts) * 1000)::bigint AS from_ms,"                                 \
    " (extract(epoch FROM to_ts) * 1000)::bigint AS to_ms,"                                     \
    " to_jsonb(" t ") -> 'partitions' AS partitions"

/* A job of an unpartitioned stream shows no "partitions" member, as
 * before migration 0011. */
static void drop_no_partitions(json_t *job)
{
    if (json_is_object(job) && json_is_null(json_object_get(job, "partitions")))
        json_object_del(job, "partitions");
}

static int validate(const store_replay_request_t *req, uint32_t max_range_s, char *err,
                    size_t errlen)
{
    if (req->from_ms >= req->to_ms) {
        store__err(err, errlen, "from: must be before to");
        return STORE_EINVAL;
    }
    int64_t range_s = (req->to_ms - req->from_ms + 999) / 1000;
    if (max_range_s && range_s > (int64_t)max_range_s) {
        store__err(err, errlen, "to: range of %lld s exceeds replay.max_range_s (%u s)",
                   (long long)range_s, max_range_s);
        return STORE_EINVAL;
    }
    for (size_t i = 0; i < req->n_types; i++) {
        char perr[160];
        if (!req->types[i] || router_pattern_check(req->types[i], perr, sizeof perr) != 0) {
            store__err(err, errlen, "types[%zu]: invalid pattern \"%s\": %s", i,
                       req->types[i] ? req->types[i] : "", req->types[i] ? perr : "missing");
            return STORE_EINVAL;
        }
    }
    if (req->tenant && !*req->tenant) {
        store__err(err, errlen, "tenant: must not be empty");
        return STORE_EINVAL;
    }
    if (req->rate < 0) {
        store__err(err, errlen, "rate: must be > 0 (events per second)");
        return STORE_EINVAL;
    }
    return 0;
}

int store_replay_create(PGconn *c, const store_replay_request_t *req, uint32_t max_range_s,
                        char *id_out, size_t id_len, char *err, size_t errlen)
{
    int v = validate(req, max_range_s, err, errlen);
    if (v != 0)
        return v;
    char parts[16];
    snprintf(parts, sizeof parts, "%u", req->partitions);
    if (req->partitions > 1) {
        int applied = store_migration_applied(c, STORE_REPLAY_PARTITIONS_MIGRATION, err, errlen);
        if (applied < 0)
            return -1;
        if (applied == 0) {
            store__err(err, errlen, "replay jobs on a partitioned stream (partitions: %u) need "
                       "migration 0011 (replay_jobs.partitions), which PostgreSQL's schema lacks: "
                       "run `evbusctl migrate up`", req->partitions);
            return -1;
        }
    }
    json_t *types = json_array();
    for (size_t i = 0; i < req->n_types; i++)
        json_array_append_new(types, json_string(req->types[i]));
    char *types_s = json_dumps(types, JSON_COMPACT);
    json_decref(types);
    char from[32], to[32], rate[16];
    snprintf(from, sizeof from, "%lld", (long long)req->from_ms);
    snprintf(to, sizeof to, "%lld", (long long)req->to_ms);
    snprintf(rate, sizeof rate, "%d", req->rate);
    const char *params[] = {from, to, types_s, req->tenant, req->rate ? rate : NULL,
                            req->requested_by, parts};
    json_t *row = NULL;
    int rc;
    if (req->partitions > 1) {
        /* one progress record per partition, all pending */
        rc = store__query_json(
            c, "replay create",
            "INSERT INTO replay_jobs (from_ts, to_ts, types, tenant, rate, requested_by,"
            " partitions) VALUES ("
            " to_timestamp(0) + $1::bigint * interval '1 millisecond',"
            " to_timestamp(0) + $2::bigint * interval '1 millisecond',"
            " ARRAY(SELECT jsonb_array_elements_text($3::jsonb)), $4, $5::int, $6,"
            " (SELECT jsonb_agg(jsonb_build_object('partition', p, 'status', 'pending',"
            "   'total', 0, 'processed', 0, 'skipped', 0, 'failed', 0, 'position', NULL,"
            "   'warning', NULL) ORDER BY p) FROM generate_series(0, $7::int - 1) p))"
            " RETURNING to_json(id)",
            7, params, &row, err, errlen);
    } else {
        rc = store__query_json(
            c, "replay create",
            "INSERT INTO replay_jobs (from_ts, to_ts, types, tenant, rate, requested_by) VALUES ("
            " to_timestamp(0) + $1::bigint * interval '1 millisecond',"
            " to_timestamp(0) + $2::bigint * interval '1 millisecond',"
            " ARRAY(SELECT jsonb_array_elements_text($3::jsonb)), $4, $5::int, $6)"
            " RETURNING to_json(id)",
            6, params, &row, err, errlen);
    }
    free(types_s);
    if (rc != 0)
        return -1;
    snprintf(id_out, id_len, "%s", json_string_value(row) ? json_string_value(row) : "");
    json_decref(row);
    return 0;
}

int store_replay_get(PGconn *c, const char *id, json_t **out, char *err, size_t errlen)
{
    const char *params[] = {id};
    int rc = store__query_json(c, "replay get",
                               "SELECT row_to_json(j) FROM (SELECT " JOB_COLUMNS("replay_jobs")
                               " FROM replay_jobs WHERE id = $1) j",
                               1, params, out, err, errlen);
    drop_no_partitions(*out);
    return rc;
}

int store_replay_list(PGconn *c, int limit, json_t **out, char *err, size_t errlen)
{
    store_replay_filter_t f = {.limit = limit > 0 ? limit : 100};
    return store_replay_list_filtered(c, &f, out, err, errlen);
}

int store_replay_list_filtered(PGconn *c, const store_replay_filter_t *f, json_t **out,
                               char *err, size_t errlen)
{
    *out = NULL;
    int limit = f->limit ? f->limit : 100;
    if (limit < 1 || limit > 1000) {
        store__err(err, errlen, "limit: must be between 1 and 1000 (got %d)", f->limit);
        return STORE_EINVAL;
    }
    if (!f->after_created != !f->after_id) {
        store__err(err, errlen, "after: needs both created_at and id");
        return STORE_EINVAL;
    }
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit);
    const char *params[] = {f->tenant, f->after_created, f->after_id, lim};
    int rc = store__query_json(c, "replay list",
                               "SELECT COALESCE(json_agg(row_to_json(j) ORDER BY j.created_at"
                               " DESC, j.id), '[]') FROM (SELECT " JOB_COLUMNS("replay_jobs")
                               " FROM replay_jobs"
                               " WHERE ($1::text IS NULL OR tenant = $1)"
                               "   AND ($2::timestamptz IS NULL OR created_at < $2"
                               "        OR (created_at = $2 AND id > $3::text))"
                               " ORDER BY created_at DESC, id LIMIT $4::int) j",
                               4, params, out, err, errlen);
    size_t i;
    json_t *job;
    json_array_foreach(*out, i, job)
        drop_no_partitions(job);
    return rc;
}

int store_replay_cancel(PGconn *c, const char *id, char *err, size_t errlen)
{
    const char *params[] = {id};
    long n = 0;
    if (store__exec(c, "replay cancel",
                    "UPDATE replay_jobs SET status = 'cancelled', finished_at = now()"
                    " WHERE id = $1 AND status IN ('pending', 'running')",
                    1, params, &n, err, errlen) != 0)
        return -1;
    if (n == 1)
        return 0;
    json_t *job = NULL;
    if (store_replay_get(c, id, &job, err, errlen) != 0)
        return -1;
    if (!job)
        store__err(err, errlen, "no replay job %s", id);
    else
        store__err(err, errlen, "job %s is already %s", id,
                   json_string_value(json_object_get(job, "status")));
    json_decref(job);
    return -1;
}

int store_replay_prune(PGconn *c, uint32_t keep_completed, uint32_t keep_failed, char *err,
                       size_t errlen)
{
    char kc[16], kf[16];
    snprintf(kc, sizeof kc, "%u", keep_completed);
    snprintf(kf, sizeof kf, "%u", keep_failed);
    const char *params[] = {kc, kf};
    long n = 0;
    if (store__exec(c, "replay prune",
                    "DELETE FROM replay_jobs WHERE id IN (SELECT id FROM ("
                    " SELECT id, status, row_number() OVER (PARTITION BY status = 'completed'"
                    "   ORDER BY finished_at DESC NULLS LAST, created_at DESC) AS rn"
                    " FROM replay_jobs WHERE status IN ('completed', 'failed', 'cancelled')) t"
                    " WHERE (status = 'completed' AND rn > $1::int)"
                    "    OR (status <> 'completed' AND rn > $2::int))",
                    2, params, &n, err, errlen) != 0)
        return -1;
    return (int)n;
}

int store_replay_claim_next(PGconn *c, uint32_t lease_ms, json_t **out, char *err,
                            size_t errlen)
{
    char lease[16];
    snprintf(lease, sizeof lease, "%u", lease_ms);
    const char *params[] = {lease};
    /* A running job whose heartbeat is older than the lease lost its host;
     * a running job from before migration 0005 has no heartbeat and is
     * judged by when it started. */
    return store__query_json(
        c, "replay claim",
        "WITH j AS (UPDATE replay_jobs SET status = 'running',"
        " started_at = COALESCE(started_at, now()), heartbeat_at = now(), claims = claims + 1"
        " WHERE id = (SELECT id FROM replay_jobs WHERE status = 'pending'"
        "   OR (status = 'running' AND COALESCE(heartbeat_at, started_at)"
        "       < now() - $1::bigint * interval '1 millisecond')"
        "   ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 1)"
        " RETURNING *)"
        " SELECT row_to_json(x) FROM (SELECT " JOB_COLUMNS("j") " FROM j) x",
        1, params, out, err, errlen);
}
