/*
 * admin_settings — the rows of admin: { ... }.
 */
#include "admin/admin_settings.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"

#define OFF(f) offsetof(evbus_config_t, admin.f)
#define SOCKET "the socket and its thread pool are set up once, at start"
#define NEXT "from the next request"

static const cfg_setting_t rows[] = {
    {.key = "admin.listen", .type = CFG_LISTEN, .offset = OFF(listen), .def_doc = "none",
     .reload = CFG_RESTART, .why = "the socket is bound once, at start", .flags = CFG_F_OPTIONAL,
     .desc = "admin HTTP endpoint `host:port`; absent = no endpoint"},
    {.key = "admin.read_only", .type = CFG_BOOL, .offset = OFF(read_only), .def = "false",
     .reload = CFG_LIVE, .why = NEXT,
     .desc = "`true`: every mutating route answers 403 whatever the token's roles"},
    {.key = "admin.allow_plaintext", .type = CFG_BOOL, .offset = OFF(allow_plaintext),
     .def = "false", .reload = CFG_RESTART, .why = SOCKET,
     .desc = "allow listening on a non-loopback address without TLS (tokens then cross the "
             "network in clear text)"},
    {.key = "admin.tls.cert", .type = CFG_PATH, .offset = OFF(tls_cert), .def_doc = "none",
     .reload = CFG_RESTART, .why = SOCKET, .flags = CFG_F_OPTIONAL,
     .desc = "PEM certificate (chain) for HTTPS; set with `admin.tls.key`"},
    {.key = "admin.tls.key", .type = CFG_PATH, .offset = OFF(tls_key), .def_doc = "none",
     .reload = CFG_RESTART, .why = SOCKET, .flags = CFG_F_OPTIONAL,
     .desc = "PEM private key for HTTPS; set with `admin.tls.cert`"},
    {.key = "admin.threads", .type = CFG_U32, .offset = OFF(threads), .min = 1, .max = 64,
     .def = "4", .reload = CFG_RESTART, .why = SOCKET,
     .desc = "threads serving admin requests (libmicrohttpd's thread pool)"},
    {.key = "admin.nice", .type = CFG_U32, .offset = OFF(nice), .min = 0, .max = 19, .def = "10",
     .reload = CFG_RESTART, .why = "each pool thread sets it once, when it first serves",
     .desc = "nice value of the admin threads: under CPU contention the event path keeps its "
             "share and operators' requests wait (0 = the same priority as the event path)"},
    {.key = "admin.max_connections", .type = CFG_U32, .offset = OFF(max_connections), .min = 1,
     .max = 10000, .def = "512", .reload = CFG_RESTART, .why = SOCKET,
     .desc = "open admin connections at most; more are refused"},
    {.key = "admin.connection_timeout", .type = CFG_DURATION, .offset = OFF(connection_timeout_ms),
     .min = 1000, .max = 3600000, .def = "30s", .reload = CFG_RESTART, .why = SOCKET,
     .desc = "an admin connection idle this long (a slow or stalled client) is closed"},
    {.key = "admin.rate_limit.per_token_per_s", .type = CFG_DOUBLE, .offset = OFF(rate_per_s),
     .min = 0.01, .max = 1e6, .def = "50", .reload = CFG_LIVE, .why = NEXT,
     .desc = "requests per second each token may make on average (429 beyond)"},
    {.key = "admin.rate_limit.burst", .type = CFG_U32, .offset = OFF(rate_burst), .min = 1,
     .max = 1000000, .def = "100", .reload = CFG_LIVE, .why = NEXT,
     .desc = "requests a token may make at once before the average rate applies"},
    {.key = "admin.metrics.require_token", .type = CFG_BOOL, .offset = OFF(metrics_require_token),
     .def = "false", .reload = CFG_LIVE, .why = NEXT,
     .desc = "`true`: `GET /metrics` needs a token with the viewer role"},
    {.key = "admin.metrics.tenant_label", .type = CFG_STRLIST,
     .offset = OFF(metrics_tenant_label), .def_doc = "none", .flags = CFG_F_OPTIONAL,
     .reload = CFG_LIVE,
     .why = "from the next scrape",
     .desc = "tenants that get their own `tenant` label value on per-event metrics; every "
             "other tenant is counted as `other`"},
};

int admin_host_is_loopback(const char *listen)
{
    const char *colon = strrchr(listen, ':');
    char host[64];
    if (!colon || (size_t)(colon - listen) >= sizeof host)
        return 0;
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    struct in_addr in;
    if (inet_pton(AF_INET, host, &in) != 1)
        return 0;
    return (ntohl(in.s_addr) >> 24) == 127;
}

/* The position of a row's value, for errors about it (NULL: default). */
static const cfg_pos_t *pos_of(const evbus_config_t *cfg, const char *key)
{
    size_t idx;
    if (!cfg_setting_find(key, &idx) || cfg->sources[idx].kind != CFG_SRC_FILE)
        return NULL;
    return &cfg->sources[idx].pos;
}

static void check(const evbus_config_t *cfg, cfg_errors_t *errs)
{
    const admin_settings_t *a = &cfg->admin;
    if ((a->tls_cert == NULL) != (a->tls_key == NULL))
        cfg_errors_add(errs, pos_of(cfg, a->tls_cert ? "admin.tls.cert" : "admin.tls.key"),
                       "admin.tls: set both cert and key, or neither");
    if (a->listen && !a->tls_cert && !a->allow_plaintext && !admin_host_is_loopback(a->listen))
        cfg_errors_add(errs, pos_of(cfg, "admin.listen"),
                       "admin.listen: '%s' is not a loopback address and admin.tls is not set: "
                       "bearer tokens would cross the network in clear text; set admin.tls "
                       "{ cert, key }, or admin.allow_plaintext: true when a TLS proxy fronts "
                       "evbusd", a->listen);
}

const cfg_table_t admin_settings_table = {
    .module = "admin", .rows = rows, .n_rows = sizeof rows / sizeof rows[0], .check = check};
