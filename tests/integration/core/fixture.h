/*
 * fixture — a private Redis, a temporary conf.d and an evbusd process for
 * one integration test.  Built on tests/support/harness.h.
 */
#ifndef EVBUS_TEST_FIXTURE_H
#define EVBUS_TEST_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>

#include "harness.h"

typedef struct fx {
    harness_redis_t redis;
    char *dir;        /* temp folder */
    char conf[600];   /* dir/conf */
    char log[600];    /* dir/evbusd.log */
    char state[600];  /* dir/state */
    harness_proc_t d; /* the running evbusd, pid 0 when none */
    int admin_port;
} fx_t;

/* Start Redis (aof as asked) and create the folders.  Asserts on failure. */
void fx_start(fx_t *f, bool aof);
/* Kill evbusd if running, stop Redis, remove the folder. */
void fx_stop(fx_t *f);

/* Write conf/00-host.yaml: this Redis, stream t:events, group g, consumer
 * `consumer`, short timings, schemas from the source tree, then `extra`. */
void fx_host_conf(fx_t *f, const char *consumer, const char *extra);
/* Write conf/NAME. */
void fx_conf(fx_t *f, const char *name, const char *yaml);
/* Absolute path of a built plugin, e.g. "plugins/testkit/testkit.so" (static buffer per slot). */
const char *fx_plugin(const char *rel);
/* dir/NAME into out. */
void fx_path(const fx_t *f, const char *name, char *out, size_t len);

/* Start evbusd -c conf with extra args (NULL-terminated list after f). */
void fx_evbusd(fx_t *f, const char *arg1, const char *arg2);
/* Wait for evbusd to exit; returns its status or -1 on timeout. */
int fx_evbusd_wait(fx_t *f, int timeout_ms);

/* XADD n valid CloudEvents of `type` for `tenant` with data `data_json`
 * (printf format taking the index), ids "<prefix>-<i>".  Pipelined. */
void fx_publish(fx_t *f, const char *prefix, size_t n, const char *type, const char *tenant,
                const char *data_fmt);
/* XADD one raw `event` field value. */
void fx_publish_raw(fx_t *f, const char *raw);

/* Wait until `path` has at least n lines. */
bool fx_wait_lines(const char *path, size_t n, int timeout_ms);
/* Entries pending in group g (XPENDING summary). */
long long fx_pending(fx_t *f);
/* XLEN of a key. */
long long fx_xlen(fx_t *f, const char *key);
/* Wait until the group has read everything and nothing is pending. */
bool fx_wait_drained(fx_t *f, int timeout_ms);
/* Wait until evbusd's log contains s. */
bool fx_wait_log(const fx_t *f, const char *s, int timeout_ms);
/* Whether evbusd's log contains s. */
bool fx_log_has(const fx_t *f, const char *s);

/* A valid approval.item.approved v2 payload (printf format: %d = index). */
#define FX_APPROVED_V2                                                                          \
    "{\"approvalId\":\"6f1c2b1e-0000-4000-8000-%012d\",\"spaceId\":"                           \
    "\"3b0d6a4e-5a40-4c6c-9b1e-0d6f2f4b7a10\",\"decidedBy\":{\"id\":"                          \
    "\"9a8b7c6d-1234-4abc-8def-0123456789ab\",\"kind\":\"user\"},\"decisionAt\":"              \
    "\"2026-11-26T10:00:00Z\"}"

#endif
