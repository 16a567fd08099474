/*
 * admin — the daemon's small HTTP endpoint (libmicrohttpd).
 *
 *   GET  /health   the engine's health document (200, or 503 when unhealthy)
 *   GET  /metrics  Prometheus text exposition
 *   GET  /config   every setting in force: {generation, reload, settings:
 *                  [{key, value, source, reload, type, description,
 *                  pending_restart?}]} (what `evbusctl config show` prints)
 *   POST /reload   schedules a reload (202); the control thread runs it
 *
 * Errors are JSON bodies naming the offending field, e.g.
 * {"error":"method not allowed","field":"method"}.  The admin API with
 * roles and tenant isolation builds on this module later.
 *
 * Threads: libmicrohttpd's own thread serves requests; it only reads the
 * engine's health (thread-safe) and bumps an atomic reload request counter.
 */
#ifndef EVBUS_ADMIN_H
#define EVBUS_ADMIN_H

#include <stdatomic.h>
#include <stddef.h>

#include "core/engine.h"

typedef struct admin admin_t;

/* Listen on "host:port" (port 0 = any free port).  NULL with err. */
admin_t *admin_start(const char *listen, engine_t *e, atomic_int *reload_requests, char *err,
                     size_t errlen);
/* The port actually bound. */
int admin_port(const admin_t *a);
void admin_stop(admin_t *a);

#endif
