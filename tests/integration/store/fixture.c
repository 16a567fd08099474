/*
 * fixture — see fixture.h.
 */
#include "fixture.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

harness_pg_t fx_pg;
harness_redis_t fx_redis;
evbus_config_t fx_cfg;
static bool redis_started;

void fx_pg_only(void)
{
    cr_assert_eq(harness_pg_start(&fx_pg), 0, "PostgreSQL did not start (see %s/pg.log)",
                 fx_pg.dir);
    memset(&fx_cfg, 0, sizeof fx_cfg);
    fx_cfg.store.postgres_url = fx_pg.url;
    fx_cfg.store.metadata_enabled = true;
    fx_cfg.store.metadata_queue_size = 65536;
    fx_cfg.store.metadata_batch_size = 1000;
    fx_cfg.store.metadata_flush_ms = 50;
    fx_cfg.store.replay_max_range_s = 31 * 86400;
    fx_cfg.store.replay_keep_completed = 100;
    fx_cfg.store.replay_keep_failed = 100;
    fx_cfg.core.redis_command_timeout_ms = 5000;
}

void fx_pg_migrated(void)
{
    fx_pg_only();
    PGconn *c = fx_connect();
    char err[512];
    cr_assert_eq(store_migrate(c, 0, NULL, NULL, err, sizeof err), 0, "%s", err);
    PQfinish(c);
}

void fx_pg_redis(void)
{
    fx_pg_migrated();
    cr_assert_eq(harness_redis_start(&fx_redis, false), 0, "redis-server did not start");
    redis_started = true;
    fx_cfg.core.redis_url = fx_redis.url;
    fx_cfg.core.stream = "evbus:events";
}

void fx_teardown(void)
{
    if (redis_started) {
        harness_redis_stop(&fx_redis);
        harness_rmrf(fx_redis.dir);
        redis_started = false;
    }
    harness_pg_stop(&fx_pg);
}

PGconn *fx_connect(void)
{
    char err[512];
    PGconn *c = store_connect(fx_pg.url, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    return c;
}

char *fx_scalar(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(r));
    char *v = PQntuples(r) && !PQgetisnull(r, 0, 0) ? strdup(PQgetvalue(r, 0, 0)) : NULL;
    PQclear(r);
    return v;
}

long long fx_count(PGconn *c, const char *sql)
{
    char *v = fx_scalar(c, sql);
    long long n = v ? atoll(v) : -1;
    free(v);
    return n;
}

bool fx_wait_count(PGconn *c, const char *sql, long long want, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        if (fx_count(c, sql) >= want)
            return true;
        if (harness_now_ms() >= deadline)
            return false;
        usleep(20 * 1000);
    }
}
