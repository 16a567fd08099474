/*
 * admin/api.h — the contract between the admin HTTP server (admin.c) and
 * the route modules (routes_*.c).  docs/admin-api.md is the user's view.
 *
 * A route is one row of a table: method, path pattern, the role it needs,
 * whether it mutates, the query parameters it accepts and the request
 * schema of its body.  admin.c does everything a route has in common
 * before the route's function runs, in this order:
 *   method and path known (404 / 405 with Allow), body size (413, before
 *   the body is read), bearer token (401 with WWW-Authenticate), role
 *   (403), admin.read_only on a mutating route (403), the token's rate
 *   limit (429 with Retry-After), content type (415), query parameters
 *   known (400 naming the parameter), body JSON and its schema (400 naming
 *   the field).
 * A route function then only checks values and does its work.
 *
 * Errors are JSON: {"error": CODE, "field": NAME, "message": TEXT}, CODE
 * one of invalid_argument, unauthorized, forbidden, not_found,
 * method_not_allowed, conflict, payload_too_large, unsupported_media_type,
 * invalid_config, rate_limited, unavailable, timeout, internal.
 *
 * TENANCY.  r->tenant is the caller's tenant, NULL for a "*" token.  A
 * route filters every list by it before counting and paging, and answers
 * a single resource of another tenant with admin_not_found() — the same
 * status, body and code path as a missing one.
 *
 * THREADS.  Route functions run on libmicrohttpd's pool threads, many at
 * once.  Everything reachable from admin_req_t is either owned by the
 * request (freed when it ends) or thread-safe (engine, audit, pools).
 */
#ifndef EVBUS_ADMIN_API_H
#define EVBUS_ADMIN_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "client/evbus_client.h"
#include "core/engine.h"
#include "core/generation.h"

typedef struct admin admin_t;

/* Role bits a route needs (config.h's CFG_ROLE_*).  A token's roles are
 * widened on use: admin ⊃ operator ⊃ viewer; publisher stands alone. */
#define ADMIN_PUBLIC 0u

#define ADMIN_MAX_PARAMS 2
#define ADMIN_MAX_BODY (1024 * 1024)

typedef struct admin_req {
    admin_t *admin;
    engine_t *engine;
    generation_t *gen;          /* pinned for the request: tokens, settings */
    const char *method;
    const char *path;
    /* {name} segments of the pattern, percent-decoded, in order */
    const char *params[ADMIN_MAX_PARAMS];
    json_t *body;               /* the parsed body (schema-checked), or NULL */
    /* the caller: a token, or none on a public route called without one */
    const char *token_name;     /* "-" without a token */
    const char *tenant;         /* NULL = every tenant */
    unsigned roles;             /* widened CFG_ROLE_* bits */
    const char *route;          /* the route's name, for metrics and audit */
    void *conn;                 /* struct MHD_Connection * */

    /* the reply, set through the functions below */
    unsigned status;
    char *reply;                /* owned */
    const char *ctype;
    char retry_after[24];       /* 429: seconds */
    char allow[64];             /* 405 */
    bool www_authenticate;      /* 401 */
    /* per-reply headers (static strings; NULL = the API's defaults) */
    const char *csp;            /* Content-Security-Policy instead of default-src 'none' */
    const char *etag;           /* ETag; also Cache-Control: no-cache instead of no-store */

    /* borrowed from the pools, returned when the request ends */
    evbus_client_t *redis;
    PGconn *pg;
} admin_req_t;

typedef int (*admin_route_fn)(admin_req_t *r);

typedef struct admin_route {
    const char *method;          /* "GET", "POST", "DELETE" */
    const char *pattern;         /* "/api/v1/dlq/{id}" */
    unsigned role;               /* CFG_ROLE_* needed, or ADMIN_PUBLIC */
    bool mutating;               /* refused under admin.read_only; audited */
    const char *const *query;    /* accepted query parameters, NULL-terminated; NULL = none */
    const char *body_schema;     /* request schema name (schemas/admin/...), NULL = no body */
    const char *name;            /* "dlq.list": metrics label and audit action */
    admin_route_fn fn;           /* returns 0 (reply set) */
    /* GET only: a 200 reply is reused for this long for the same tenant and
     * query, and concurrent identical requests wait for one computation
     * (single flight), so many clients polling a list cost Redis one read
     * per period.  Any successful mutating request drops every entry. */
    unsigned cache_ms;
} admin_route_t;

/* Route tables of the modules; each ends with a {0} row. */
extern const admin_route_t admin_routes_core[];  /* routes_core.c */
extern const admin_route_t admin_routes_dlq[];   /* routes_dlq.c */
extern const admin_route_t admin_routes_data[];  /* routes_data.c: events, replays */
extern const admin_route_t admin_routes_ops[];   /* routes_ops.c: handlers, audit, stats */
extern const admin_route_t admin_routes_console[]; /* routes_console.c: the web console */

/* ---- replies (each returns 0, so a route can `return admin_json(...)`) */

/* Steals body. */
int admin_json(admin_req_t *r, unsigned status, json_t *body);
int admin_text(admin_req_t *r, unsigned status, const char *ctype, char *owned_text);
int admin_error(admin_req_t *r, unsigned status, const char *code, const char *field,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* 400 invalid_argument naming field. */
int admin_bad(admin_req_t *r, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* 404: what a missing resource AND another tenant's resource both get. */
int admin_not_found(admin_req_t *r, const char *field, const char *what);
/* 503 unavailable: PostgreSQL is not configured or not reachable. */
int admin_unavailable(admin_req_t *r, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- query parameters: 0, or -1 with the 400 reply set ---------------- */

/* The raw value, or NULL when absent. */
const char *admin_query(admin_req_t *r, const char *name);
/* Integer in [min, max]; def when absent. */
int admin_query_int(admin_req_t *r, const char *name, long min, long max, long def, long *out);
/* RFC 3339 date-time as Unix ms; *out = 0 when absent. */
int admin_query_time(admin_req_t *r, const char *name, int64_t *out);
/* A name-like value (type, handler, reason, status...): printable, no
 * spaces, at most max bytes; NULL when absent. */
int admin_query_word(admin_req_t *r, const char *name, size_t max, const char **out);

/*
 * The tenant a list is filtered by: the caller's own for a tenant token
 * (a `tenant` parameter naming another tenant is 403: a token never widens
 * its scope), else the `tenant` parameter (NULL = every tenant).
 */
int admin_query_tenant(admin_req_t *r, const char **tenant);

/*
 * Cursors are opaque to clients: the payload (a stream id, a row id)
 * signed with a key drawn at start, bound to the route and the caller's
 * tenant.  A forged cursor, one of another route or another tenant is a
 * 400 — never data.  Cursors die with the process (documented).
 */
char *admin_cursor_make(admin_req_t *r, const char *payload); /* malloc'd */
/* The "cursor" parameter: *payload NULL when absent; else a malloc'd copy. */
int admin_query_cursor(admin_req_t *r, char **payload);

/* ---- resources -------------------------------------------------------- */

/* A Redis client on the event stream (pooled; the request returns it).
 * NULL with a 503 reply set. */
evbus_client_t *admin_redis(admin_req_t *r);
/* A PostgreSQL connection (pooled).  NULL with a 503 reply set when
 * postgres.url is not configured or the server is unreachable. */
PGconn *admin_pg(admin_req_t *r);
/* A connection the caller found broken: closed instead of pooled. */
void admin_pg_broken(admin_req_t *r);

/* An audit record for this request (every mutating route writes one):
 * target is a short text or a JSON text; count -1 = not applicable. */
void admin_audit(admin_req_t *r, const char *target, long long count, const char *result);

/* The reload request counter and the outcome the control thread records
 * (POST /api/v1/reload). */
void admin_request_reload(admin_req_t *r);

#endif
