/*
 * Migrations: from an empty database, idempotent re-runs, two hosts
 * migrating at once, and a failing migration rolling back completely.
 */
#include "fixture.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(migrate, .init = fx_pg_only, .fini = fx_teardown, .timeout = 120);

Test(migrate, status_on_empty_database_lists_every_version_unapplied)
{
    PGconn *c = fx_connect();
    store_migration_status_t *st = NULL;
    size_t n = 0;
    char err[512];
    cr_assert_eq(store_migrate(c, 1, &st, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, store_migrations_count);
    for (size_t i = 0; i < n; i++)
        cr_expect(!st[i].applied, "%s reported applied", st[i].name);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM pg_tables WHERE tablename = 'events'"), 0,
                 "a dry run created tables");
    free(st);
    PQfinish(c);
}

Test(migrate, up_from_empty_creates_tables_and_records_versions)
{
    PGconn *c = fx_connect();
    store_migration_status_t *st = NULL;
    size_t n = 0;
    char err[512];
    cr_assert_eq(store_migrate(c, 0, &st, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, store_migrations_count);
    cr_expect_eq(st[0].version, 1);
    cr_expect_str_eq(st[0].name, "0001_init.sql");
    cr_expect(st[0].applied && st[0].applied_now);
    cr_expect_neq(st[0].applied_at[0], '\0');
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM schema_migrations"),
                 (long long)store_migrations_count);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM pg_tables WHERE tablename IN "
                             "('events', 'replay_jobs')"),
                 2);
    free(st);
    PQfinish(c);
}

Test(migrate, rerun_applies_nothing_and_succeeds)
{
    PGconn *c = fx_connect();
    char err[512];
    cr_assert_eq(store_migrate(c, 0, NULL, NULL, err, sizeof err), 0, "%s", err);
    store_migration_status_t *st = NULL;
    size_t n = 0;
    cr_assert_eq(store_migrate(c, 0, &st, &n, err, sizeof err), 0, "%s", err);
    for (size_t i = 0; i < n; i++) {
        cr_expect(st[i].applied);
        cr_expect(!st[i].applied_now, "%s applied twice", st[i].name);
    }
    free(st);
    PQfinish(c);
}

typedef struct mig_thread {
    int rc;
    long long took_ms;
    char err[512];
} mig_thread_t;

static void *migrate_thread(void *arg)
{
    mig_thread_t *t = arg;
    PGconn *c = store_connect(fx_pg.url, t->err, sizeof t->err);
    if (!c) {
        t->rc = -1;
        return NULL;
    }
    long long t0 = harness_now_ms();
    t->rc = store_migrate(c, 0, NULL, NULL, t->err, sizeof t->err);
    t->took_ms = harness_now_ms() - t0;
    PQfinish(c);
    return NULL;
}

Test(migrate, concurrent_runs_from_two_connections_both_succeed_once)
{
    pthread_t a, b;
    mig_thread_t ta = {0}, tb = {0};
    pthread_create(&a, NULL, migrate_thread, &ta);
    pthread_create(&b, NULL, migrate_thread, &tb);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    cr_assert_eq(ta.rc, 0, "%s", ta.err);
    cr_assert_eq(tb.rc, 0, "%s", tb.err);
    PGconn *c = fx_connect();
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM schema_migrations"),
                 (long long)store_migrations_count);
    PQfinish(c);
}

Test(migrate, waits_for_the_advisory_lock_held_by_another_host)
{
    PGconn *holder = fx_connect();
    char *got = fx_scalar(holder, "SELECT pg_advisory_lock(435509404771)::text");
    free(got);
    pthread_t t;
    mig_thread_t tm = {0};
    pthread_create(&t, NULL, migrate_thread, &tm);
    usleep(500 * 1000);
    PGconn *c = fx_connect();
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM pg_tables WHERE tablename = 'events'"), 0,
                 "migrated while another session held the lock");
    PQfinish(c);
    free(fx_scalar(holder, "SELECT pg_advisory_unlock(435509404771)::text"));
    pthread_join(t, NULL);
    cr_assert_eq(tm.rc, 0, "%s", tm.err);
    cr_expect_geq(tm.took_ms, 400);
    PQfinish(holder);
}

Test(migrate, failing_migration_rolls_back_and_stops)
{
    const store_migration_t list[] = {
        {1, "0001_a.sql", "CREATE TABLE t_a (x int); INSERT INTO t_a VALUES (1);"},
        {2, "0002_bad.sql", "CREATE TABLE t_b (x int); INSERT INTO t_b VALUES (1);"
                            " SELECT * FROM no_such_table;"},
        {3, "0003_c.sql", "CREATE TABLE t_c (x int);"},
    };
    PGconn *c = fx_connect();
    char err[512] = "";
    cr_assert_eq(store_migrate_list(c, list, 3, 0, NULL, NULL, err, sizeof err), -1);
    cr_expect(strstr(err, "migration 0002_bad.sql failed: ") != NULL, "err: %s", err);
    cr_expect(strstr(err, "no_such_table") != NULL, "err: %s", err);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM pg_tables WHERE tablename = 't_a'"), 1);
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM pg_tables WHERE tablename = 't_b'"), 0,
                 "the failed migration left its table behind");
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM pg_tables WHERE tablename = 't_c'"), 0,
                 "a later migration ran after a failure");
    cr_expect_eq(fx_count(c, "SELECT count(*) FROM schema_migrations"), 1);
    /* The connection is usable afterwards and a fixed set continues at 2. */
    const store_migration_t fixed[] = {
        list[0], {2, "0002_bad.sql", "CREATE TABLE t_b (x int);"}, list[2]};
    store_migration_status_t *st = NULL;
    size_t n = 0;
    cr_assert_eq(store_migrate_list(c, fixed, 3, 0, &st, &n, err, sizeof err), 0, "%s", err);
    cr_expect(!st[0].applied_now && st[1].applied_now && st[2].applied_now);
    free(st);
    PQfinish(c);
}
