/*
 * harness_pg — see harness_pg.h.  Drives initdb and pg_ctl as child
 * processes (through harness_run) so a test gets a real, disposable
 * PostgreSQL; it never touches a system cluster.
 */
#include "harness_pg.h"

#include "harness.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PG_BIN "/usr/lib/postgresql/15/bin"

/* Run a PostgreSQL tool, as `postgres` when we are root.  args ends with NULL. */
static int pg_tool(char *const args[], int timeout_ms)
{
    char *argv[32];
    size_t n = 0;
    if (geteuid() == 0) {
        argv[n++] = "/usr/sbin/runuser";
        argv[n++] = "-u";
        argv[n++] = "postgres";
        argv[n++] = "--";
    }
    for (size_t i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char *out = NULL, *err = NULL;
    int rc = harness_run(argv, NULL, NULL, &out, &err, timeout_ms);
    if (rc != 0)
        fprintf(stderr, "harness_pg: %s exited %d\n%s%s", args[0], rc, out ? out : "",
                err ? err : "");
    free(out);
    free(err);
    return rc == 0 ? 0 : -1;
}

static void chown_to_postgres(const char *path)
{
    if (geteuid() != 0)
        return;
    struct passwd *pw = getpwnam("postgres");
    if (pw && chown(path, pw->pw_uid, pw->pw_gid) != 0)
        fprintf(stderr, "harness_pg: chown %s failed\n", path);
}

static int pg_launch(harness_pg_t *pg)
{
    char data[320], logp[320], opts[512];
    snprintf(data, sizeof data, "%s/data", pg->dir);
    snprintf(logp, sizeof logp, "%s/pg.log", pg->dir);
    snprintf(opts, sizeof opts,
             "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off "
             "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50",
             pg->port, pg->dir);
    char *args[] = {PG_BIN "/pg_ctl", "start", "-w", "-t", "30", "-D", data, "-l", logp,
                    "-o", opts, NULL};
    if (pg_tool(args, 40000) != 0)
        return -1;
    pg->running = true;
    return 0;
}

int harness_pg_start(harness_pg_t *pg)
{
    memset(pg, 0, sizeof *pg);
    char *d = harness_tmpdir("pg");
    if (!d)
        return -1;
    snprintf(pg->dir, sizeof pg->dir, "%s", d);
    free(d);
    chown_to_postgres(pg->dir);
    char data[320];
    snprintf(data, sizeof data, "%s/data", pg->dir);
    char *initdb[] = {PG_BIN "/initdb", "-D", data, "-U", "postgres", "-A", "trust",
                      "--no-sync", "-E", "UTF8", "--locale=C", NULL};
    if (pg_tool(initdb, 120000) != 0)
        return -1;
    for (int attempt = 0; attempt < 5; attempt++) {
        pg->port = harness_free_port();
        snprintf(pg->url, sizeof pg->url, "postgresql://postgres@127.0.0.1:%d/postgres",
                 pg->port);
        if (pg_launch(pg) == 0)
            return 0;
    }
    return -1;
}

int harness_pg_stop_keep(harness_pg_t *pg)
{
    if (!pg->running)
        return 0;
    char data[320];
    snprintf(data, sizeof data, "%s/data", pg->dir);
    char *args[] = {PG_BIN "/pg_ctl", "stop", "-w", "-m", "fast", "-D", data, NULL};
    int rc = pg_tool(args, 60000);
    if (rc == 0)
        pg->running = false;
    return rc;
}

int harness_pg_start_again(harness_pg_t *pg)
{
    if (pg->running)
        return 0;
    return pg_launch(pg);
}

int harness_pg_restart(harness_pg_t *pg)
{
    if (harness_pg_stop_keep(pg) != 0)
        return -1;
    return harness_pg_start_again(pg);
}

void harness_pg_stop(harness_pg_t *pg)
{
    if (!pg->dir[0])
        return;
    harness_pg_stop_keep(pg);
    harness_rmrf(pg->dir);
    pg->dir[0] = '\0';
}
