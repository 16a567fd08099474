/*
 * auth — bearer tokens, roles, admin.read_only and per-token rate limits
 * for the admin server (admin_internal.h).
 *
 * A token is looked up by its SHA-256 among every configured token with
 * CRYPTO_memcmp and no early exit, so the time taken does not depend on
 * which token (if any) matched.  The token text itself is never stored,
 * logged or echoed; only its `name` is.
 */
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin/admin_internal.h"
#include "admin/audit.h"
#include "util/clock.h"
#include "util/log.h"

static unsigned widen(unsigned roles)
{
    if (roles & CFG_ROLE_ADMIN)
        roles |= CFG_ROLE_OPERATOR;
    if (roles & CFG_ROLE_OPERATOR)
        roles |= CFG_ROLE_VIEWER;
    return roles;
}

/* The configured token whose hash is the token's, or NULL. */
static const cfg_token_t *lookup(const evbus_config_t *cfg, const char *token, size_t len)
{
    unsigned char h[32];
    unsigned int hl = sizeof h;
    EVP_Digest(token, len, h, &hl, EVP_sha256(), NULL);
    const cfg_token_t *found = NULL;
    for (size_t i = 0; i < cfg->n_tokens; i++) {
        /* every token is compared: no early exit */
        int eq = CRYPTO_memcmp(h, cfg->tokens[i].hash, sizeof h) == 0;
        if (eq && !found)
            found = &cfg->tokens[i];
    }
    OPENSSL_cleanse(h, sizeof h);
    return found;
}

/* Take one request from the token's bucket; 0, or the seconds to wait. */
static long rate_take(admin_t *a, const char *name, double rate, double burst)
{
    int64_t now = clock_mono_ms();
    long wait = 0;
    pthread_mutex_lock(&a->rate_mu);
    rate_bucket_t *b = NULL;
    for (size_t i = 0; i < a->n_buckets && !b; i++)
        if (strcmp(a->buckets[i].name, name) == 0)
            b = &a->buckets[i];
    if (!b) {
        a->buckets = realloc(a->buckets, (a->n_buckets + 1) * sizeof *a->buckets);
        b = &a->buckets[a->n_buckets++];
        snprintf(b->name, sizeof b->name, "%s", name);
        b->tokens = burst;
        b->last_ms = now;
    }
    b->tokens += (double)(now - b->last_ms) / 1000.0 * rate;
    if (b->tokens > burst)
        b->tokens = burst;
    b->last_ms = now;
    if (b->tokens >= 1.0)
        b->tokens -= 1.0;
    else
        wait = (long)ceil((1.0 - b->tokens) / rate);
    pthread_mutex_unlock(&a->rate_mu);
    return wait < 0 ? 1 : wait;
}

void admin__rate_free(admin_t *a)
{
    free(a->buckets);
    a->buckets = NULL;
    a->n_buckets = 0;
}

static bool unauthorized(admin_t *a, admin_req_t *r, admin_auth_failure_t why, const char *msg)
{
    admin__auth_failure(a, why);
    r->www_authenticate = true;
    admin_error(r, 401, "unauthorized", "Authorization", "%s", msg);
    return false;
}

bool admin__authorize(admin_t *a, admin_req_t *r, const admin_route_t *route,
                      const char *authorization)
{
    const evbus_config_t *cfg = r->gen->cfg;
    unsigned need = route->role;
    if (!need && strcmp(route->name, "metrics") == 0 && cfg->admin.metrics_require_token)
        need = CFG_ROLE_VIEWER;
    if (!need)
        return true; /* public: a token, if any, is not even looked at */

    if (!authorization || !*authorization)
        return unauthorized(a, r, ADMIN_AUTH_MISSING,
                            "this endpoint needs a bearer token: Authorization: Bearer <token>");
    if (strncasecmp(authorization, "Bearer ", 7) != 0)
        return unauthorized(a, r, ADMIN_AUTH_MALFORMED,
                            "expected Authorization: Bearer <token>");
    const char *tok = authorization + 7;
    while (*tok == ' ')
        tok++;
    size_t len = strlen(tok);
    while (len && tok[len - 1] == ' ')
        len--;
    if (len == 0 || len > 1024)
        return unauthorized(a, r, ADMIN_AUTH_MALFORMED,
                            "expected Authorization: Bearer <token>");
    const cfg_token_t *t = lookup(cfg, tok, len);
    if (!t)
        return unauthorized(a, r, ADMIN_AUTH_UNKNOWN, "unknown or revoked token");

    r->token_name = t->name;
    r->tenant = t->tenant;
    r->roles = widen(t->roles);
    if (!(r->roles & need)) {
        admin__auth_failure(a, ADMIN_AUTH_ROLE);
        admin_error(r, 403, "forbidden", "token", "token '%s' lacks the %s role this endpoint "
                    "needs", t->name, cfg_role_name(need));
        return false;
    }
    if (route->mutating && cfg->admin.read_only) {
        admin__auth_failure(a, ADMIN_AUTH_READ_ONLY);
        admin_error(r, 403, "forbidden", "admin.read_only",
                    "the admin API is read-only (admin.read_only: true)");
        return false;
    }
    long wait = rate_take(a, t->name, cfg->admin.rate_per_s, (double)cfg->admin.rate_burst);
    if (wait > 0) {
        admin__auth_failure(a, ADMIN_AUTH_RATE);
        snprintf(r->retry_after, sizeof r->retry_after, "%ld", wait);
        admin_error(r, 429, "rate_limited", "token",
                    "token '%s' is over admin.rate_limit; retry after %ld s", t->name, wait);
        return false;
    }
    return true;
}

/* ---- audit ---- */

struct audit *admin__audit_start(const evbus_config_t *cfg, char *err, size_t errlen)
{
    return audit_start(cfg, err, errlen);
}

void admin__audit_stop(struct audit *au) { audit_stop(au); }

void admin_audit(admin_req_t *r, const char *target, long long count, const char *result)
{
    audit_record_t rec = {.token = r->token_name,
                          .tenant = r->tenant,
                          .action = r->route,
                          .target = target,
                          .count = count,
                          .result = result};
    /* never blocks: a full queue drops the record and counts it
     * (evbus_audit_dropped_total) */
    audit_write(r->admin->audit, &rec);
}
