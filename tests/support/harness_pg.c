/*
 * harness_pg — see harness_pg.h.  Drives initdb and pg_ctl as child
 * processes (through harness_run) so a test gets a real, disposable
 * PostgreSQL; it never touches a system cluster.
 */
#include "harness_pg.h"

#include "harness.h"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define PG_BIN "/usr/lib/postgresql/15/bin"

/*
 * Run a PostgreSQL tool, as `postgres` when we are root, output appended
 * to dir/tools.log.  Not harness_run(): `pg_ctl start` leaves the server
 * running, and a server inheriting a pipe would hold it open until the
 * timeout, so here every descriptor above 2 is closed in the child.
 */
static int pg_tool(const harness_pg_t *pg, char *const args[], int timeout_ms)
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
    char logp[320];
    snprintf(logp, sizeof logp, "%s/tools.log", pg->dir);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY);
        int log = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0666);
        dup2(nul, 0);
        dup2(log >= 0 ? log : nul, 1);
        dup2(log >= 0 ? log : nul, 2);
        long maxfd = sysconf(_SC_OPEN_MAX);
        for (int fd = 3; fd < (maxfd > 0 ? maxfd : 1024); fd++)
            close(fd);
        execv(argv[0], argv);
        _exit(127);
    }
    harness_proc_t p = {.pid = pid};
    int rc = harness_wait(&p, timeout_ms);
    if (rc == -1)
        harness_kill(&p, SIGKILL, 5000);
    if (rc != 0)
        fprintf(stderr, "harness_pg: %s exited %d (see %s)\n", args[0], rc, logp);
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
    if (pg_tool(pg, args, 40000) != 0)
        return -1;
    pg->running = true;
    return 0;
}

static int pg_initdb(const harness_pg_t *pg, const char *data)
{
    char *initdb[] = {PG_BIN "/initdb", "-D", (char *)data, "-U", "postgres", "-A", "trust",
                      "--no-sync", "-E", "UTF8", "--locale=C", NULL};
    return pg_tool(pg, initdb, 120000);
}

/*
 * initdb costs seconds (it bootstraps the catalog and the template
 * databases), a copy of its output a tenth of that, and the suite starts
 * well over a hundred servers per build.  So the first start in a build
 * dir runs initdb once into BUILD/tests/pg-template/data, under a lock
 * (parallel tests wait rather than race; `ready` marks a finished one),
 * and every start copies it.  The template is never started: it holds
 * nothing of any test.  Without EVBUS_BUILD_ROOT (a test run by hand
 * outside meson), each start runs initdb itself.
 */
static int pg_fresh_data(const harness_pg_t *pg, const char *data)
{
    if (!getenv("EVBUS_BUILD_ROOT"))
        return pg_initdb(pg, data);
    char *root = harness_build_path("tests/pg-template");
    char lockp[400], ready[400], tpl[400];
    snprintf(lockp, sizeof lockp, "%s.lock", root);
    snprintf(ready, sizeof ready, "%s/ready", root);
    snprintf(tpl, sizeof tpl, "%s/data", root);
    int rc = -1;
    int lk = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lk < 0 || flock(lk, LOCK_EX) != 0) {
        fprintf(stderr, "harness_pg: cannot lock %s\n", lockp);
        goto out;
    }
    if (access(ready, F_OK) != 0) {
        char *rm[] = {"rm", "-rf", root, NULL};
        if (harness_run(rm, NULL, NULL, NULL, NULL, 60000) != 0 || mkdir(root, 0755) != 0) {
            fprintf(stderr, "harness_pg: cannot make %s\n", root);
            goto out;
        }
        chown_to_postgres(root);
        if (pg_initdb(pg, tpl) != 0)
            goto out;
        int fd = open(ready, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            goto out;
        close(fd);
    }
    /* -a keeps the owner (postgres when we are root) and the 0700 mode
     * PostgreSQL insists on */
    char *cp[] = {"cp", "-a", tpl, (char *)data, NULL};
    rc = harness_run(cp, NULL, NULL, NULL, NULL, 60000) == 0 ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "harness_pg: copying %s to %s failed\n", tpl, data);
out:
    if (lk >= 0)
        close(lk); /* releases the lock */
    free(root);
    return rc;
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
    if (pg_fresh_data(pg, data) != 0)
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
    int rc = pg_tool(pg, args, 60000);
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
