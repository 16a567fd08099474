/*
 * routes_core — the endpoints every deployment has: /health and /metrics
 * (public unless admin.metrics.require_token), the settings in force, and
 * reload (admin role).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/admin_internal.h"
#include "util/clock.h"

static int health(admin_req_t *r)
{
    json_t *h = engine_health(r->engine);
    unsigned status =
        strcmp(json_string_value(json_object_get(h, "status")), "unhealthy") == 0 ? 503 : 200;
    return admin_json(r, status, h);
}

static int metrics(admin_req_t *r)
{
    return admin_text(r, 200, "text/plain; version=0.0.4; charset=utf-8",
                      admin__metrics_text(r->admin));
}

/* What is in force: the serving generation's settings, with the value the
 * files ask for on each setting that waits for a restart. */
static int config(admin_req_t *r)
{
    generation_t *g = r->gen;
    json_t *h = engine_health(r->engine);
    /* Settings are read by viewers of any tenant: passwords are not theirs. */
    json_t *settings = config_settings_json(g->cfg, &g->pending_restart);
    config_settings_redact(settings);
    json_t *o = json_pack("{s:I, s:O, s:o}", "generation", (json_int_t)g->number, "reload",
                          json_object_get(h, "reload"), "settings", settings);
    json_decref(h);
    return admin_json(r, 200, o);
}

static long long reload_outcomes(json_t *h)
{
    json_t *rl = json_object_get(h, "reload");
    return json_integer_value(json_object_get(rl, "ok_total")) +
           json_integer_value(json_object_get(rl, "failed_total")) +
           json_integer_value(json_object_get(rl, "partial_total"));
}

/* Same as SIGHUP, but the caller learns the outcome: the control thread
 * runs the reload (it alone swaps generations); this waits for its
 * outcome to be recorded. */
/* A reload swaps the generation every tenant runs on, so a tenant's admin
 * may not send one (as with pausing handlers): it needs a "*" admin. */
static int reload(admin_req_t *r)
{
    if (r->tenant) {
        admin_audit(r, NULL, -1, "error: forbidden for a tenant token");
        return admin_error(r, 403, "forbidden", "token", "a reload changes what every tenant "
                           "runs: it needs an admin token of tenant \"*\"");
    }
    json_t *h = engine_health(r->engine);
    long long before = reload_outcomes(h);
    json_decref(h);
    admin_request_reload(r);
    int64_t deadline = clock_mono_ms() + 60000;
    for (;;) {
        h = engine_health(r->engine);
        if (reload_outcomes(h) > before || clock_mono_ms() > deadline)
            break;
        json_decref(h);
        usleep(20000);
    }
    json_t *rl = json_object_get(h, "reload");
    if (reload_outcomes(h) <= before) {
        json_decref(h);
        admin_audit(r, NULL, -1, "error: no outcome within 60 s");
        return admin_error(r, 504, "timeout", "", "the reload did not finish within 60 s; see "
                           "GET /health reload");
    }
    if (!json_is_true(json_object_get(rl, "last_ok"))) {
        /* one error per line, each "file:line:column: message" */
        json_t *errs = json_array();
        const char *all = json_string_value(json_object_get(rl, "last_error"));
        for (const char *p = all ? all : ""; *p;) {
            size_t n = strcspn(p, "\n");
            if (n)
                json_array_append_new(errs, json_stringn(p, n));
            p += n + (p[n] ? 1 : 0);
        }
        json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:O}", "error", "invalid_config", "field",
                              "config", "message", "the reload failed; the previous generation "
                              "keeps serving", "errors", errs, "generation",
                              json_object_get(h, "generation"));
        json_decref(h);
        admin_audit(r, NULL, -1, "error: invalid configuration");
        return admin_json(r, 422, o);
    }
    json_t *o = json_pack("{s:O, s:O, s:O}", "generation", json_object_get(h, "generation"),
                          "status", json_object_get(rl, "status"), "pending_restart",
                          json_object_get(rl, "pending_restart"));
    admin_audit(r, NULL, -1,
                strcmp(json_string_value(json_object_get(rl, "status")), "partial") == 0
                    ? "ok: partial (settings wait for a restart)"
                    : "ok");
    json_decref(h);
    return admin_json(r, 200, o);
}

/* GET /api/v1/whoami: the caller's token name, roles (widened) and
 * tenant, so a client (the console) shows only what the token may do.
 * Telling is not granting: every route checks the role again. */
static int whoami(admin_req_t *r)
{
    json_t *list = json_array();
    for (unsigned bit = CFG_ROLE_VIEWER; bit <= CFG_ROLE_PUBLISHER; bit <<= 1)
        if (r->roles & bit)
            json_array_append_new(list, json_string(cfg_role_name(bit)));
    return admin_json(r, 200, json_pack("{s:s, s:o, s:s}", "token", r->token_name, "roles", list,
                                        "tenant", r->tenant ? r->tenant : "*"));
}

const admin_route_t admin_routes_core[] = {
    {"GET", "/health", ADMIN_PUBLIC, false, NULL, NULL, "health", health, 0},
    {"GET", "/metrics", ADMIN_PUBLIC, false, NULL, NULL, "metrics", metrics, 0},
    {"GET", "/api/v1/whoami", CFG_ROLE_VIEWER, false, NULL, NULL, "whoami", whoami, 0},
    {"GET", "/api/v1/config", CFG_ROLE_VIEWER, false, NULL, NULL, "config", config, 0},
    {"POST", "/api/v1/reload", CFG_ROLE_ADMIN, true, NULL, NULL, "reload", reload, 0},
    {0},
};
