/*
 * fixture — shared setup of the store integration tests: a private
 * PostgreSQL (migrated), optionally a redis-server, and a config struct
 * filled by hand (the tests do not depend on the YAML loader).
 */
#ifndef EVBUS_TEST_STORE_FIXTURE_H
#define EVBUS_TEST_STORE_FIXTURE_H

#include "harness.h"
#include "harness_pg.h"
#include "store/store.h"

#include <criterion/criterion.h>

extern harness_pg_t fx_pg;
extern harness_redis_t fx_redis;
extern evbus_config_t fx_cfg;

/* Start PostgreSQL (not migrated) and fill fx_cfg's PostgreSQL fields. */
void fx_pg_only(void);
/* fx_pg_only + migrations applied. */
void fx_pg_migrated(void);
/* fx_pg_migrated + redis-server; fx_cfg gets its URL and a stream name. */
void fx_pg_redis(void);
void fx_teardown(void);

/* A new connection to fx_pg (asserts on failure). */
PGconn *fx_connect(void);
/* First column of the first row of a query as a malloc'd string (NULL for
 * no row / SQL NULL). */
char *fx_scalar(PGconn *c, const char *sql);
long long fx_count(PGconn *c, const char *sql);
/* Poll until `SELECT count(*) ...` sql returns >= want; true if reached. */
bool fx_wait_count(PGconn *c, const char *sql, long long want, int timeout_ms);

#endif
