/*
 * store_partitions — upkeep of the events table's day partitions
 * (migration 0006): partitions created ahead, expired days dropped.
 *
 * This file decides which days (from the clock and the settings it is
 * given); the SQL functions of migration 0006 do the DDL, so the migration
 * that converts a populated table and the hosts create partitions the same
 * way.  It does not run itself: the metadata writer calls it between
 * batches (store_writer.c), which keeps the DDL off every other thread.
 */
#include "store/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* STORE_MIGRATE_LOCK_KEY + 1 (store_migrate.c): upkeep rounds of several
 * hosts run one at a time, and never wait for each other. */
#define STORE_UPKEEP_LOCK_KEY "435509404772"

/* DDL on a partition locks the whole events table; waiting for a long
 * reader would queue every writer behind the waiting lock. */
#define UPKEEP_LOCK_TIMEOUT "2s"


/* store__exec1 with this module's label in its errors */
static int exec1(PGconn *c, const char *sql, int nparams, const char *const *params,
                 char *value, size_t vlen, char *err, size_t errlen)
{
    return store__exec1(c, "partition upkeep", sql, nparams, params, value, vlen, err, errlen);
}

int store_events_upkeep(PGconn *c, const store_retention_t *rt, int64_t now_ms,
                        store_upkeep_t *out, char *err, size_t errlen)
{
    *out = (store_upkeep_t){.skipped = false};
    time_t now_s = (time_t)(now_ms / 1000);
    struct tm tm;
    gmtime_r(&now_s, &tm);
    char today[16], ahead[16], cutoff[32], retention[16], got[32];
    strftime(today, sizeof today, "%Y-%m-%d", &tm);
    snprintf(ahead, sizeof ahead, "%u", rt->partitions_ahead);
    snprintf(cutoff, sizeof cutoff, "%lld", (long long)(now_ms - (int64_t)rt->retention_s * 1000));
    snprintf(retention, sizeof retention, "%u", rt->retention_s);

    if (exec1(c, "BEGIN", 0, NULL, NULL, 0, err, errlen) != 0)
        return -1;
    if (exec1(c, "SET LOCAL lock_timeout = '" UPKEEP_LOCK_TIMEOUT "'", 0, NULL, NULL, 0, err,
              errlen) != 0 ||
        exec1(c, "SELECT pg_try_advisory_xact_lock(" STORE_UPKEEP_LOCK_KEY ")", 0, NULL, got,
              sizeof got, err, errlen) != 0)
        goto fail;
    if (strcmp(got, "t") != 0) {
        out->skipped = true;
        return exec1(c, "COMMIT", 0, NULL, NULL, 0, err, errlen);
    }
    const char *ahead_params[] = {today, ahead};
    if (exec1(c,
              "SELECT count(*) FILTER (WHERE evbus_events_partition_create(d::date))"
              " FROM generate_series($1::date, $1::date + $2::int, interval '1 day') AS d",
              2, ahead_params, got, sizeof got, err, errlen) != 0)
        goto fail;
    out->created = atoi(got);
    if (rt->retention_s > 0) {
        const char *expire_params[] = {cutoff, retention};
        if (exec1(c,
                  "SELECT evbus_events_expire(to_timestamp(0) + $1::bigint * interval"
                  " '1 millisecond', $2::bigint)",
                  2, expire_params, got, sizeof got, err, errlen) != 0)
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
