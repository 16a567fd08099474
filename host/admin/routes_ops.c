/*
 * routes_ops — stats, handlers (pause/resume), the audit log.
 */
#include <stdio.h>
#include <string.h>

#include "admin/admin_internal.h"
#include "admin/audit.h"
#include "core/stats.h"

/* GET /api/v1/stats: per-event numbers for the caller's tenant (all of
 * them for a "*" token, narrowed with tenant=), and the stream's lag,
 * pending entries and DLQ, which are not per tenant. */
static int stats_route(admin_req_t *r)
{
    const char *tenant;
    if (admin_query_tenant(r, &tenant))
        return 0;
    return admin_json(r, 200, engine_stats_json(r->engine, tenant));
}

/* GET /api/v1/stats/history: the last 15 periods of the same numbers, for
 * the overview's charts; the same tenant rule as /api/v1/stats. */
static int stats_history_route(admin_req_t *r)
{
    const char *tenant;
    if (admin_query_tenant(r, &tenant))
        return 0;
    return admin_json(r, 200, engine_stats_history_json(r->engine, tenant));
}

/* GET /api/v1/handlers: every instance with its subscriptions, counters
 * and state.  Handlers are shared by every tenant: their names and
 * counters are operational data, not a tenant's events. */
static int handlers_route(admin_req_t *r)
{
    return admin_json(r, 200, engine_handlers_json(r->engine));
}

/* GET /api/v1/audit: an admin reads every tenant's records (narrowed with
 * tenant=); anyone else — an operator — only the records made by tokens of
 * its own tenant ("*" tokens' records for a "*" operator). */
static int audit_list_route(admin_req_t *r)
{
    long limit;
    int64_t since, until;
    const char *action, *tenant;
    char *cursor = NULL;
    if (admin_query_int(r, "limit", 1, 500, 50, &limit) || admin_query_time(r, "since", &since) ||
        admin_query_time(r, "until", &until) || admin_query_word(r, "action", 64, &action) ||
        admin_query_cursor(r, &cursor))
        return 0;
    if (r->roles & CFG_ROLE_ADMIN) {
        if (admin_query_tenant(r, &tenant))
            goto out;
    } else {
        const char *want;
        if (admin_query_word(r, "tenant", 64, &want))
            goto out;
        const char *own = r->tenant ? r->tenant : "*";
        if (want && strcmp(want, own) != 0) {
            admin_error(r, 403, "forbidden", "tenant", "token '%s' reads only the audit records "
                        "of its own tenant; every tenant's needs the admin role", r->token_name);
            goto out;
        }
        tenant = own;
    }
    if (since && until && since >= until) {
        admin_bad(r, "until", "must be after since");
        goto out;
    }
    json_t *items = NULL;
    char next[64] = "", err[256];
    int rc = audit_list(r->admin->audit, tenant, action, since, until, (size_t)limit, cursor,
                        &items, next, sizeof next, err, sizeof err);
    if (rc == AUDIT_EINVAL) {
        admin_bad(r, "cursor", "%s", err);
    } else if (rc != 0) {
        admin_unavailable(r, "", "the audit log cannot be read: %s", err);
    } else {
        char *nc = next[0] ? admin_cursor_make(r, next) : NULL;
        json_t *o = json_pack("{s:o, s:s?}", "items", items, "next_cursor", nc);
        if (!nc)
            json_object_set_new(o, "next_cursor", json_null());
        free(nc);
        admin_json(r, 200, o);
    }
out:
    free(cursor);
    return 0;
}

static const char *const audit_query[] = {"limit", "cursor", "action", "since", "until", "tenant",
                                          NULL};

/* POST /api/v1/handlers/{instance}/pause and /resume.  Handlers serve
 * every tenant, so only a "*" operator may stop or start one (a tenant
 * token sees the list, so 403 hides nothing). */
static int pause_or_resume(admin_req_t *r, bool pause)
{
    const char *inst = r->params[0];
    if (r->tenant) {
        admin_audit(r, inst, -1, "error: forbidden for a tenant token");
        return admin_error(r, 403, "forbidden", "token", "handlers serve every tenant: pausing "
                           "or resuming one needs a token of tenant \"*\"");
    }
    const char *reason = json_string_value(json_object_get(r->body, "reason"));
    char err[600];
    int rc = engine_handler_pause(r->engine, inst, pause, r->token_name, reason, err, sizeof err);
    if (rc == -2) {
        admin_audit(r, inst, -1, "error: not found");
        return admin_error(r, 404, "not_found", "instance", "%s", err);
    }
    if (rc != 0) {
        admin_audit(r, inst, -1, "error: redis unreachable");
        return admin_unavailable(r, "", "%s", err);
    }
    admin_audit(r, inst, -1, "ok");
    json_t *p = engine_paused_json(r->engine);
    json_t *rec = json_object_get(p, inst);
    json_t *o = json_pack("{s:s, s:s, s:O}", "instance", inst, "state", rec ? "paused" : "running",
                          "paused", rec ? rec : json_null());
    json_decref(p);
    return admin_json(r, 200, o);
}

static int pause_route(admin_req_t *r) { return pause_or_resume(r, true); }
static int resume_route(admin_req_t *r) { return pause_or_resume(r, false); }

static const char *const stats_query[] = {"tenant", NULL};

const admin_route_t admin_routes_ops[] = {
    {"GET", "/api/v1/stats", CFG_ROLE_VIEWER, false, stats_query, NULL, "stats", stats_route,
     500},
    /* a new point comes once a period: many consoles share one reply */
    {"GET", "/api/v1/stats/history", CFG_ROLE_VIEWER, false, stats_query, NULL,
     "stats.history", stats_history_route, 1000},
    {"GET", "/api/v1/handlers", CFG_ROLE_VIEWER, false, NULL, NULL, "handlers.list",
     handlers_route, 0},
    {"POST", "/api/v1/handlers/{instance}/pause", CFG_ROLE_OPERATOR, true, NULL,
     "handler-pause.json", "handlers.pause", pause_route, 0},
    {"POST", "/api/v1/handlers/{instance}/resume", CFG_ROLE_OPERATOR, true, NULL,
     "handler-pause.json", "handlers.resume", resume_route, 0},
    {"GET", "/api/v1/audit", CFG_ROLE_OPERATOR, false, audit_query, NULL, "audit.list",
     audit_list_route, 0},
    {0},
};
