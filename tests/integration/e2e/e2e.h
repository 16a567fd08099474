/*
 * e2e — the fixture of the end-to-end tests: the real evbusd and evbusctl
 * binaries, a private redis-server (tests/integration/core/fixture.h) and,
 * when asked, a private PostgreSQL 15 (tests/support/harness_pg.h).
 *
 * The tests talk to the daemon only the ways an operator could: config
 * files, signals, the admin endpoint (GET /health, GET /metrics), evbusctl
 * and Redis itself.  What handlers saw comes from the plugins' own files:
 *  - chaos (instance "chaos", handler "chaos/main") appends
 *    "chaos <event id> <attempt> <RESULT>" to e->calls;
 *  - testkit (instance "rec", handler "rec/record") appends
 *    "rec\t<tag>\t<event id>\t<type>\t<is_replay>\t<schema_version>\t<data>"
 *    to e->rec.
 *
 * Everything runs on the test's main thread.  Setup functions assert (they
 * are the test's precondition); queries return values the test asserts on.
 */
#ifndef EVBUS_TEST_E2E_H
#define EVBUS_TEST_E2E_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fixture.h"
#include "harness_pg.h"

typedef struct e2e {
    fx_t fx;         /* Redis, temp dir, conf dir (fx.conf), evbusd (fx.d), its log */
    harness_pg_t pg; /* running when pg_on */
    bool pg_on;
    char rec[600];   /* testkit output */
    char calls[600]; /* chaos count file */
    int admin_port;  /* admin.listen of the main host */
} e2e_t;

/* Start Redis (AOF as asked) and, when pg, PostgreSQL.  Asserts. */
void e2e_start(e2e_t *e, bool aof, bool pg);
/* Kill evbusd if running, stop the servers, remove the folders. */
void e2e_stop(e2e_t *e);

/*
 * Write conf/00-host.yaml (fx_host_conf: stream t:events, group g,
 * consumer c1, retry base 50 ms / 4 attempts, reclaim 1500/200/3), plus
 * admin.listen on e->admin_port and, with PostgreSQL, `postgres: {url,
 * migrate_on_start: true}`.  `extra` is appended (top-level keys not set
 * above; override those with e2e_conf_file instead).
 */
void e2e_host_conf(e2e_t *e, const char *extra);
/* conf/NAME with this content (later files override earlier ones key by key). */
void e2e_conf_file(e2e_t *e, const char *name, const char *yaml);
/*
 * conf/10-plugins.yaml: instance "chaos" with subscription chaos_sub and
 * instance "rec" (testkit) with subscription rec_sub, each a YAML flow
 * mapping such as "{ pattern: \"test.**\" }"; NULL leaves the instance out.
 */
void e2e_plugins(e2e_t *e, const char *chaos_sub, const char *rec_sub);

/*
 * A second host in the same group: conf/ copied to dir/<name>/ with the
 * consumer, the admin port and the state dir replaced (dir/<name>-state),
 * then started with its log in dir/<name>.log.  Asserts.
 */
void e2e_start_clone(e2e_t *e, const char *name, const char *consumer, int admin_port,
                     harness_proc_t *proc);
/* Whether `evbusctl status --admin 127.0.0.1:port` exits 0 within timeout_ms. */
bool e2e_wait_healthy_at(e2e_t *e, int port, int timeout_ms);

/* Start evbusd on conf (exit_idle_ms > 0 adds --exit-idle).  Asserts. */
void e2e_evbusd(e2e_t *e, int exit_idle_ms);
/* Wait until `evbusctl status` answers 0 (ok or degraded).  True when it did. */
bool e2e_wait_healthy(e2e_t *e, int timeout_ms);
/* Run evbusd --exit-idle idle_ms to completion; asserts it exits 0. */
void e2e_run_until_idle(e2e_t *e, int idle_ms);

/*
 * Run `evbusctl -c CONF args...` (NULL-terminated).  Returns the exit
 * status (harness_run); *out / *err get stdout / stderr (malloc'd) when
 * non-NULL.
 */
int e2e_ctl(e2e_t *e, char **out, char **err, ...) __attribute__((sentinel));
/* Same, parsing stdout as JSON into *json (NULL when it is not JSON). */
int e2e_ctl_json(e2e_t *e, json_t **json, ...) __attribute__((sentinel));

/* A CloudEvent: id, type, tenant, data (JSON text), `extra` attributes
 * (e.g. "\"schemaversion\":1", or NULL).  Malloc'd. */
char *e2e_event(const char *id, const char *type, const char *tenant, const char *data,
                const char *extra);
/* XADD t:events <sid> event <json>; sid "*" or an explicit "ms-seq".  The
 * new stream id goes to out (64 bytes) when non-NULL.  0 or -1. */
int e2e_xadd(e2e_t *e, const char *sid, const char *json, char *out);
/* A command on a fresh connection; integer reply or -1. */
long long e2e_redis_int(e2e_t *e, const char *fmt, ...);

/* Lines of e->calls for event id with result (NULL = any). */
size_t e2e_chaos_calls(const e2e_t *e, const char *id, const char *result);
/* Lines of e->rec for event id with is_replay = replay (-1 = any). */
size_t e2e_rec_calls(const e2e_t *e, const char *id, int replay);
/* The first e->rec line for id with that is_replay, malloc'd (NULL when none). */
char *e2e_rec_line(const e2e_t *e, const char *id, int replay);

/* `evbusctl events show ID --json` until its status is `status`.  True when
 * it got there; the last row goes to *row when non-NULL (caller decrefs). */
bool e2e_wait_event_status(e2e_t *e, const char *id, const char *status, int timeout_ms,
                           json_t **row);

/* GET http://127.0.0.1:port/path; body (malloc'd) or NULL; *code = HTTP status. */
char *e2e_http_get(int port, const char *path, int *code);
/* A sample's value from GET /metrics (exact name, no labels); -1 when absent. */
long long e2e_metric(int port, const char *name);

/* ms since the Unix epoch (CLOCK_REALTIME). */
int64_t e2e_epoch_ms(void);
/* "2026-11-26T10:00:00.000Z" for ms (UTC). */
void e2e_rfc3339(int64_t ms, char out[40]);
void e2e_sleep_ms(int ms);

/* A valid approval.item.approved v2 payload; %d is replaced by n. */
char *e2e_approved_v2(int n);
/* A valid approval.item.approved v1 payload. */
#define E2E_APPROVED_V1                                                                            \
    "{\"approvalId\":\"3f2b7c1e-8a4d-4c55-9e21-0b6f5d7a9c10\",\"spaceId\":"                        \
    "\"9b1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f\",\"approverId\":"                                     \
    "\"c0ffee00-1234-4abc-9def-0123456789ab\"}"

#endif
