/*
 * admin — the HTTP server: request lifecycle, routing, the checks every
 * route shares, resource pools.  See admin.h and api.h.
 */
#include "admin/admin.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "admin/admin_internal.h"
#include "admin/admin_parse.h"
#include "admin/api.h"
#include "jsonschema/jsonschema.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/metrics.h"

/* ---- replies ------------------------------------------------------------ */

int admin_text(admin_req_t *r, unsigned status, const char *ctype, char *owned_text)
{
    free(r->reply);
    r->status = status;
    r->ctype = ctype;
    r->reply = owned_text ? owned_text : strdup("");
    return 0;
}

int admin_json(admin_req_t *r, unsigned status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(body);
    if (!text)
        return admin_error(r, 500, "internal", "", "the reply could not be encoded");
    return admin_text(r, status, "application/json", text);
}

static int verror(admin_req_t *r, unsigned status, const char *code, const char *field,
                  const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    json_t *o = json_object();
    json_object_set_new(o, "error", json_string(code));
    /* messages and field names may quote client input (a query parameter's
     * name or value, bytes of any kind): printable ASCII only, so the
     * reply is always valid JSON */
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    char fbuf[128];
    snprintf(fbuf, sizeof fbuf, "%s", field ? field : "");
    for (char *p = fbuf; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    json_object_set_new(o, "field", json_string(fbuf));
    json_object_set_new(o, "message", json_string(msg));
    return admin_json(r, status, o);
}

int admin_error(admin_req_t *r, unsigned status, const char *code, const char *field,
                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(r, status, code, field, fmt, ap);
    va_end(ap);
    return 0;
}

int admin_bad(admin_req_t *r, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(r, 400, "invalid_argument", field, fmt, ap);
    va_end(ap);
    return 0;
}

int admin_not_found(admin_req_t *r, const char *field, const char *what)
{
    return admin_error(r, 404, "not_found", field, "no %s with this id", what);
}

int admin_unavailable(admin_req_t *r, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(r, 503, "unavailable", field, fmt, ap);
    va_end(ap);
    return 0;
}

/* ---- query parameters ---------------------------------------------------- */

const char *admin_query(admin_req_t *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

int admin_query_int(admin_req_t *r, const char *name, long min, long max, long def, long *out)
{
    const char *v = admin_query(r, name);
    if (!v) {
        *out = def;
        return 0;
    }
    long n;
    if (admin__parse_long(v, min, max, &n) != 0) {
        admin_bad(r, name, "must be an integer between %ld and %ld, got '%.40s'", min, max, v);
        return -1;
    }
    *out = n;
    return 0;
}

int admin_query_time(admin_req_t *r, const char *name, int64_t *out)
{
    *out = 0;
    const char *v = admin_query(r, name);
    if (!v)
        return 0;
    int64_t ms;
    if (admin__parse_time(v, &ms) != 0) {
        admin_bad(r, name, "must be an RFC 3339 date-time such as 2026-12-07T10:00:00Z, got "
                           "'%.40s'", v);
        return -1;
    }
    *out = ms;
    return 0;
}

int admin_query_word(admin_req_t *r, const char *name, size_t max, const char **out)
{
    const char *v = admin_query(r, name);
    *out = NULL;
    if (!v)
        return 0;
    if (!admin__word_ok(v, max)) {
        admin_bad(r, name, "must be 1 to %zu printable characters without spaces", max);
        return -1;
    }
    *out = v;
    return 0;
}

int admin_query_tenant(admin_req_t *r, const char **tenant)
{
    const char *want;
    if (admin_query_word(r, "tenant", 64, &want) != 0)
        return -1;
    if (r->tenant && want && strcmp(want, r->tenant) != 0) {
        admin__auth_failure(r->admin, ADMIN_AUTH_TENANT);
        admin_error(r, 403, "forbidden", "tenant",
                    "token '%s' is scoped to one tenant and cannot read another's", r->token_name);
        return -1;
    }
    *tenant = r->tenant ? r->tenant : want;
    return 0;
}

/* ---- cursors: base64url(payload) "." base64url(HMAC-SHA256) ------------- */

static void cursor_mac(admin_t *a, const char *route, const char *tenant, const unsigned char *p,
                       size_t n, unsigned char mac[32])
{
    /* route and tenant are part of what is signed: a cursor only ever
     * continues the walk it came from, for the tenant that started it */
    size_t rl = strlen(route), tl = tenant ? strlen(tenant) : 1;
    size_t len = rl + 1 + tl + 1 + n;
    unsigned char *msg = malloc(len);
    memcpy(msg, route, rl);
    msg[rl] = 0;
    memcpy(msg + rl + 1, tenant ? tenant : "*", tl);
    msg[rl + 1 + tl] = 0;
    memcpy(msg + rl + tl + 2, p, n);
    unsigned int ml = 32;
    HMAC(EVP_sha256(), a->cursor_key, sizeof a->cursor_key, msg, len, mac, &ml);
    free(msg);
}

char *admin_cursor_make(admin_req_t *r, const char *payload)
{
    size_t n = strlen(payload);
    unsigned char mac[32];
    cursor_mac(r->admin, r->route, r->tenant, (const unsigned char *)payload, n, mac);
    char *out = malloc(n * 4 / 3 + 4 + 1 + 44 + 1);
    admin__b64u_encode((const unsigned char *)payload, n, out);
    size_t o = strlen(out);
    out[o++] = '.';
    admin__b64u_encode(mac, sizeof mac, out + o);
    return out;
}

int admin_query_cursor(admin_req_t *r, char **payload)
{
    *payload = NULL;
    const char *v = admin_query(r, "cursor");
    if (!v)
        return 0;
    const char *dot = strchr(v, '.');
    unsigned char buf[512], mac[32], want[32];
    long n = dot && dot - v < 600 ? admin__b64u_decode(v, (size_t)(dot - v), buf, sizeof buf - 1) : -1;
    long m = n >= 0 ? admin__b64u_decode(dot + 1, strlen(dot + 1), mac, sizeof mac) : -1;
    if (n >= 0)
        cursor_mac(r->admin, r->route, r->tenant, buf, (size_t)n, want);
    if (n < 0 || m != 32 || CRYPTO_memcmp(mac, want, 32) != 0 || memchr(buf, 0, (size_t)n)) {
        admin_bad(r, "cursor", "not a cursor this endpoint issued to this token's tenant (cursors "
                               "are opaque and end with the evbusd process that made them)");
        return -1;
    }
    buf[n] = '\0';
    *payload = strdup((char *)buf);
    return 0;
}

/* ---- pools ---------------------------------------------------------------- */

evbus_client_t *admin_redis(admin_req_t *r)
{
    if (r->redis)
        return r->redis;
    admin_t *a = r->admin;
    pthread_mutex_lock(&a->pool_mu);
    if (a->n_redis)
        r->redis = a->redis_pool[--a->n_redis];
    pthread_mutex_unlock(&a->pool_mu);
    if (!r->redis) {
        char err[256];
        r->redis = a->cluster ? evbus_client_new_cluster(a->cluster, a->stream, err, sizeof err)
                              : evbus_client_new(a->redis_url, a->stream, err, sizeof err);
        /* partitions is a restart setting: the first generation's count */
        if (r->redis && evbus_client_set_partitions(r->redis, a->partitions) != 0) {
            snprintf(err, sizeof err, "%s", evbus_client_error(r->redis));
            evbus_client_free(r->redis);
            r->redis = NULL;
        }
        if (!r->redis)
            admin_unavailable(r, "", "redis: %s", err);
    }
    return r->redis;
}

PGconn *admin_pg(admin_req_t *r)
{
    if (r->pg)
        return r->pg;
    admin_t *a = r->admin;
    const char *url = r->gen->cfg->store.postgres_url;
    if (!url) {
        admin_unavailable(r, "", "PostgreSQL is not configured (postgres.url): event metadata, "
                                 "replays and their history live there");
        return NULL;
    }
    pthread_mutex_lock(&a->pool_mu);
    while (a->n_pg && !r->pg) {
        PGconn *c = a->pg_pool[--a->n_pg];
        if (PQstatus(c) == CONNECTION_OK)
            r->pg = c;
        else
            PQfinish(c);
    }
    pthread_mutex_unlock(&a->pool_mu);
    if (!r->pg) {
        char err[512];
        r->pg = store_connect(url, err, sizeof err);
        if (!r->pg)
            admin_unavailable(r, "", "PostgreSQL is unreachable: %s", err);
    }
    return r->pg;
}

void admin_pg_broken(admin_req_t *r)
{
    if (r->pg)
        PQfinish(r->pg);
    r->pg = NULL;
}

static void pools_return(admin_req_t *r)
{
    admin_t *a = r->admin;
    pthread_mutex_lock(&a->pool_mu);
    if (r->redis && a->n_redis < ADMIN_POOL_MAX) {
        a->redis_pool[a->n_redis++] = r->redis;
        r->redis = NULL;
    }
    if (r->pg && a->n_pg < ADMIN_POOL_MAX && PQstatus(r->pg) == CONNECTION_OK &&
        PQtransactionStatus(r->pg) == PQTRANS_IDLE) {
        a->pg_pool[a->n_pg++] = r->pg;
        r->pg = NULL;
    }
    pthread_mutex_unlock(&a->pool_mu);
    if (r->redis)
        evbus_client_free(r->redis);
    if (r->pg)
        PQfinish(r->pg);
    r->redis = NULL;
    r->pg = NULL;
}

void admin_request_reload(admin_req_t *r)
{
    atomic_fetch_add(r->admin->reloads, 1);
}

/* ---- routing ---------------------------------------------------------------- */

static const admin_route_t *const *all_tables(void)
{
    static const admin_route_t *const t[] = {admin_routes_core, admin_routes_dlq,
                                             admin_routes_data, admin_routes_ops,
                                             admin_routes_console, NULL};
    return t;
}

/* The route for (method, path); *allow gets every method the path has. */
static const admin_route_t *route_find(const char *method, const char *path, char *allow,
                                       size_t allow_len, char params[][129], size_t *np)
{
    allow[0] = '\0';
    const admin_route_t *found = NULL;
    char tmp[ADMIN_MAX_PARAMS][129];
    size_t tn;
    for (const admin_route_t *const *t = all_tables(); *t; t++) {
        for (const admin_route_t *rt = *t; rt->pattern; rt++) {
            if (!admin__path_match(rt->pattern, path, tmp, &tn))
                continue;
            if (!strstr(allow, rt->method)) {
                if (allow[0])
                    strncat(allow, ", ", allow_len - strlen(allow) - 1);
                strncat(allow, rt->method, allow_len - strlen(allow) - 1);
            }
            if (!found && strcmp(rt->method, method) == 0) {
                found = rt;
                memcpy(params, tmp, sizeof tmp);
                *np = tn;
            }
        }
    }
    return found;
}

typedef struct req_state {
    admin_req_t r;
    const admin_route_t *route;
    char params[ADMIN_MAX_PARAMS][129];
    char *body;
    size_t len, cap;
    bool too_big;
    bool replied; /* a reply was queued early: the body is not read */
} req_state_t;

/* ---- the reply cache (admin_route_t.cache_ms) ------------------------- */

typedef struct qbuf {
    char *p;
    size_t len, cap;
} qbuf_t;

static void qb_add(qbuf_t *b, const char *s)
{
    size_t n = strlen(s) + 1; /* with its separator */
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n - 1);
    b->p[b->len + n - 1] = '\n';
    b->len += n;
    b->p[b->len] = '\0';
}

static enum MHD_Result key_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    (void)kind;
    qb_add(cls, key);
    qb_add(cls, value ? value : "");
    return MHD_YES;
}

/* route, tenant and the query as given: two requests share a reply only
 * when all three are equal (a tenant never sees another's cached page) */
static char *cache_key(admin_req_t *r)
{
    qbuf_t b = {0};
    qb_add(&b, r->route);
    qb_add(&b, r->tenant ? r->tenant : "*");
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, key_iter, &b);
    return b.p;
}

static cache_entry_t *cache_find(admin_t *a, const char *key)
{
    for (size_t i = 0; i < a->n_cache; i++)
        if (strcmp(a->cache[i].key, key) == 0)
            return &a->cache[i];
    return NULL;
}

/* true: r's reply comes from the cache.  false: compute it; *claimed says
 * whether this request must then call cache_fill (others wait for it). */
static bool cache_get(admin_t *a, admin_req_t *r, const char *key, bool *claimed)
{
    *claimed = false;
    pthread_mutex_lock(&a->cache_mu);
    int64_t give_up = clock_mono_ms() + 5000;
    for (;;) {
        int64_t now = clock_mono_ms();
        cache_entry_t *e = cache_find(a, key);
        if (e && !e->loading && e->expires_ms > now) {
            admin_text(r, e->status, e->ctype, strdup(e->body));
            pthread_mutex_unlock(&a->cache_mu);
            return true;
        }
        if (e && e->loading) {
            if (now >= give_up)
                break; /* a stuck load: compute without the cache */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&a->cache_cv, &a->cache_mu, &ts);
            continue;
        }
        if (!e) {
            /* a free slot: an expired entry, or a new one */
            for (size_t i = 0; i < a->n_cache && !e; i++)
                if (!a->cache[i].loading && a->cache[i].expires_ms <= now)
                    e = &a->cache[i];
            if (!e && a->n_cache < ADMIN_CACHE_MAX)
                e = &a->cache[a->n_cache++];
            if (!e)
                break; /* full of fresh entries: compute without the cache */
            free(e->key);
            e->key = strdup(key);
        }
        free(e->body);
        e->body = NULL;
        e->loading = true;
        *claimed = true;
        break;
    }
    pthread_mutex_unlock(&a->cache_mu);
    return false;
}

static void cache_fill(admin_t *a, admin_req_t *r, const char *key, unsigned ttl_ms)
{
    pthread_mutex_lock(&a->cache_mu);
    cache_entry_t *e = cache_find(a, key);
    if (e && e->loading) {
        e->loading = false;
        if (r->status == 200 && r->reply) {
            e->body = strdup(r->reply);
            e->ctype = r->ctype;
            e->status = r->status;
            e->expires_ms = clock_mono_ms() + ttl_ms;
        } else {
            e->expires_ms = 0; /* errors are not cached: the waiters compute */
        }
    }
    pthread_cond_broadcast(&a->cache_cv);
    pthread_mutex_unlock(&a->cache_mu);
}

/* After a change: nothing cached may be older than it. */
static void cache_clear(admin_t *a)
{
    pthread_mutex_lock(&a->cache_mu);
    for (size_t i = 0; i < a->n_cache; i++)
        if (!a->cache[i].loading)
            a->cache[i].expires_ms = 0;
    pthread_mutex_unlock(&a->cache_mu);
}

static void run_route(admin_t *a, req_state_t *st)
{
    admin_req_t *r = &st->r;
    const admin_route_t *rt = st->route;
    if (!rt->cache_ms || strcmp(rt->method, "GET") != 0) {
        rt->fn(r);
        if (rt->mutating && r->status < 300)
            cache_clear(a);
        return;
    }
    char *key = cache_key(r);
    bool claimed;
    if (!cache_get(a, r, key, &claimed)) {
        rt->fn(r);
        if (claimed)
            cache_fill(a, r, key, rt->cache_ms);
    }
    free(key);
}

/* ---- request lifecycle ----------------------------------------------------- */


static void count_request(admin_t *a, const char *route, unsigned code)
{
    pthread_mutex_lock(&a->stats_mu);
    size_t i = 0;
    for (; i < a->n_req_stats; i++)
        if (a->req_stats[i].code == code && strcmp(a->req_stats[i].route, route) == 0)
            break;
    if (i == a->n_req_stats && a->n_req_stats < ADMIN_REQ_STATS_MAX) {
        a->req_stats[i].route = route; /* static: a route's name or a fixed word */
        a->req_stats[i].code = code;
        a->n_req_stats++;
    }
    if (i < a->n_req_stats)
        a->req_stats[i].count++;
    pthread_mutex_unlock(&a->stats_mu);
}

void admin__auth_failure(admin_t *a, admin_auth_failure_t why)
{
    atomic_fetch_add_explicit(&a->auth_failures[why], 1, memory_order_relaxed);
}

static enum MHD_Result send_reply(req_state_t *st, struct MHD_Connection *c)
{
    admin_req_t *r = &st->r;
    if (!r->reply)
        admin_error(r, 500, "internal", "", "the route set no reply");
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(r->reply), r->reply,
                                                                MHD_RESPMEM_MUST_FREE);
    r->reply = NULL;
    MHD_add_response_header(resp, "Content-Type", r->ctype ? r->ctype : "application/json");
    /* an ETag'd reply may be kept, but is checked with the server each time */
    MHD_add_response_header(resp, "Cache-Control", r->etag ? "no-cache" : "no-store");
    if (r->etag)
        MHD_add_response_header(resp, "ETag", r->etag);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "Content-Security-Policy",
                            r->csp ? r->csp : "default-src 'none'; frame-ancestors 'none'");
    if (r->www_authenticate)
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"evbus\"");
    if (r->retry_after[0])
        MHD_add_response_header(resp, "Retry-After", r->retry_after);
    if (r->allow[0])
        MHD_add_response_header(resp, "Allow", r->allow);
    enum MHD_Result ret = MHD_queue_response(c, r->status, resp);
    MHD_destroy_response(resp);
    count_request(r->admin, st->route ? st->route->name : "unmatched", r->status);
    return ret;
}

typedef struct qcheck {
    admin_req_t *r;
    const char *const *allowed;
    const char *bad;
    const char *dup;
    const char *seen[16];
    size_t n_seen;
} qcheck_t;

static enum MHD_Result query_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    (void)kind;
    (void)value;
    qcheck_t *q = cls;
    bool ok = false;
    for (const char *const *k = q->allowed; k && *k && !ok; k++)
        ok = strcmp(*k, key) == 0;
    if (!ok) {
        q->bad = key;
        return MHD_NO;
    }
    for (size_t i = 0; i < q->n_seen; i++)
        if (strcmp(q->seen[i], key) == 0) {
            q->dup = key;
            return MHD_NO;
        }
    if (q->n_seen < 16)
        q->seen[q->n_seen++] = key;
    return MHD_YES;
}

/* Checks that need no body.  true: go on; false: r's reply is set. */
static bool precheck(admin_t *a, req_state_t *st, struct MHD_Connection *c, const char *url,
                     const char *method)
{
    admin_req_t *r = &st->r;
    size_t np = 0;
    char allow[64];
    st->route = route_find(method, url, allow, sizeof allow, st->params, &np);
    if (!st->route) {
        if (allow[0]) {
            snprintf(r->allow, sizeof r->allow, "%s", allow);
            admin_error(r, 405, "method_not_allowed", "method", "%s is not allowed here; use %s",
                        method, allow);
        } else {
            admin_error(r, 404, "not_found", "path", "no such endpoint");
        }
        return false;
    }
    for (size_t i = 0; i < np; i++)
        r->params[i] = st->params[i];
    r->route = st->route->name;

    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > ADMIN_MAX_BODY) {
        admin_error(r, 413, "payload_too_large", "body", "request bodies are limited to %d bytes",
                    ADMIN_MAX_BODY);
        return false;
    }
    if (!admin__authorize(a, r, st->route,
                          MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization")))
        return false;

    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    bool has_body = (cl && strtoull(cl, NULL, 10) > 0) ||
                    MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Transfer-Encoding");
    if (has_body && !st->route->body_schema) {
        admin_error(r, 415, "unsupported_media_type", "body", "this endpoint takes no body");
        return false;
    }
    if (has_body && !admin__is_json_ctype(ct)) {
        admin_error(r, 415, "unsupported_media_type", "Content-Type",
                    "send the body as application/json");
        return false;
    }
    qcheck_t q = {.r = r, .allowed = st->route->query};
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, query_iter, &q);
    if (q.bad) {
        char valid[256] = "";
        for (const char *const *k = st->route->query; k && *k; k++) {
            if (valid[0])
                strncat(valid, ", ", sizeof valid - strlen(valid) - 1);
            strncat(valid, *k, sizeof valid - strlen(valid) - 1);
        }
        admin_bad(r, q.bad, "unknown query parameter (valid: %s)", valid[0] ? valid : "none");
        return false;
    }
    if (q.dup) {
        admin_bad(r, q.dup, "given more than once");
        return false;
    }
    return true;
}

/* The body: JSON, then the route's schema.  true: go on. */
static bool body_check(admin_t *a, req_state_t *st)
{
    admin_req_t *r = &st->r;
    if (!st->route->body_schema)
        return true;
    if (!st->len) {
        r->body = NULL; /* routes with optional bodies see NULL */
        const js_schema_t *s = admin__schema(a, st->route->body_schema);
        json_t *empty = json_object();
        bool ok = !s || js_validate(s, empty, NULL, 0) == 1;
        json_decref(empty);
        if (!ok) {
            admin_bad(r, "body", "this endpoint needs a JSON body (docs/admin-api.md)");
            return false;
        }
        return true;
    }
    json_error_t je;
    /* depth: jansson stops at 2048 levels; refuse silly nesting sooner */
    if (admin__json_depth(st->body, st->len) > 32) {
        admin_bad(r, "body", "JSON nested deeper than 32 levels");
        return false;
    }
    r->body = json_loadb(st->body, st->len, JSON_REJECT_DUPLICATES, &je);
    if (!r->body) {
        admin_bad(r, "body", "not valid JSON at line %d column %d: %s", je.line, je.column,
                  je.text);
        return false;
    }
    const js_schema_t *s = admin__schema(a, st->route->body_schema);
    js_errors_t errs = {0};
    if (s && js_validate(s, r->body, &errs, 0) != 1) {
        const char *ptr = errs.count ? errs.items[0].instance_path : "";
        char field[256];
        /* "/filter/type" -> "filter.type"; the root -> "body" */
        snprintf(field, sizeof field, "%s", *ptr ? ptr + 1 : "body");
        for (char *p = field; *p; p++)
            if (*p == '/')
                *p = '.';
        admin_bad(r, field, "%s", errs.count ? errs.items[0].message : "does not match the schema");
        js_errors_clear(&errs);
        return false;
    }
    js_errors_clear(&errs);
    return true;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    (void)version;
    admin_t *a = cls;
    req_state_t *st = *con_cls;
    static __thread bool niced;
    if (!niced) {
        /* the event path first: under contention an admin pool thread gets
         * a small CPU share (admin.nice), so operators polling the API do
         * not slow the drain; idle CPU is still theirs */
        niced = true;
        if (a->nice > 0 && setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), a->nice) != 0)
            log_warn("admin", "cannot lower the admin threads' priority: %s", strerror(errno));
    }
    if (!st) { /* first call: headers only */
        st = calloc(1, sizeof *st);
        *con_cls = st;
        admin_req_t *r = &st->r;
        r->admin = a;
        r->engine = a->eng;
        r->conn = c;
        r->method = method;
        r->path = url;
        r->token_name = "-";
        r->gen = engine_current(a->eng);
        if (!precheck(a, st, c, url, method)) {
            /* answered before the body is read: an unauthenticated or
             * oversized upload is never buffered */
            st->replied = true;
            return send_reply(st, c);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!st->too_big) {
            if (st->len + *upload_size > ADMIN_MAX_BODY) {
                st->too_big = true; /* chunked uploads have no Content-Length */
            } else {
                if (st->len + *upload_size > st->cap) {
                    st->cap = (st->len + *upload_size) * 2;
                    if (st->cap > ADMIN_MAX_BODY)
                        st->cap = ADMIN_MAX_BODY;
                    st->body = realloc(st->body, st->cap);
                }
                memcpy(st->body + st->len, upload, *upload_size);
                st->len += *upload_size;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (st->replied)
        return MHD_YES;
    st->replied = true;
    admin_req_t *r = &st->r;
    if (st->too_big)
        admin_error(r, 413, "payload_too_large", "body", "request bodies are limited to %d bytes",
                    ADMIN_MAX_BODY);
    else if (body_check(a, st))
        run_route(a, st);
    return send_reply(st, c);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    req_state_t *st = *con_cls;
    if (!st)
        return;
    pools_return(&st->r);
    if (st->r.gen)
        generation_unref(st->r.gen);
    json_decref(st->r.body);
    free(st->r.reply);
    free(st->body);
    free(st);
    *con_cls = NULL;
}

/* libmicrohttpd's unescape callback (admin_parse.c says why %00 stays). */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return admin__unescape(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_warn("admin", "libmicrohttpd: %s", msg);
}

/* ---- admin's own metrics ----------------------------------------------------- */

static const char *const auth_failure_names[] = {"missing", "malformed", "unknown", "role",
                                                 "read_only", "rate_limited", "tenant"};

char *admin__metrics_text(admin_t *a)
{
    char *base = metrics_render();
    size_t cap = (base ? strlen(base) : 0) + 8192, len = 0;
    char *out = malloc(cap);
    if (!out) {
        free(base);
        return NULL; /* admin_text() serves an empty body */
    }
    /* Out of memory while growing leaves the text cut before the line that
     * did not fit (`out = realloc(out, ...)` lost it and wrote through NULL). */
#define APPEND(...)                                                                                \
    do {                                                                                           \
        int _n = snprintf(out + len, cap - len, __VA_ARGS__);                                      \
        if (_n >= 0 && (size_t)_n >= cap - len) {                                                  \
            size_t _cap = (cap + (size_t)_n) * 2;                                                  \
            char *_grown = realloc(out, _cap);                                                     \
            if (_grown) {                                                                          \
                out = _grown;                                                                      \
                cap = _cap;                                                                        \
                _n = snprintf(out + len, cap - len, __VA_ARGS__);                                  \
            } else {                                                                               \
                out[len] = '\0';                                                                   \
                _n = 0;                                                                            \
            }                                                                                      \
        }                                                                                          \
        if (_n > 0)                                                                                \
            len += (size_t)_n;                                                                     \
    } while (0)
    APPEND("%s", base ? base : "");
    free(base);
    APPEND("# HELP evbus_admin_requests_total Admin API requests by route and status code\n"
           "# TYPE evbus_admin_requests_total counter\n");
    pthread_mutex_lock(&a->stats_mu);
    for (size_t i = 0; i < a->n_req_stats; i++)
        APPEND("evbus_admin_requests_total{route=\"%s\",code=\"%u\"} %llu\n",
               a->req_stats[i].route, a->req_stats[i].code,
               (unsigned long long)a->req_stats[i].count);
    pthread_mutex_unlock(&a->stats_mu);
    APPEND("# HELP evbus_auth_failures_total Admin API requests refused by authentication or "
           "authorization, by reason\n# TYPE evbus_auth_failures_total counter\n");
    for (int i = 0; i < ADMIN_AUTH_FAILURE_KINDS; i++)
        APPEND("evbus_auth_failures_total{reason=\"%s\"} %llu\n", auth_failure_names[i],
               (unsigned long long)atomic_load(&a->auth_failures[i]));
#undef APPEND
    return out;
}

/* ---- start and stop -------------------------------------------------------- */

static char *read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    size_t got;
    /* `buf = realloc(buf, ...)` lost the buffer and then read into NULL
     * when memory ran out (cppcheck memleakOnRealloc). */
    while (buf && (got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 == cap) {
            char *grown = realloc(buf, cap *= 2);
            if (!grown)
                free(buf);
            buf = grown;
        }
    }
    fclose(f);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

admin_t *admin_start(const evbus_config_t *cfg, engine_t *e, atomic_int *reload_requests,
                     char *err, size_t errlen)
{
    const admin_settings_t *s = &cfg->admin;
    const char *listen = s->listen;
    char host[128];
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof host) {
        snprintf(err, errlen, "admin.listen '%s': expected host:port", listen);
        return NULL;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535) {
        snprintf(err, errlen, "admin.listen '%s': invalid port", listen);
        return NULL;
    }
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "admin.listen '%s': host must be an IPv4 address", listen);
        return NULL;
    }
    bool tls = s->tls_cert && s->tls_key;
    if (!tls && !s->allow_plaintext && !admin_host_is_loopback(listen)) {
        /* the config check refuses this too; this guards other callers */
        snprintf(err, errlen, "admin.listen '%s' is not a loopback address and admin.tls is not "
                 "set: bearer tokens would cross the network in clear text (set admin.tls, or "
                 "admin.allow_plaintext: true behind a TLS proxy)", listen);
        return NULL;
    }
    if (tls && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        snprintf(err, errlen, "admin.tls: this libmicrohttpd was built without TLS support");
        return NULL;
    }
    admin_t *a = calloc(1, sizeof *a);
    a->eng = e;
    a->reloads = reload_requests;
    a->redis_url = strdup(cfg->core.redis_url);
    a->cluster = core_redis_cluster(cfg) ? strdup(core_redis_cluster(cfg)) : NULL;
    a->stream = strdup(cfg->core.stream);
    a->partitions = cfg->core.partitions;
    pthread_mutex_init(&a->pool_mu, NULL);
    pthread_mutex_init(&a->stats_mu, NULL);
    pthread_mutex_init(&a->rate_mu, NULL);
    pthread_mutex_init(&a->cache_mu, NULL);
    pthread_cond_init(&a->cache_cv, NULL);
    a->nice = (int)s->nice;
    if (getrandom(a->cursor_key, sizeof a->cursor_key, 0) != (ssize_t)sizeof a->cursor_key) {
        snprintf(err, errlen, "admin: getrandom: %s", strerror(errno));
        admin_stop(a);
        return NULL;
    }
    if (admin__schemas_load(a, err, errlen) != 0 || admin__jobs_start(a, cfg, err, errlen) != 0) {
        admin_stop(a);
        return NULL;
    }
    a->audit = admin__audit_start(cfg, err, errlen);
    if (!a->audit) {
        admin_stop(a);
        return NULL;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_EPOLL;
    if (tls) {
        a->tls_cert = read_file(s->tls_cert, err, errlen);
        a->tls_key = a->tls_cert ? read_file(s->tls_key, err, errlen) : NULL;
        if (!a->tls_key) {
            char tmp[600];
            snprintf(tmp, sizeof tmp, "admin.tls: %s", err);
            snprintf(err, errlen, "%s", tmp);
            admin_stop(a);
            return NULL;
        }
        flags |= MHD_USE_TLS;
    }
    unsigned timeout_s = (unsigned)((s->connection_timeout_ms + 999) / 1000);
    a->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, handle, a, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s->threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)s->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, completed, a, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, a,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape, a,
        tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, a->tls_cert,
        MHD_OPTION_HTTPS_MEM_KEY, a->tls_key, MHD_OPTION_END);
    if (!a->mhd) {
        snprintf(err, errlen, "admin.listen '%s': cannot listen (address in use%s?)", listen,
                 tls ? ", or an unreadable certificate/key" : "");
        admin_stop(a);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(a->mhd, MHD_DAEMON_INFO_BIND_PORT);
    a->port = info ? info->port : (int)port;
    return a;
}

int admin_port(const admin_t *a) { return a->port; }

void admin_stop(admin_t *a)
{
    if (!a)
        return;
    if (a->mhd)
        MHD_stop_daemon(a->mhd);
    admin__jobs_stop(a);
    admin__audit_stop(a->audit);
    admin__schemas_free(a);
    for (size_t i = 0; i < a->n_redis; i++)
        evbus_client_free(a->redis_pool[i]);
    for (size_t i = 0; i < a->n_pg; i++)
        PQfinish(a->pg_pool[i]);
    admin__rate_free(a);
    for (size_t i = 0; i < a->n_cache; i++) {
        free(a->cache[i].key);
        free(a->cache[i].body);
    }
    pthread_mutex_destroy(&a->cache_mu);
    pthread_cond_destroy(&a->cache_cv);
    pthread_mutex_destroy(&a->pool_mu);
    pthread_mutex_destroy(&a->stats_mu);
    pthread_mutex_destroy(&a->rate_mu);
    free(a->redis_url);
    free(a->cluster);
    free(a->stream);
    if (a->tls_key)
        OPENSSL_cleanse(a->tls_key, strlen(a->tls_key));
    free(a->tls_key);
    free(a->tls_cert);
    OPENSSL_cleanse(a->cursor_key, sizeof a->cursor_key);
    free(a);
}
