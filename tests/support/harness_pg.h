/*
 * harness_pg — a private PostgreSQL 15 server for integration tests.
 *
 * A copy of an initdb output (made once per build dir, see harness_pg.c)
 * + pg_ctl (from /usr/lib/postgresql/15/bin) in a mkdtemp folder,
 * listening on a free loopback port with its unix socket inside the same
 * folder, trust authentication and fsync=off (speed; the data is thrown
 * away).  initdb refuses to run as root, so when the test runs as root the
 * commands run as the `postgres` user through runuser and the folder is
 * chowned to it.
 *
 * Not thread-safe; call from the test's main thread.  Functions return 0
 * or -1; on -1 the server log (dir/pg.log) usually says why.
 */
#ifndef EVBUS_TEST_HARNESS_PG_H
#define EVBUS_TEST_HARNESS_PG_H

#include <stdbool.h>

typedef struct harness_pg {
    int port;
    bool running;
    char dir[256];  /* the temp folder; data in dir/data, socket in dir */
    char url[128];  /* postgresql://postgres@127.0.0.1:PORT/postgres */
} harness_pg_t;

/* A fresh cluster (a copy of the build dir's initdb template) started. */
int harness_pg_start(harness_pg_t *pg);
/* pg_ctl stop -m fast, then delete the folder.  Safe on a stopped server. */
void harness_pg_stop(harness_pg_t *pg);
/* Stop (fast) but keep the folder, e.g. to simulate "PostgreSQL down". */
int harness_pg_stop_keep(harness_pg_t *pg);
/* Start a cluster kept by harness_pg_stop_keep() on the same port. */
int harness_pg_start_again(harness_pg_t *pg);
/* stop_keep + start_again. */
int harness_pg_restart(harness_pg_t *pg);

#endif
