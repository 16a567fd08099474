/*
 * The operator API's authorization matrix: every /api/v1 route × {no
 * token, unknown token, wrong role, another tenant's token, the owning
 * tenant's token, a "*" operator, admin.read_only} → the status code, and
 * for every 2xx reply to a tenant token the absence of the other tenant's
 * name and ids.  Real evbusd, redis-server and PostgreSQL; the resources
 * (dead letters, event metadata, replay jobs, a re-drive job) of tenants
 * acme and globex are made by a real run (the chaos plugin rejects what
 * should be dead-lettered).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "e2e.h"

static e2e_t E;

static void setup(void) { e2e_start(&E, false, true); }
static void teardown(void)
{
    if (E.fx.d.pid > 0 && harness_kill(&E.fx.d, SIGTERM, 15000) >= 0)
        E.fx.d.pid = 0;
    e2e_stop(&E);
}

TestSuite(admin_matrix, .init = setup, .fini = teardown, .timeout = 300);

enum { V = 1, O = 2, A = 4, P = 8 }; /* the role a route needs (config.h's bits) */

static const struct {
    const char *name, *role, *tenant;
} TOKENS[] = {
    {"view-acme", "viewer", "acme"},   {"op-acme", "operator", "acme"},
    {"admin-acme", "admin", "acme"},   {"pub-acme", "publisher", "acme"},
    {"view-globex", "viewer", "globex"}, {"op-globex", "operator", "globex"},
    {"admin-globex", "admin", "globex"}, {"pub-globex", "publisher", "globex"},
    {"op-all", "operator", "*"},       {"root", "admin", "*"},
};

/* every token's text is "tok-" + its name */
static const char *tok(const char *name)
{
    static char buf[8][64];
    static int slot;
    char *b = buf[slot++ % 8];
    snprintf(b, 64, "tok-%s-0123456789abcdef", name);
    return b;
}

static void write_conf(bool read_only)
{
    char extra[8192];
    int n = snprintf(extra, sizeof extra,
                     "postgres: { url: \"%s\", migrate_on_start: true }\n"
                     "admin:\n  listen: \"127.0.0.1:%d\"\n  read_only: %s\n"
                     "  rate_limit: { per_token_per_s: 100000, burst: 100000 }\n  tokens:\n",
                     E.pg.url, E.admin_port, read_only ? "true" : "false");
    for (size_t i = 0; i < sizeof TOKENS / sizeof *TOKENS; i++) {
        char hash[72];
        harness_token_hash(tok(TOKENS[i].name), hash);
        n += snprintf(extra + n, sizeof extra - (size_t)n,
                      "    - { name: %s, hash: \"%s\", roles: [%s], tenant: \"%s\" }\n",
                      TOKENS[i].name, hash, TOKENS[i].role, TOKENS[i].tenant);
    }
    fx_host_conf(&E.fx, "c1", extra);
}

static json_t *call(const char *method, const char *path, const char *token, const char *body,
                    int *status, char **raw)
{
    char *text = harness_http(E.admin_port, method, path, token, body, NULL, status, NULL);
    cr_assert(text, "%s %s: no answer", method, path);
    json_t *j = json_loads(text, 0, NULL);
    if (raw)
        *raw = text;
    else
        free(text);
    return j;
}

/* ---- the resources of tenant acme ------------------------------------------- */

#define N_DLQ 12
static char dlq_ids[N_DLQ][64];
static int dlq_next;
static char replay_ids[8][64];
static int replay_next;
static char job_id[64];

static void publish(const char *id, const char *tenant, bool reject)
{
    char *ev = e2e_event(id, "test.e2e.happened", tenant, reject ? "{\"fault\":\"reject\"}" : "{}",
                         NULL);
    cr_assert_eq(e2e_xadd(&E, "*", ev, NULL), 0);
    free(ev);
}

static void rfc3339(time_t t, char out[32])
{
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
}

static const char *replay_body(const char *tenant)
{
    static char body[256];
    char from[32], to[32];
    time_t now = time(NULL);
    rfc3339(now - 3600, from);
    rfc3339(now + 3600, to);
    /* slow (1 event/s over acme's events): jobs are still pending or
     * running when the matrix cancels them */
    snprintf(body, sizeof body,
             "{\"from\":\"%s\",\"to\":\"%s\",\"types\":[\"test.**\"],\"rate\":1%s%s%s}", from,
             to, tenant ? ",\"tenant\":\"" : "", tenant ? tenant : "", tenant ? "\"" : "");
    return body;
}

static void seed(void)
{
    write_conf(false);
    e2e_plugins(&E, "{ pattern: \"test.**\" }", NULL);
    char id[32];
    for (int i = 0; i < N_DLQ; i++) {
        snprintf(id, sizeof id, "acme-dl-%d", i);
        publish(id, "acme", true);
    }
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "globex-dl-%d", i);
        publish(id, "globex", true);
        snprintf(id, sizeof id, "acme-ok-%d", i);
        publish(id, "acme", false);
        snprintf(id, sizeof id, "globex-ok-%d", i);
        publish(id, "globex", false);
    }
    e2e_run_until_idle(&E, 1500);
    e2e_evbusd(&E, 0);
    cr_assert(e2e_wait_healthy(&E, 40000), "evbusd did not come up (log %s)", E.fx.log);

    int st;
    json_t *j = call("GET", "/api/v1/dlq?tenant=acme&limit=100", tok("op-all"), NULL, &st, NULL);
    cr_assert_eq(st, 200);
    json_t *items = json_object_get(j, "items");
    cr_assert_eq(json_array_size(items), N_DLQ, "acme dead letters: %zu",
                 json_array_size(items));
    for (size_t i = 0; i < N_DLQ; i++)
        snprintf(dlq_ids[i], sizeof dlq_ids[i], "%s",
                 json_string_value(json_object_get(json_array_get(items, i), "dlq_id")));
    json_decref(j);
    for (int i = 0; i < 8; i++) {
        j = call("POST", "/api/v1/replays", tok("op-acme"), replay_body(NULL), &st, NULL);
        cr_assert_eq(st, 201, "replay create: %d", st);
        snprintf(replay_ids[i], sizeof replay_ids[i], "%s",
                 json_string_value(json_object_get(j, "id")));
        json_decref(j);
    }
    /* a re-drive job of acme over nothing (it finishes at once) */
    j = call("POST", "/api/v1/dlq/redrive", tok("op-acme"),
             "{\"filter\":{\"type\":\"nothing.here\"},\"dry_run\":true}", &st, NULL);
    cr_assert_eq(st, 200);
    char body[700];
    snprintf(body, sizeof body, "{\"filter\":{\"type\":\"nothing.here\"},\"confirm\":\"%s\"}",
             json_string_value(json_object_get(j, "confirm")));
    json_decref(j);
    j = call("POST", "/api/v1/dlq/redrive", tok("op-acme"), body, &st, NULL);
    cr_assert_eq(st, 202, "redrive: %d", st);
    snprintf(job_id, sizeof job_id, "%s", json_string_value(json_object_get(j, "id")));
    json_decref(j);
}

/* ---- the matrix --------------------------------------------------------------- */

/* GLOBAL: acts on every tenant (reload): tenant tokens never may */
enum res { NONE = 0, DLQ, DLQ_FRESH, EVENT, REPLAY, REPLAY_FRESH, JOB, INSTANCE, GLOBAL };

typedef struct route {
    const char *method, *path; /* %s: the resource of tenant acme */
    enum res res;
    unsigned role;
    bool mutating;
    const char *body; /* "%T": a body naming tenant acme */
    int ok;
} route_t;

static const route_t ROUTES[] = {
    {"GET", "/api/v1/whoami", NONE, V, false, NULL, 200},
    {"GET", "/api/v1/config", NONE, V, false, NULL, 200},
    {"GET", "/api/v1/stats", NONE, V, false, NULL, 200},
    {"GET", "/api/v1/stats/history", NONE, V, false, NULL, 200},
    {"GET", "/api/v1/handlers", NONE, V, false, NULL, 200},
    {"POST", "/api/v1/handlers/%s/pause", INSTANCE, O, true, NULL, 200},
    {"POST", "/api/v1/handlers/%s/resume", INSTANCE, O, true, NULL, 200},
    {"GET", "/api/v1/dlq", NONE, V, false, NULL, 200},
    {"GET", "/api/v1/dlq/%s", DLQ, V, false, NULL, 200},
    {"POST", "/api/v1/dlq/%s/retry", DLQ_FRESH, O, true, NULL, 200},
    {"DELETE", "/api/v1/dlq/%s", DLQ_FRESH, O, true, NULL, 200},
    {"POST", "/api/v1/dlq/redrive", NONE, O, true, "{\"filter\":{},\"dry_run\":true}", 200},
    {"GET", "/api/v1/dlq/redrive/%s", JOB, V, false, NULL, 200},
    {"GET", "/api/v1/events/%s", EVENT, V, false, NULL, 200},
    {"GET", "/api/v1/events", NONE, V, false, NULL, 200},
    {"POST", "/api/v1/events", NONE, P, true, "%T", 201},
    {"POST", "/api/v1/replays", NONE, O, true, "%R", 201},
    {"GET", "/api/v1/replays/%s", REPLAY, V, false, NULL, 200},
    {"DELETE", "/api/v1/replays/%s", REPLAY_FRESH, O, true, NULL, 200},
    {"GET", "/api/v1/replays", NONE, V, false, NULL, 200},
    {"GET", "/api/v1/audit", NONE, O, false, NULL, 200},
    {"POST", "/api/v1/reload", GLOBAL, A, true, NULL, 200},
};

static const char *role_token(unsigned role, const char *tenant)
{
    static char name[32];
    const char *r = role == V ? "view" : role == O ? "op" : role == A ? "admin" : "pub";
    snprintf(name, sizeof name, "%s-%s", r, tenant);
    return tok(name);
}

/* A token of tenant acme lacking the route's role. */
static const char *wrong_role(unsigned role)
{
    return role == V ? tok("pub-acme") : role == O ? tok("view-acme")
         : role == A ? tok("op-acme") : tok("view-acme");
}

/* A call expected to succeed on a resource it consumes (retry, delete,
 * cancel) gets one nobody used; any other call the first one. */
static void make_path(const route_t *r, bool success, char *out, size_t len)
{
    const char *id = "";
    switch (r->res) {
    case NONE:
    case GLOBAL: break;
    case DLQ: id = dlq_ids[0]; break;
    case DLQ_FRESH:
        cr_assert(!success || dlq_next < N_DLQ - 1, "out of fresh dead letters");
        id = success ? dlq_ids[1 + dlq_next++] : dlq_ids[0];
        break;
    case EVENT: id = "acme-ok-0"; break;
    case REPLAY: id = replay_ids[0]; break;
    case REPLAY_FRESH:
        cr_assert(!success || replay_next < 7, "out of fresh replay jobs");
        id = success ? replay_ids[1 + replay_next++] : replay_ids[0];
        break;
    case JOB: id = job_id; break;
    case INSTANCE: id = "chaos"; break;
    }
    snprintf(out, len, r->path, id);
}

static const char *make_body(const route_t *r)
{
    static char buf[512];
    if (!r->body)
        return NULL;
    if (!strcmp(r->body, "%T")) {
        snprintf(buf, sizeof buf, "{\"type\":\"test.e2e.happened\",\"tenantid\":\"acme\","
                                  "\"source\":\"/t\",\"data\":{}}");
        return buf;
    }
    if (!strcmp(r->body, "%R"))
        return replay_body("acme");
    return r->body;
}

/* One cell: the status, and for a 2xx to a tenant token, no trace of the
 * other tenant. */
static void cell(const route_t *r, const char *who, const char *token, int want,
                 const char *must_not_contain)
{
    char path[256];
    make_path(r, want < 300, path, sizeof path);
    int st;
    char *raw;
    json_t *j = call(r->method, path, token, make_body(r), &st, &raw);
    cr_expect_eq(st, want, "%s %s as %s: %d, wanted %d: %.300s", r->method, path, who, st, want,
                 raw);
    if (st >= 200 && st < 300 && must_not_contain)
        cr_expect(!strstr(raw, must_not_contain), "%s %s as %s: the reply names %s: %.400s",
                  r->method, path, who, must_not_contain, raw);
    if (st >= 400)
        cr_expect(j && json_string_value(json_object_get(j, "error")) &&
                      json_object_get(j, "field"),
                  "%s %s as %s: error without error/field: %.200s", r->method, path, who, raw);
    json_decref(j);
    free(raw);
}

Test(admin_matrix, every_route_by_every_kind_of_caller)
{
    seed();
    size_t n = sizeof ROUTES / sizeof *ROUTES;
    for (size_t i = 0; i < n; i++) {
        const route_t *r = &ROUTES[i];
        cell(r, "no token", NULL, 401, NULL);
        cell(r, "an unknown token", "tok-nobody-0123456789abcdef", 401, NULL);
        cell(r, "a token without the role", wrong_role(r->role), 403, NULL);

        /* another tenant: its resource is missing, its lists hold nothing
         * of acme, and it cannot act for acme */
        int other = r->res == NONE ? r->ok : 404;
        if (r->res == INSTANCE || r->res == GLOBAL)
            other = 403; /* handlers serve every tenant: tenant tokens never pause */
        if (r->body && (!strcmp(r->body, "%T") || !strcmp(r->body, "%R")))
            other = 403; /* the body names acme */
        /* (the audit log holds the caller's own requests, which may name
         * acme: there, no record of acme's tenant may show) */
        cell(r, "another tenant", role_token(r->role, "globex"), other,
             strcmp(r->path, "/api/v1/audit") ? "acme" : "\"tenant\":\"acme\"");

        /* the owner */
        cell(r, "the owning tenant", role_token(r->role, "acme"),
             r->res == INSTANCE || r->res == GLOBAL ? 403 : r->ok,
             strcmp(r->path, "/api/v1/audit") ? "globex" : "\"tenant\":\"globex\"");

        /* a "*" operator: everything an operator may, nothing more */
        int star = r->role & (V | O) ? r->ok : 403;
        cell(r, "a * operator", tok("op-all"), star, NULL);
    }

    /* read_only: every mutating route is 403 whoever calls; reads go on */
    write_conf(true);
    kill(E.fx.d.pid, SIGHUP);
    int st = 0;
    for (int k = 0; k < 250; k++) {
        char *b = harness_http(E.admin_port, "POST", "/api/v1/reload", tok("root"), NULL, NULL,
                               &st, NULL);
        free(b);
        if (st == 403)
            break;
        usleep(20000);
    }
    cr_assert_eq(st, 403, "read_only did not take effect");
    for (size_t i = 0; i < n; i++) {
        const route_t *r = &ROUTES[i];
        const char *owner = role_token(r->role, "acme");
        if (r->mutating) {
            cell(r, "the owner under read_only", owner, 403, NULL);
            cell(r, "root under read_only", tok("root"), 403, NULL);
        } else {
            cell(r, "the owner under read_only", owner, r->ok, "globex");
        }
    }
}
