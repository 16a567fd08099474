/*
 * admin_settings — the admin HTTP endpoint's settings (admin: { ... }).
 * Rows in admin_settings.c; `admin.tokens` is a list of mappings, read by
 * host/config/config.c into evbus_config_t.tokens (cfg_token_t, config.h).
 */
#ifndef EVBUS_ADMIN_SETTINGS_H
#define EVBUS_ADMIN_SETTINGS_H

#include <stdbool.h>
#include <stdint.h>

#include "config/settings.h"

typedef struct admin_settings {
    char *listen;          /* "host:port"; NULL = no endpoint */
    bool read_only;        /* every mutating route answers 403 */
    bool allow_plaintext;  /* listen on a non-loopback address without TLS */
    char *tls_cert;        /* PEM files; both or neither */
    char *tls_key;
    uint32_t threads;      /* libmicrohttpd thread pool */
    uint32_t max_connections;
    uint32_t nice;         /* the pool threads' nice value (0..19) */
    uint64_t connection_timeout_ms; /* idle connections are closed after this */
    double rate_per_s;     /* token bucket per token: refill rate */
    uint32_t rate_burst;   /*   and size */
    bool metrics_require_token; /* GET /metrics needs a viewer token */
    char *metrics_tenant_label; /* tenants with their own label value, joined with ","; NULL = none */
} admin_settings_t;

extern const cfg_table_t admin_settings_table;

/* Is listen's host ("127.0.0.1:8089") an IPv4 loopback address
 * (127.0.0.0/8)?  1 or 0. */
int admin_host_is_loopback(const char *listen);

#endif
