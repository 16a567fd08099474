/*
 * admin — evbusd's operator API over HTTP (libmicrohttpd): GET /health,
 * GET /metrics and the authenticated /api/v1 routes (dead letters,
 * events, replays, handlers, reload, stats, audit).  docs/admin-api.md is
 * the full description; admin/api.h is the contract of the route modules.
 *
 * Security model, in short: bearer tokens from admin.tokens (stored as
 * SHA-256, compared in constant time, part of the generation so a reload
 * adds or revokes them at once), roles viewer < operator < admin plus
 * publisher, one tenant or "*" per token, per-token rate limits,
 * admin.read_only, TLS (or loopback, or an explicit allow_plaintext).
 *
 * Threads: libmicrohttpd's pool (admin.threads) serves requests.  The
 * server reads the engine (thread-safe), pins the current generation per
 * request, and hands reloads to the control thread through an atomic
 * counter: it never swaps generations itself.
 */
#ifndef EVBUS_ADMIN_H
#define EVBUS_ADMIN_H

#include <stdatomic.h>
#include <stddef.h>

#include "config/config.h"
#include "core/engine.h"

typedef struct admin admin_t;

/*
 * Listen as cfg->admin says (listen, tls, threads, limits; these are
 * restart settings, read once).  cfg must have admin.listen.  NULL with err
 * when the address is bad or taken, the TLS files unreadable, or TLS is
 * asked of a libmicrohttpd built without it.
 */
admin_t *admin_start(const evbus_config_t *cfg, engine_t *e, atomic_int *reload_requests,
                     char *err, size_t errlen);
/* The port actually bound. */
int admin_port(const admin_t *a);
/* Stop serving (in-flight requests finish), then free. */
void admin_stop(admin_t *a);

#endif
