/*
 * store_migrate — applies the embedded, numbered SQL migrations.
 *
 * A session advisory lock serialises concurrent runs (two hosts starting
 * at once); each migration and its schema_migrations row commit together,
 * so a failure leaves no half-applied version behind.  Migrations are never
 * rolled back once committed: there is no "down".
 */
#include "store/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "evbus" in ASCII: the one advisory-lock key the store uses. */
#define STORE_MIGRATE_LOCK_KEY "435509404771"

typedef struct applied_row {
    int version;
    char name[128];
    char at[40];
} applied_row_t;

static int simple(PGconn *c, const char *where, const char *sql, char *err, size_t errlen)
{
    return store__exec(c, where, sql, 0, NULL, NULL, err, errlen);
}

/* Reads schema_migrations (absent table = nothing applied). */
static int read_applied(PGconn *c, applied_row_t **rows, size_t *n, char *err, size_t errlen)
{
    *rows = NULL;
    *n = 0;
    PGresult *r = PQexec(c, "SELECT to_regclass('schema_migrations') IS NOT NULL");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        store__pg_err(err, errlen, "migrate: reading schema_migrations", c, r);
        PQclear(r);
        return -1;
    }
    bool exists = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (!exists)
        return 0;
    r = PQexec(c, "SELECT version, name, to_char(applied_at AT TIME ZONE 'UTC', "
                  "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM schema_migrations ORDER BY version");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        store__pg_err(err, errlen, "migrate: reading schema_migrations", c, r);
        PQclear(r);
        return -1;
    }
    size_t count = (size_t)PQntuples(r);
    *rows = calloc(count ? count : 1, sizeof **rows);
    if (!*rows) {
        PQclear(r);
        store__err(err, errlen, "migrate: out of memory");
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        (*rows)[i].version = atoi(PQgetvalue(r, (int)i, 0));
        snprintf((*rows)[i].name, sizeof(*rows)[i].name, "%s", PQgetvalue(r, (int)i, 1));
        snprintf((*rows)[i].at, sizeof(*rows)[i].at, "%s", PQgetvalue(r, (int)i, 2));
    }
    *n = count;
    PQclear(r);
    return 0;
}

int store_migration_applied(PGconn *c, int version, char *err, size_t errlen)
{
    applied_row_t *rows;
    size_t n;
    if (read_applied(c, &rows, &n, err, errlen) != 0)
        return -1;
    bool found = false;
    for (size_t i = 0; i < n; i++)
        found = found || rows[i].version == version;
    free(rows);
    return found;
}

static const applied_row_t *find_applied(const applied_row_t *rows, size_t n, int version)
{
    for (size_t i = 0; i < n; i++)
        if (rows[i].version == version)
            return &rows[i];
    return NULL;
}

static int apply_one(PGconn *c, const store_migration_t *m, char *err, size_t errlen)
{
    char where[192];
    snprintf(where, sizeof where, "migration %s failed", m->name);
    if (simple(c, where, "BEGIN", err, errlen) != 0)
        return -1;
    /* PQexec (not PQexecParams): a migration file holds several statements. */
    PGresult *r = PQexec(c, m->sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        store__pg_err(err, errlen, where, c, r);
        PQclear(r);
        PGresult *rb = PQexec(c, "ROLLBACK");
        PQclear(rb);
        return -1;
    }
    PQclear(r);
    char version[16];
    snprintf(version, sizeof version, "%d", m->version);
    const char *params[] = {version, m->name};
    if (store__exec(c, where,
                    "INSERT INTO schema_migrations (version, name, applied_at) "
                    "VALUES ($1::int, $2, now())",
                    2, params, NULL, err, errlen) != 0 ||
        simple(c, where, "COMMIT", err, errlen) != 0) {
        PGresult *rb = PQexec(c, "ROLLBACK");
        PQclear(rb);
        return -1;
    }
    return 0;
}

static int build_status(const store_migration_t *list, size_t count, const applied_row_t *rows,
                        size_t n_rows, const bool *now, store_migration_status_t **out,
                        size_t *n, char *err, size_t errlen)
{
    store_migration_status_t *st = calloc(count + n_rows + 1, sizeof *st);
    if (!st) {
        store__err(err, errlen, "migrate: out of memory");
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < count; i++, k++) {
        const applied_row_t *a = find_applied(rows, n_rows, list[i].version);
        st[k].version = list[i].version;
        snprintf(st[k].name, sizeof st[k].name, "%s", list[i].name);
        st[k].applied = a != NULL;
        st[k].applied_now = now[i];
        if (a)
            snprintf(st[k].applied_at, sizeof st[k].applied_at, "%s", a->at);
    }
    /* Versions from a newer binary: shown so an operator sees the skew. */
    for (size_t j = 0; j < n_rows; j++) {
        bool known = false;
        for (size_t i = 0; i < count && !known; i++)
            known = list[i].version == rows[j].version;
        if (known)
            continue;
        st[k].version = rows[j].version;
        snprintf(st[k].name, sizeof st[k].name, "%s", rows[j].name);
        st[k].applied = true;
        snprintf(st[k].applied_at, sizeof st[k].applied_at, "%s", rows[j].at);
        k++;
    }
    *out = st;
    *n = k;
    return 0;
}

int store_migrate_list(PGconn *c, const store_migration_t *list, size_t count, int dry_run,
                       store_migration_status_t **out, size_t *n, char *err, size_t errlen)
{
    if (out) {
        *out = NULL;
        *n = 0;
    }
    bool *now = calloc(count + 1, sizeof *now);
    if (!now) {
        store__err(err, errlen, "migrate: out of memory");
        return -1;
    }
    applied_row_t *rows = NULL;
    size_t n_rows = 0;
    int rc = -1;
    bool locked = false;
    if (!dry_run) {
        if (simple(c, "migrate: taking the advisory lock",
                   "SELECT pg_advisory_lock(" STORE_MIGRATE_LOCK_KEY ")", err, errlen) != 0)
            goto out;
        locked = true;
        if (simple(c, "migrate: creating schema_migrations",
                   "CREATE TABLE IF NOT EXISTS schema_migrations ("
                   " version integer PRIMARY KEY, name text NOT NULL,"
                   " applied_at timestamptz NOT NULL DEFAULT now())",
                   err, errlen) != 0)
            goto out;
    }
    if (read_applied(c, &rows, &n_rows, err, errlen) != 0)
        goto out;
    if (!dry_run) {
        for (size_t i = 0; i < count; i++) {
            if (find_applied(rows, n_rows, list[i].version))
                continue;
            if (apply_one(c, &list[i], err, errlen) != 0)
                goto out;
            now[i] = true;
        }
        free(rows);
        rows = NULL;
        if (read_applied(c, &rows, &n_rows, err, errlen) != 0)
            goto out;
    }
    rc = out ? build_status(list, count, rows, n_rows, now, out, n, err, errlen) : 0;
out:
    if (locked) {
        PGresult *r = PQexec(c, "SELECT pg_advisory_unlock(" STORE_MIGRATE_LOCK_KEY ")");
        PQclear(r);
    }
    free(rows);
    free(now);
    return rc;
}

int store_migrate(PGconn *c, int dry_run, store_migration_status_t **out, size_t *n, char *err,
                  size_t errlen)
{
    return store_migrate_list(c, store_migrations, store_migrations_count, dry_run, out, n, err,
                              errlen);
}
