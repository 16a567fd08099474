/*
 * service — evbusd as a service manager sees it: the watchdog keep-alive
 * and the one-line STATUS=, sent from a thread of their own so a long
 * reload or drain on the main thread neither starves the watchdog nor
 * hides a hung consumer loop.  Readiness (READY=1, RELOADING=1,
 * STOPPING=1) stays with the main thread, which knows when those happen.
 *
 * The watchdog rule.  The engine keeps no heartbeat of its own; what it
 * shows (engine_health and the counters in util/metrics.h) is enough to
 * tell a consumer loop that works or waits by design from one that hangs.
 * A check (every WATCHDOG_USEC/4, at most 1 s apart) finds the loop live
 * when any of these holds:
 *  1. progress: entries were read or acknowledged since the last check;
 *  2. idle-blocking or busy within bounds: Redis is reachable and no
 *     handler is past its timeout — the reader is parked in XREADGROUP
 *     BLOCK, or handlers run inside their limits;
 *  3. probing: Redis is unreachable and the reader counted a new Redis
 *     error since the last check — it is in its capped reconnect backoff,
 *     the designed wait (whether an outage should stop evbusd is
 *     circuit.stop's call, not the watchdog's).
 * WATCHDOG=1 is sent at a check when the loop was last found live less
 * than WATCHDOG_USEC/2 ago.  So a handler hung past its timeout while
 * nothing else is acknowledged, or a reader that stopped both reading and
 * failing, lets the watchdog expire and systemd restarts evbusd; entries
 * in flight stay pending and are redelivered.  Not seen: a reader hung
 * while Redis was reachable and nothing was in the host (idle), because
 * the engine exposes no per-round heartbeat.
 *
 * Thread rules: service_start/service_stop from the control thread; the
 * service thread only calls engine_health() and notify_send().
 */
#ifndef EVBUS_DAEMON_SERVICE_H
#define EVBUS_DAEMON_SERVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/engine.h"
#include "daemon/notify.h"

/* What one check sees; service_sample() fills it from the engine. */
typedef struct service_sample {
    uint64_t read, acked, redis_errors;
    long long inhost_pending, inflight_chunks;
    long long workers_over_timeout;
    bool redis_reachable;
    uint64_t generation;
    char status[16];        /* ok | degraded | unhealthy */
    char reload_status[16]; /* ok | partial | failed */
} service_sample_t;

void service_sample(engine_t *e, service_sample_t *out);

/* Rules 1-3 above between two consecutive samples. */
bool service_loop_live(const service_sample_t *prev, const service_sample_t *now);

/* The STATUS= line: "ok: generation 3, 1200 events handled (1200 read), 0 in
 * host, Redis reachable, last reload ok". */
void service_status_text(const service_sample_t *s, char *out, size_t len);

typedef struct service service_t;

/* Start the watchdog/status thread (NULL and nothing started when n has no
 * socket).  n and e must outlive service_stop(). */
service_t *service_start(const notify_t *n, engine_t *e);
/* Stop and join it; NULL is fine. */
void service_stop(service_t *s);

#endif
