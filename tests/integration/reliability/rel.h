/*
 * rel — the fixture of the reliability tests: one private redis-server, one
 * temp folder with config directories for one or two evbusd hosts, and the
 * helpers the tests use to publish events, run and kill hosts, and count
 * what the handlers saw.
 *
 * Every host runs two handler instances on the pattern "test.**":
 *  - "chaos" (chaos.so, handler name "chaos/main", priority 100): behaves as
 *    data.fault says and appends "chaos <id> <attempt> <RESULT>" to
 *    rel->count_file;
 *  - "rec" (testkit.so, handler name "rec/record", priority 10): appends one
 *    tab-separated line per call to rel->rec_file.
 * Hosts of one test share both files, so call counts are cluster-wide.
 *
 * Events are written with XADD directly (not through evbusctl) so a test
 * chooses the exact bytes and the event id, duplicates included.
 *
 * All functions are for the test's main thread.  Functions that can fail
 * return 0 / -1 (or NULL) and the test asserts; none of them asserts itself.
 */
#ifndef EVBUS_TEST_REL_H
#define EVBUS_TEST_REL_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

#include "harness.h"

#define REL_STREAM "rel:events"
#define REL_DLQ "rel:events:dlq"
#define REL_RETRY "rel:events:retry"
#define REL_GROUP "evbus"

/* Settings one host's config directory is written with.  Zero fields take
 * the defaults shown. */
typedef struct rel_host_opts {
    const char *consumer;        /* "c1" */
    unsigned worker_threads;     /* 2 */
    unsigned batch_size;         /* 100 */
    unsigned retry_base_ms;      /* 50 */
    unsigned max_attempts;       /* 5 (global retry policy) */
    unsigned dlq_capacity;       /* 10000 */
    unsigned max_deliveries;     /* 3 */
    unsigned min_idle_ms;        /* 1000 */
    const char *chaos_sub_extra; /* appended inside chaos's subscription mapping,
                                    e.g. ", retry: { max_attempts: 1 }" */
    const char *rec_sub_extra;   /* same for rec's, e.g. ", dedup_ttl_s: 60" */
} rel_host_opts_t;

typedef struct rel_host {
    char conf_dir[512];
    char log_path[512];
    int admin_port;
    harness_proc_t proc;
} rel_host_t;

typedef struct rel {
    harness_redis_t redis;
    char *dir;             /* private temp folder (removed by rel_teardown) */
    char count_file[512];  /* chaos calls */
    char rec_file[512];    /* rec calls */
    char archive[512];     /* dlq archive file */
    redisContext *rc;      /* the test's own connection; see rel_redis() */
} rel_t;

/* Start Redis (aof as asked) and create the temp folder.  0 or -1. */
int rel_setup(rel_t *r, bool aof);
/* Kill every host given (NULL-terminated), stop Redis, remove the folder. */
void rel_teardown(rel_t *r, rel_host_t *const hosts[]);

/* The test's connection, reconnected when the last one failed (after a
 * Redis restart).  NULL when Redis is unreachable. */
redisContext *rel_redis(rel_t *r);

/* Restart Redis (same port and folder) and drop the test's connection.
 * 0 or -1. */
int rel_redis_restart(rel_t *r);

/* (Re)write host `name`'s config directory dir/<name>/ from opts (NULL:
 * defaults).  Keeps h->admin_port once chosen.  0 or -1. */
int rel_host_config(rel_t *r, rel_host_t *h, const char *name, const rel_host_opts_t *opts);
/* Start evbusd on h's config; exit_idle_ms > 0 adds --exit-idle.  0 / -1. */
int rel_host_start(rel_host_t *h, int exit_idle_ms);
/* SIGTERM and wait; returns the exit status as harness_wait. */
int rel_host_stop(rel_host_t *h);

/* The CloudEvent JSON for (id, fault, tenant); fault/tenant may be NULL
 * (no fault, tenant "tenant-a").  Caller frees. */
char *rel_event_json(const char *id, const char *fault, const char *tenant);
/* XADD one event; fills sid (the stream id) when non-NULL.  0 or -1. */
int rel_publish_raw(rel_t *r, const char *json, char sid[64]);
int rel_publish(rel_t *r, const char *id, const char *fault, char sid[64]);

/* Lines "chaos <id> <attempt> <result>" with that id; result NULL = any. */
size_t rel_chaos_calls(const rel_t *r, const char *id, const char *result);
/* rec calls for that event id. */
size_t rel_rec_calls(const rel_t *r, const char *id);

/* Entries pending in the group (XPENDING summary), for one consumer when
 * consumer != NULL.  -1 on error. */
long long rel_pending(rel_t *r, const char *consumer);
long long rel_zcard_retry(rel_t *r);
long long rel_xlen(rel_t *r, const char *key);
/* True when the group has read up to the stream's last entry, nothing is
 * pending and no retry is scheduled. */
bool rel_drained(rel_t *r);

/* Field `name` of the stream entry `entry` ([id, [f, v, ...]]); NULL when
 * absent.  Borrowed from the reply. */
const char *rel_field(const redisReply *entry, const char *name, size_t *len);

/* GET http://127.0.0.1:port/path; returns the body (malloc'd) or NULL. */
char *rel_http_get(int port, const char *path);
/* A counter or gauge from GET /metrics; -1 when absent or unreachable. */
long long rel_metric(int port, const char *name);
/* health.dlq.level from GET /health ("ok", "warning", "error"), copied into
 * out; false when unreachable. */
bool rel_dlq_level(int port, char out[16]);

/* Occurrences of `needle` in the file at path. */
size_t rel_file_count(const char *path, const char *needle);

/* Poll until pred(r, arg) or timeout_ms.  True when met. */
typedef bool (*rel_pred_fn)(rel_t *r, const void *arg);
bool rel_wait(rel_t *r, rel_pred_fn pred, const void *arg, int timeout_ms);

#endif
