/*
 * harness — real servers and real processes for integration tests.
 *
 * Starts redis-server (and, in harness_pg.c, PostgreSQL) on a free loopback
 * port in a private mkdtemp folder, never on a well-known port, and stops
 * them afterwards.  Also runs evbusd / evbusctl as child processes.
 *
 * Everything here is for tests: functions abort the test (criterion
 * cr_assert) only through their return values; the caller asserts.
 * Not thread-safe; call from the test's main thread.
 */
#ifndef EVBUS_TEST_HARNESS_H
#define EVBUS_TEST_HARNESS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A free TCP port on 127.0.0.1 (bound to 0, read back, closed). */
int harness_free_port(void);

/* mkdtemp("/tmp/evbus-test-<prefix>-XXXXXX"); returns a malloc'd path. */
char *harness_tmpdir(const char *prefix);
/* rm -rf path (only under /tmp/evbus-test-). */
void harness_rmrf(const char *path);

typedef struct harness_redis {
    int port;
    pid_t pid;
    bool aof;
    char dir[256];
    char url[128]; /* redis://127.0.0.1:PORT/0 */
} harness_redis_t;

/* Start redis-server; aof=true enables appendonly everysec->always. 0 or -1. */
int harness_redis_start(harness_redis_t *r, bool aof);
/* SIGTERM (graceful, persists AOF) then wait. */
void harness_redis_stop(harness_redis_t *r);
/* Start a server stopped with harness_redis_stop again, same port and
 * folder (an outage and its end).  0 or -1. */
int harness_redis_start_again(harness_redis_t *r);
/* Stop then start again on the same port and folder. 0 or -1. */
int harness_redis_restart(harness_redis_t *r);
/* A new blocking connection; NULL on failure.  Caller frees. */
redisContext *harness_redis_connect(const harness_redis_t *r);
/* Run a command, return integer reply (or -1 on error). */
long long harness_redis_int(redisContext *c, const char *fmt, ...);

/* Paths of built artefacts: EVBUS_BUILD_ROOT/<rel>.  Static buffer per call
 * site is NOT used: returns malloc'd string. */
char *harness_build_path(const char *rel);
char *harness_source_path(const char *rel);

/* Write `content` to dir/name (creates dir). 0 or -1. */
int harness_write_file(const char *dir, const char *name, const char *content);
/* Read a whole file; NULL if absent.  Caller frees. */
char *harness_read_file(const char *path);
/* Number of lines in a file (0 if absent). */
size_t harness_count_lines(const char *path);

typedef struct harness_proc {
    pid_t pid;
    char log_path[512];
} harness_proc_t;

/* Spawn argv[0] (absolute path) with argv, stdout+stderr to log_path (append).
 * Extra environment "K=V" strings in envp (NULL-terminated, may be NULL). */
int harness_spawn(harness_proc_t *p, char *const argv[], char *const envp[], const char *log_path);
/* Wait up to timeout_ms for exit; returns exit status (0..255), 128+sig if
 * signalled, or -1 on timeout (process left running). */
int harness_wait(harness_proc_t *p, int timeout_ms);
/* kill(sig) then wait up to timeout_ms; returns as harness_wait. */
int harness_kill(harness_proc_t *p, int sig, int timeout_ms);
/* Run to completion, capturing stdout into *out (malloc'd, may be NULL) ;
 * returns exit status like harness_wait. stdin from `input` if non-NULL. */
int harness_run(char *const argv[], char *const envp[], const char *input, char **out,
                char **err, int timeout_ms);

/* GET path from 127.0.0.1:port over HTTP/1.0 (5 s timeout).  Returns the
 * body (malloc'd) and sets *status (may be NULL) to the HTTP status, or
 * returns NULL with *status -1 when nothing answered. */
char *harness_http_get(int port, const char *path, int *status);

/*
 * Any request to 127.0.0.1:port over HTTP/1.0 (10 s timeout): method,
 * path (with query), an optional bearer token, an optional body with its
 * content type (NULL ctype: application/json).  Returns the body
 * (malloc'd) and *status, or NULL with *status -1.  When headers is not
 * NULL it gets the response's header block (malloc'd).
 */
char *harness_http(int port, const char *method, const char *path, const char *token,
                   const char *body, const char *ctype, int *status, char **headers);

/* The admin token every fixture configures (role admin, tenant "*") and
 * its configuration line's hash, for tests of routes behind a token. */
#define HARNESS_ADMIN_TOKEN "evb_harness_admin_token_for_tests_only"
/* "sha256:<hex>" of token (static buffer per call site: pass out[72]). */
void harness_token_hash(const char *token, char out[72]);

/* Poll `cond(ud)` every 20 ms until true or timeout; returns true if met. */
bool harness_wait_until(bool (*cond)(void *ud), void *ud, int timeout_ms);

/* Milliseconds since an arbitrary epoch (monotonic). */
long long harness_now_ms(void);

#endif
