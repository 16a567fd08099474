/*
 * The operator API's common checks, against a real evbusd: tokens (401
 * with WWW-Authenticate, revocation by reload), roles (403), read_only,
 * rate limits (429 with Retry-After), methods (405 with Allow), unknown
 * routes and traversal forms (404), bodies over 1 MiB (413, also chunked),
 * content types (415), unknown query parameters (400 naming them), idle
 * connections (closed after admin.connection_timeout), the plaintext
 * guard of the configuration, /metrics behind a token, and the admin's
 * own metrics.  Real redis-server, real evbusd.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "fixture.h"

static fx_t F;

#define VIEWER "evb_test_viewer_token_0123456789"
#define PUBLISHER "evb_test_publisher_token_0123456789"
#define OPERATOR "evb_test_operator_token_0123456789"

static void setup(void) { fx_start(&F, false); }
static void teardown(void) { fx_stop(&F); }

TestSuite(admin_api, .init = setup, .fini = teardown, .timeout = 300);

/* conf/10-admin.yaml: the endpoint, three tokens and `more` inside admin: */
static void admin_conf(const char *more, bool with_viewer)
{
    char a[72], v[72], p[72], o[72], yaml[4096];
    harness_token_hash(HARNESS_ADMIN_TOKEN, a);
    harness_token_hash(VIEWER, v);
    harness_token_hash(PUBLISHER, p);
    harness_token_hash(OPERATOR, o);
    snprintf(yaml, sizeof yaml,
             "admin:\n"
             "  listen: \"127.0.0.1:%d\"\n"
             "  connection_timeout: 2s\n"
             "  tokens:\n"
             "    - { name: root, hash: \"%s\", roles: [admin], tenant: \"*\" }\n"
             "%s"
             "    - { name: pub, hash: \"%s\", roles: [publisher], tenant: acme }\n"
             "    - { name: ops, hash: \"%s\", roles: [operator], tenant: \"*\" }\n"
             "%s",
             F.admin_port, a, "", p, o, more ? more : "");
    if (with_viewer) {
        char line[200];
        snprintf(line, sizeof line,
                 "    - { name: acme-view, hash: \"%s\", roles: [viewer], tenant: acme }\n", v);
        /* insert after the root line */
        char *at = strstr(yaml, "    - { name: pub");
        char rest[4096];
        snprintf(rest, sizeof rest, "%s", at);
        snprintf(at, sizeof yaml - (size_t)(at - yaml), "%s%s", line, rest);
    }
    fx_conf(&F, "10-admin.yaml", yaml);
}

static void start(const char *more)
{
    F.admin_port = harness_free_port();
    fx_host_conf(&F, "c1", NULL);
    admin_conf(more, true);
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000), "evbusd did not start");
}

static json_t *call(const char *method, const char *path, const char *token, const char *body,
                    const char *ctype, int *status, char **headers)
{
    char *text = harness_http(F.admin_port, method, path, token, body, ctype, status, headers);
    cr_assert(text, "%s %s: no answer", method, path);
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    return j;
}

/* status and the error's field of a JSON error reply */
static void expect_error(const char *method, const char *path, const char *token, int want,
                         const char *code, const char *field)
{
    int st;
    json_t *j = call(method, path, token, NULL, NULL, &st, NULL);
    cr_expect_eq(st, want, "%s %s: status %d, wanted %d", method, path, st, want);
    cr_assert(j, "%s %s: the error is not JSON", method, path);
    cr_expect_str_eq(json_string_value(json_object_get(j, "error")), code, "%s %s", method, path);
    if (field)
        cr_expect_str_eq(json_string_value(json_object_get(j, "field")), field, "%s %s", method,
                         path);
    cr_expect(json_string_value(json_object_get(j, "message")), "%s %s: no message", method,
              path);
    json_decref(j);
}

static void sighup_and_wait(long long *outcomes)
{
    kill(F.d.pid, SIGHUP);
    for (int i = 0; i < 500; i++) {
        int st;
        json_t *h = call("GET", "/health", NULL, NULL, NULL, &st, NULL);
        json_t *rl = json_object_get(h, "reload");
        long long n = json_integer_value(json_object_get(rl, "ok_total")) +
                      json_integer_value(json_object_get(rl, "failed_total")) +
                      json_integer_value(json_object_get(rl, "partial_total"));
        json_decref(h);
        if (n > *outcomes) {
            *outcomes = n;
            return;
        }
        usleep(20000);
    }
    cr_assert_fail("no reload outcome");
}

Test(admin_api, tokens_roles_and_errors)
{
    start(NULL);
    int st;
    char *hdr;

    /* public */
    json_t *h = call("GET", "/health", NULL, NULL, NULL, &st, NULL);
    cr_expect(st == 200 && h, "GET /health: %d", st);
    json_decref(h);

    /* 401: none, malformed, unknown — with WWW-Authenticate */
    json_t *j = call("GET", "/api/v1/config", NULL, NULL, NULL, &st, &hdr);
    cr_expect_eq(st, 401);
    cr_expect(strstr(hdr, "WWW-Authenticate: Bearer"), "headers: %s", hdr);
    cr_expect_str_eq(json_string_value(json_object_get(j, "field")), "Authorization");
    json_decref(j);
    free(hdr);
    expect_error("GET", "/api/v1/config", "not-a-configured-token", 401, "unauthorized",
                 "Authorization");
    char *body = harness_http(F.admin_port, "GET", "/api/v1/config", NULL, NULL, NULL, &st, NULL);
    free(body);

    /* roles: viewer reads; publisher does not; viewer cannot reload */
    j = call("GET", "/api/v1/config", VIEWER, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 200);
    cr_expect(json_is_array(json_object_get(j, "settings")));
    json_decref(j);
    expect_error("GET", "/api/v1/config", PUBLISHER, 403, "forbidden", "token");
    expect_error("POST", "/api/v1/reload", VIEWER, 403, "forbidden", "token");
    expect_error("POST", "/api/v1/reload", OPERATOR, 403, "forbidden", "token");

    /* admin reloads, synchronously, and learns the generation */
    j = call("POST", "/api/v1/reload", HARNESS_ADMIN_TOKEN, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 200);
    cr_expect_eq(json_integer_value(json_object_get(j, "generation")), 2);
    cr_expect_str_eq(json_string_value(json_object_get(j, "status")), "ok");
    json_decref(j);

    /* a broken file: 422 with file:line:column, the old generation serves */
    fx_conf(&F, "20-broken.yaml", "dlq: { capacity: 0 }\n");
    j = call("POST", "/api/v1/reload", HARNESS_ADMIN_TOKEN, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 422);
    const char *e0 = json_string_value(json_array_get(json_object_get(j, "errors"), 0));
    char want[800];
    snprintf(want, sizeof want, "%s/20-broken.yaml:1:18: dlq.capacity", F.conf);
    cr_expect(e0 && strstr(e0, want), "errors[0]: %s", e0 ? e0 : "(none)");
    json_decref(j);
    char p[700];
    snprintf(p, sizeof p, "%s/20-broken.yaml", F.conf);
    unlink(p);

    /* methods, routes, traversal forms */
    j = call("GET", "/api/v1/reload", HARNESS_ADMIN_TOKEN, NULL, NULL, &st, &hdr);
    cr_expect_eq(st, 405);
    cr_expect(strstr(hdr, "Allow: POST"), "headers: %s", hdr);
    json_decref(j);
    free(hdr);
    expect_error("GET", "/api/v1/nothing", HARNESS_ADMIN_TOKEN, 404, "not_found", "path");
    const char *traversal[] = {"/api/v1/../health", "/api/v1/%2e%2e/health", "//health",
                               "/health/", "/api/v1/config%00", "/api//v1/config",
                               "/api/v1/config/..", "/api/v1/./config"};
    for (size_t i = 0; i < sizeof traversal / sizeof *traversal; i++) {
        body = harness_http(F.admin_port, "GET", traversal[i], HARNESS_ADMIN_TOKEN, NULL, NULL,
                            &st, NULL);
        cr_expect(st == 404 || st == 400, "GET %s: %d", traversal[i], st);
        free(body);
    }

    /* query parameters: unknown ones are refused, by name; bytes that are
     * not printable ASCII never break the JSON of the reply */
    expect_error("GET", "/api/v1/config?verbose=1", VIEWER, 400, "invalid_argument", "verbose");
    expect_error("GET", "/api/v1/config?%ff%fe=1", VIEWER, 400, "invalid_argument", "??");
    expect_error("GET", "/api/v1/dlq?type=%ff", VIEWER, 400, "invalid_argument", "type");

    /* bodies: on a route without one 415; over 1 MiB 413 before it is read */
    j = call("POST", "/api/v1/reload", HARNESS_ADMIN_TOKEN, "{}", NULL, &st, NULL);
    cr_expect_eq(st, 415);
    json_decref(j);
    size_t big = 2u << 20;
    char *huge = malloc(big + 1);
    memset(huge, 'x', big);
    huge[big] = '\0';
    j = call("POST", "/api/v1/reload", HARNESS_ADMIN_TOKEN, huge, NULL, &st, NULL);
    cr_expect_eq(st, 413, "2 MiB body: %d", st);
    cr_expect_str_eq(json_string_value(json_object_get(j, "field")), "body");
    json_decref(j);
    free(huge);

    /* stats: the caller's tenant; another tenant's is 403; handlers list */
    j = call("GET", "/api/v1/stats", VIEWER, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 200);
    cr_expect_str_eq(json_string_value(json_object_get(j, "tenant")), "acme");
    cr_expect_null(json_object_get(j, "by_tenant"), "a tenant token sees no other tenant");
    json_decref(j);
    expect_error("GET", "/api/v1/stats?tenant=globex", VIEWER, 403, "forbidden", "tenant");
    j = call("GET", "/api/v1/stats?tenant=acme", VIEWER, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 200);
    json_decref(j);
    j = call("GET", "/api/v1/stats", OPERATOR, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 200);
    cr_expect(json_is_object(json_object_get(j, "by_tenant")), "a * token sees every tenant");
    json_decref(j);
    j = call("GET", "/api/v1/handlers", VIEWER, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 200);
    json_decref(j);
    h = call("GET", "/health", NULL, NULL, NULL, &st, NULL);
    cr_expect(json_is_object(json_object_get(h, "group_state")), "health has the group_state section");
    /* and "group" stays the consumer group's name (evbusctl status prints it) */
    cr_expect_str_eq(json_string_value(json_object_get(h, "group")), "g");
    json_decref(h);

    /* the audit log: both reloads, by the token's name, newest first */
    json_t *items = NULL;
    j = NULL;
    for (int i = 0; i < 100; i++) {
        json_decref(j);
        j = call("GET", "/api/v1/audit?action=reload", HARNESS_ADMIN_TOKEN, NULL, NULL, &st, NULL);
        items = json_object_get(j, "items");
        if (json_array_size(items) >= 2)
            break;
        usleep(20000);
    }
    cr_assert_eq(json_array_size(items), 2, "audit: %zu records", json_array_size(items));
    json_t *a0 = json_array_get(items, 0), *a1 = json_array_get(items, 1);
    cr_expect_str_eq(json_string_value(json_object_get(a0, "token")), "root");
    cr_expect_str_eq(json_string_value(json_object_get(a0, "action")), "reload");
    cr_expect(!strncmp(json_string_value(json_object_get(a0, "result")), "error", 5));
    cr_expect_str_eq(json_string_value(json_object_get(a1, "result")), "ok");
    json_decref(j);
    j = call("GET", "/api/v1/audit?limit=1", HARNESS_ADMIN_TOKEN, NULL, NULL, &st, NULL);
    const char *next = json_string_value(json_object_get(j, "next_cursor"));
    cr_assert(next, "no next_cursor");
    char path[600];
    snprintf(path, sizeof path, "/api/v1/audit?limit=1&cursor=%s", next);
    json_t *page2 = call("GET", path, HARNESS_ADMIN_TOKEN, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 200);
    cr_expect_eq(json_array_size(json_object_get(page2, "items")), 1);
    json_decref(page2);
    /* the cursor is bound to its tenant: the acme viewer cannot use it (403
     * first: a viewer does not read the audit log at all) */
    page2 = call("GET", path, VIEWER, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 403);
    json_decref(page2);
    path[strlen(path) - 3] ^= 1; /* forged */
    expect_error("GET", path, HARNESS_ADMIN_TOKEN, 400, "invalid_argument", "cursor");
    json_decref(j);
    j = NULL;

    /* bodies on a route that takes one: type, syntax, depth, duplicates,
     * schema — each a 400 or 415 naming the field */
    j = call("POST", "/api/v1/dlq/redrive", OPERATOR, "{\"filter\":{}}", "text/plain", &st, NULL);
    cr_expect_eq(st, 415);
    cr_expect_str_eq(json_string_value(json_object_get(j, "field")), "Content-Type");
    json_decref(j);
    const char *bad_bodies[][2] = {
        {"{\"filter\": {", "body"},
        {"[1, 2", "body"},
        {"{\"filter\":{},\"filter\":{}}", "body"},
        {"{\"filter\":{\"type\":7}}", "filter.type"},
        {"{\"filter\":{},\"dry_run\":\"yes\"}", "dry_run"},
        {"{\"filter\":{},\"extra\":1}", "extra"},
    };
    for (size_t i = 0; i < sizeof bad_bodies / sizeof *bad_bodies; i++) {
        j = call("POST", "/api/v1/dlq/redrive", OPERATOR, bad_bodies[i][0], NULL, &st, NULL);
        cr_expect_eq(st, 400, "%s: %d", bad_bodies[i][0], st);
        cr_expect_str_eq(json_string_value(json_object_get(j, "field")), bad_bodies[i][1], "%s",
                         bad_bodies[i][0]);
        json_decref(j);
    }
    char deep[200] = "";
    for (int i = 0; i < 40; i++)
        strcat(deep, "[");
    for (int i = 0; i < 40; i++)
        strcat(deep, "]");
    char nested[300];
    snprintf(nested, sizeof nested, "{\"filter\":{},\"x\":%s}", deep);
    j = call("POST", "/api/v1/dlq/redrive", OPERATOR, nested, NULL, &st, NULL);
    cr_expect_eq(st, 400);
    cr_expect(strstr(json_string_value(json_object_get(j, "message")), "deeper"));
    json_decref(j);
    j = NULL;

    /* the token never reaches the log; its name does */
    char *log = harness_read_file(F.log);
    cr_expect(log && !strstr(log, HARNESS_ADMIN_TOKEN) && !strstr(log, VIEWER));
    free(log);

    /* the admin's own metrics */
    body = harness_http(F.admin_port, "GET", "/metrics", NULL, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 200);
    cr_expect(strstr(body, "evbus_admin_requests_total{route=\"config\",code=\"401\"} 3"),
              "%s", body);
    cr_expect(strstr(body, "evbus_admin_requests_total{route=\"reload\",code=\"200\"} 1"));
    cr_expect(strstr(body, "evbus_auth_failures_total{reason=\"unknown\"} 1"));
    cr_expect(strstr(body, "evbus_auth_failures_total{reason=\"missing\"} 2"));
    cr_expect(strstr(body, "evbus_auth_failures_total{reason=\"role\"} 4"));
    free(body);
}

Test(admin_api, reload_changes_tokens_read_only_rate_and_metrics_guard)
{
    start(NULL);
    int st;
    long long outcomes = 0;
    json_t *h = call("GET", "/health", NULL, NULL, NULL, &st, NULL);
    json_decref(h);

    /* revoke the viewer: it stops working with the reload */
    json_t *j = call("GET", "/api/v1/config", VIEWER, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 200);
    json_decref(j);
    admin_conf(NULL, false);
    sighup_and_wait(&outcomes);
    expect_error("GET", "/api/v1/config", VIEWER, 401, "unauthorized", "Authorization");

    /* read_only: mutating routes are refused whoever calls */
    admin_conf("  read_only: true\n", false);
    sighup_and_wait(&outcomes);
    expect_error("POST", "/api/v1/reload", HARNESS_ADMIN_TOKEN, 403, "forbidden",
                 "admin.read_only");
    j = call("GET", "/api/v1/config", HARNESS_ADMIN_TOKEN, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 200, "reads still work under read_only");
    json_decref(j);

    /* metrics behind a token */
    admin_conf("  metrics: { require_token: true }\n", false);
    sighup_and_wait(&outcomes);
    char *body = harness_http(F.admin_port, "GET", "/metrics", NULL, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 401);
    free(body);
    body = harness_http(F.admin_port, "GET", "/metrics", OPERATOR, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 200);
    free(body);
    body = harness_http(F.admin_port, "GET", "/metrics", PUBLISHER, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 403);
    free(body);

    /* rate limit: a burst of 3, then 429 with Retry-After */
    admin_conf("  rate_limit: { per_token_per_s: 0.2, burst: 3 }\n", false);
    sighup_and_wait(&outcomes);
    int codes[5];
    char *hdr = NULL;
    for (int i = 0; i < 5; i++) {
        free(hdr);
        hdr = NULL;
        body = harness_http(F.admin_port, "GET", "/api/v1/config", OPERATOR, NULL, NULL,
                            &codes[i], &hdr);
        free(body);
    }
    cr_expect(codes[0] == 200 && codes[1] == 200 && codes[2] == 200, "%d %d %d", codes[0],
              codes[1], codes[2]);
    cr_expect_eq(codes[3], 429);
    cr_expect_eq(codes[4], 429);
    cr_expect(hdr && strstr(hdr, "Retry-After: "), "headers: %s", hdr ? hdr : "");
    free(hdr);
    /* another token has its own bucket */
    body = harness_http(F.admin_port, "GET", "/api/v1/config", HARNESS_ADMIN_TOKEN, NULL, NULL,
                        &st, NULL);
    cr_expect_eq(st, 200);
    free(body);
}

static int connect_admin(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)F.admin_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

Test(admin_api, idle_and_chunked_uploads)
{
    start(NULL);
    /* slowloris: half a request line, then nothing; closed after ~2 s */
    int fd = connect_admin();
    cr_assert_eq(write(fd, "GET /health HT", 14), 14);
    long long t0 = harness_now_ms();
    char buf[256];
    ssize_t got = read(fd, buf, sizeof buf);
    long long waited = harness_now_ms() - t0;
    cr_expect(got <= 0, "the idle connection got an answer");
    cr_expect(waited < 8000, "the idle connection stayed open %lld ms", waited);
    close(fd);

    /* a chunked upload (no Content-Length) over 1 MiB: 413 */
    fd = connect_admin();
    char head[512];
    int n = snprintf(head, sizeof head,
                     "POST /api/v1/reload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                     "Connection: close\r\n\r\n",
                     HARNESS_ADMIN_TOKEN);
    cr_assert_eq(write(fd, head, (size_t)n), n);
    got = read(fd, buf, sizeof buf - 1);
    cr_assert(got > 0, "no answer to a chunked upload");
    buf[got] = '\0';
    /* reload takes no body: refused before any chunk is read */
    cr_expect(strstr(buf, " 415 "), "%s", buf);
    close(fd);
}

Test(admin_api, plaintext_guard_is_a_config_error)
{
    char *evbusd = harness_build_path("host/daemon/evbusd");
    fx_host_conf(&F, "c1", NULL);
    fx_conf(&F, "10-admin.yaml", "admin:\n  listen: \"0.0.0.0:18089\"\n");
    char *argv[] = {evbusd, "-c", F.conf, "--check-config", NULL};
    char *o = NULL, *e = NULL;
    cr_expect_eq(harness_run(argv, NULL, NULL, &o, &e, 20000), 2);
    char want[800];
    snprintf(want, sizeof want, "%s/10-admin.yaml:2:11: admin.listen: '0.0.0.0:18089' is not a "
             "loopback address", F.conf);
    cr_expect(e && strstr(e, want), "stderr: %s", e ? e : "");
    free(o);
    free(e);
    fx_conf(&F, "10-admin.yaml",
            "admin:\n  listen: \"0.0.0.0:18089\"\n  allow_plaintext: true\n");
    cr_expect_eq(harness_run(argv, NULL, NULL, &o, &e, 20000), 0, "%s", e);
    free(o);
    free(e);
    /* a bad token entry names its position */
    fx_conf(&F, "10-admin.yaml",
            "admin:\n  tokens:\n    - { name: x, hash: \"sha256:12\", roles: [boss], "
            "tenant: \"*\" }\n");
    cr_expect_eq(harness_run(argv, NULL, NULL, &o, &e, 20000), 2);
    snprintf(want, sizeof want, "%s/10-admin.yaml:3:24: hash: expected", F.conf);
    cr_expect(e && strstr(e, want), "stderr: %s", e ? e : "");
    snprintf(want, sizeof want, "%s/10-admin.yaml:3:45: roles: unknown role 'boss'", F.conf);
    cr_expect(e && strstr(e, want), "stderr: %s", e ? e : "");
    free(o);
    free(e);
    free(evbusd);
}

Test(admin_api, pause_and_resume_a_handler)
{
    F.admin_port = harness_free_port();
    char plug[1024], out[700];
    fx_path(&F, "rec.tsv", out, sizeof out);
    snprintf(plug, sizeof plug,
             "plugins:\n  - name: rec\n    plugin: %s\n    config: { out: %s }\n",
             fx_plugin("plugins/testkit/testkit.so"), out);
    fx_host_conf(&F, "c1", plug);
    admin_conf(NULL, true);
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    int st;
    expect_error("POST", "/api/v1/handlers/rec/pause", VIEWER, 403, "forbidden", "token");
    expect_error("POST", "/api/v1/handlers/nope/pause", OPERATOR, 404, "not_found", "instance");
    json_t *j = call("POST", "/api/v1/handlers/rec/pause", OPERATOR, "{\"reason\": 5}", NULL,
                     &st, NULL);
    cr_expect_eq(st, 400);
    cr_expect_str_eq(json_string_value(json_object_get(j, "field")), "reason");
    json_decref(j);
    j = call("POST", "/api/v1/handlers/rec/pause", OPERATOR, "{\"reason\": \"downstream down\"}",
             NULL, &st, NULL);
    cr_expect_eq(st, 200);
    cr_expect_str_eq(json_string_value(json_object_get(j, "state")), "paused");
    cr_expect_str_eq(json_string_value(json_object_get(json_object_get(j, "paused"), "by")),
                     "ops");
    json_decref(j);
    j = call("GET", "/api/v1/handlers", VIEWER, NULL, NULL, &st, NULL);
    json_t *first = json_array_get(json_object_get(j, "handlers"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(first, "instance")), "rec");
    cr_expect_str_eq(json_string_value(json_object_get(first, "state")), "paused");
    cr_expect_str_eq(json_string_value(json_object_get(json_object_get(first, "paused"),
                                                       "reason")),
                     "downstream down");
    json_decref(j);
    j = call("POST", "/api/v1/handlers/rec/resume", OPERATOR, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 200);
    cr_expect_str_eq(json_string_value(json_object_get(j, "state")), "running");
    json_decref(j);
}

/* HTTPS from admin.tls (libmicrohttpd's GnuTLS): a self-signed pair made
 * with the openssl tool, a request through curl, and the same port
 * refusing plain HTTP. */
Test(admin_api, tls_serves_https_and_nothing_else)
{
    char key[700], crt[700];
    fx_path(&F, "admin.key", key, sizeof key);
    fx_path(&F, "admin.crt", crt, sizeof crt);
    char *gen[] = {"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                   "-out", crt, "-days", "1", "-subj", "/CN=127.0.0.1", NULL};
    char *o = NULL, *e = NULL;
    cr_assert_eq(harness_run(gen, NULL, NULL, &o, &e, 60000), 0, "openssl: %s", e ? e : "");
    free(o);
    free(e);
    char more[1600];
    snprintf(more, sizeof more, "  tls: { cert: \"%s\", key: \"%s\" }\n", crt, key);
    start(more);
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/api/v1/config", F.admin_port);
    char auth[200];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", VIEWER);
    char *curl[] = {"curl", "-sS", "--cacert", crt, "-H", auth, "-o", "/dev/null", "-w",
                    "%{http_code}", url, NULL};
    cr_assert_eq(harness_run(curl, NULL, NULL, &o, &e, 20000), 0, "curl: %s", e ? e : "");
    cr_expect_str_eq(o, "200", "HTTPS status %s", o);
    free(o);
    free(e);
    /* plain HTTP on the TLS port gets no HTTP answer */
    int st;
    char *body = harness_http(F.admin_port, "GET", "/health", NULL, NULL, NULL, &st, NULL);
    cr_expect(st != 200, "plain HTTP was answered %d", st);
    free(body);
}

/* Settings are read by viewers of any tenant: a password in a URL is not
 * theirs to see. */
Test(admin_api, config_never_shows_a_password)
{
    F.admin_port = harness_free_port();
    fx_host_conf(&F, "c1", "postgres: { url: \"postgresql://evbus:sekrit-pw@127.0.0.1:1/evbus\" }\n");
    admin_conf(NULL, true);
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    int st;
    char *body = harness_http(F.admin_port, "GET", "/api/v1/config", VIEWER, NULL, NULL, &st,
                              NULL);
    cr_assert_eq(st, 200);
    cr_expect(!strstr(body, "sekrit-pw"), "the password is shown: %s", body);
    cr_expect(strstr(body, "postgresql://evbus:***@127.0.0.1:1/evbus"), "%s", body);
    free(body);
    /* nor does evbusctl config show, from the files or from evbusd's record */
    char *ctl = harness_build_path("host/ctl/evbusctl"), *o, *e;
    char *files[] = {ctl, "-c", F.conf, "config", "show", "--files", NULL};
    char *json[] = {ctl, "-c", F.conf, "config", "show", "--json", NULL};
    char *const *runs[] = {files, json};
    for (size_t k = 0; k < 2; k++) {
        cr_assert_eq(harness_run(runs[k], NULL, NULL, &o, &e, 20000), 0, "%s", e);
        cr_expect(!strstr(o, "sekrit-pw"), "the password is shown: %s", o);
        cr_expect(strstr(o, "postgresql://evbus:***@127.0.0.1:1/evbus"), "%s", o);
        free(o);
        free(e);
    }
    free(ctl);
}
