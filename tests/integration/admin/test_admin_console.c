/*
 * The console's files as evbusd serves them (routes_console.c): every
 * embedded file at /console/NAME with its type, an ETag and 304 on a
 * matching If-None-Match, the console's Content-Security-Policy (no
 * inline script or style, no eval) with the API's other strict headers,
 * public (no token needed), and no path form — "..", "%2e%2e", "//",
 * "%00", a subfolder — reaching anything but an embedded file by its
 * exact name.  GET /api/v1/whoami tells a token its roles.  Real evbusd.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "fixture.h"

static fx_t F;

#define VIEWER "evb_test_console_viewer_0123456789"

static void setup(void) { fx_start(&F, false); }
static void teardown(void) { fx_stop(&F); }

TestSuite(admin_console, .init = setup, .fini = teardown, .timeout = 120);

static void start(void)
{
    char v[72], yaml[1024];
    harness_token_hash(VIEWER, v);
    F.admin_port = harness_free_port();
    fx_host_conf(&F, "c1", NULL);
    snprintf(yaml, sizeof yaml,
             "admin:\n  listen: \"127.0.0.1:%d\"\n  tokens:\n"
             "    - { name: acme-view, hash: \"%s\", roles: [viewer], tenant: acme }\n",
             F.admin_port, v);
    fx_conf(&F, "10-admin.yaml", yaml);
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000), "evbusd did not start");
}

/* A raw request, the path sent exactly as given; the whole answer
 * (status line, headers, body) malloc'd, and *status. */
static char *raw_get(const char *path, const char *extra_headers, int *status)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)F.admin_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char req[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n",
                     path, extra_headers ? extra_headers : "");
    cr_assert_eq(write(fd, req, (size_t)n), n);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    ssize_t got;
    while ((got = read(fd, out + len, cap - len - 1)) > 0) {
        len += (size_t)got;
        if (len + 1 == cap)
            out = realloc(out, cap *= 2);
    }
    out[len] = '\0';
    close(fd);
    *status = -1;
    sscanf(out, "HTTP/1.%*d %d", status);
    return out;
}

/* The value of header name in a raw answer, copied to out. */
static bool header(const char *answer, const char *name, char *out, size_t outlen)
{
    const char *end = strstr(answer, "\r\n\r\n");
    size_t nl = strlen(name);
    for (const char *p = strstr(answer, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
            const char *v = p + 3 + nl;
            while (*v == ' ')
                v++;
            snprintf(out, outlen, "%.*s", (int)strcspn(v, "\r"), v);
            return true;
        }
    }
    return false;
}

Test(admin_console, files_have_their_type_etag_and_the_console_csp)
{
    start();
    static const struct {
        const char *path, *type, *needle;
    } files[] = {
        {"/console/", "text/html; charset=utf-8", "<script type=\"module\" src=\"/console/app.js\">"},
        {"/console", "text/html; charset=utf-8", "<dialog id=\"confirm\""},
        {"/console/index.html", "text/html; charset=utf-8", "Skip to content"},
        {"/console/app.js", "text/javascript; charset=utf-8", "import"},
        {"/console/api.js", "text/javascript; charset=utf-8", "checkShape"},
        {"/console/style.css", "text/css; charset=utf-8", "prefers-color-scheme"},
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        int st;
        char *a = raw_get(files[i].path, NULL, &st);
        char v[512];
        cr_expect_eq(st, 200, "GET %s: %d", files[i].path, st);
        cr_expect(header(a, "Content-Type", v, sizeof v) && !strcmp(v, files[i].type),
                  "GET %s: type %s", files[i].path, v);
        cr_expect(strstr(a, files[i].needle), "GET %s: not the file", files[i].path);
        cr_assert(header(a, "Content-Security-Policy", v, sizeof v));
        cr_expect_str_eq(v, "default-src 'self'; script-src 'self'; style-src 'self'; img-src "
                            "'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri "
                            "'none'; form-action 'self'");
        cr_expect(!strstr(v, "unsafe"), "%s", v);
        cr_expect(header(a, "X-Content-Type-Options", v, sizeof v) && !strcmp(v, "nosniff"));
        cr_expect(header(a, "Referrer-Policy", v, sizeof v) && !strcmp(v, "no-referrer"));
        cr_expect(header(a, "Cache-Control", v, sizeof v) && !strcmp(v, "no-cache"));
        char etag[128], cond[200];
        cr_assert(header(a, "ETag", etag, sizeof etag), "GET %s: no ETag", files[i].path);
        cr_expect(etag[0] == '"' && strlen(etag) == 34, "ETag %s", etag);
        free(a);

        snprintf(cond, sizeof cond, "If-None-Match: %s\r\n", etag);
        a = raw_get(files[i].path, cond, &st);
        cr_expect_eq(st, 304, "GET %s with its ETag: %d", files[i].path, st);
        free(a);
        snprintf(cond, sizeof cond, "If-None-Match: \"other\", %s\r\n", etag);
        a = raw_get(files[i].path, cond, &st);
        cr_expect_eq(st, 304, "GET %s with a list holding its ETag: %d", files[i].path, st);
        free(a);
        a = raw_get(files[i].path, "If-None-Match: \"stale\"\r\n", &st);
        cr_expect_eq(st, 200, "GET %s with a stale ETag: %d", files[i].path, st);
        free(a);
    }
}

Test(admin_console, no_path_form_reaches_anything_but_an_embedded_file)
{
    start();
    const char *paths[] = {
        "/console/../api/v1/config", "/console/..", "/console/%2e%2e", "/console/%2E%2E/health",
        "/console/..%2fapi%2fv1%2fconfig", "/console/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/console//app.js", "/console//", "/console/./app.js", "/console/app.js%00",
        "/console/app.js%00.png", "/console/%00", "/console/app.js/", "/console/sub/app.js",
        "/console/.", "/console/%2fetc%2fpasswd", "/console/..%5c..%5capp.js",
        "/console/APP.JS", "/console/app.js.bak", "/console/meson.build",
        "/console/embed_console.py", "/console/admin.c",
    };
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        int st;
        char *a = raw_get(paths[i], NULL, &st);
        cr_expect(st == 404 || st == 400, "GET %s: %d", paths[i], st);
        cr_expect(!strstr(a, "root:") && !strstr(a, "\"settings\"") && !strstr(a, "import "),
                  "GET %s leaked something", paths[i]);
        char v[256];
        /* errors keep the API's strict policy */
        cr_expect(header(a, "Content-Security-Policy", v, sizeof v) &&
                      !strcmp(v, "default-src 'none'; frame-ancestors 'none'"),
                  "GET %s: CSP %s", paths[i], v);
        free(a);
    }
    /* a query string is refused like on every route without parameters */
    int st;
    char *a = raw_get("/console/app.js?v=1", NULL, &st);
    cr_expect_eq(st, 400);
    free(a);
    /* other methods: 405 */
    a = harness_http(F.admin_port, "POST", "/console/app.js", NULL, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 405);
    free(a);
}

Test(admin_console, api_replies_keep_the_strict_policy_and_whoami_tells_the_roles)
{
    start();
    int st;
    char *hdr = NULL;
    char *body = harness_http(F.admin_port, "GET", "/api/v1/whoami", VIEWER, NULL, NULL, &st, &hdr);
    cr_assert_eq(st, 200, "%s", body);
    json_t *j = json_loads(body, 0, NULL);
    cr_assert(j);
    cr_expect_str_eq(json_string_value(json_object_get(j, "token")), "acme-view");
    cr_expect_str_eq(json_string_value(json_object_get(j, "tenant")), "acme");
    cr_expect_str_eq(json_string_value(json_array_get(json_object_get(j, "roles"), 0)), "viewer");
    cr_expect_eq(json_array_size(json_object_get(j, "roles")), 1);
    json_decref(j);
    cr_expect(strstr(hdr, "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'"),
              "%s", hdr);
    cr_expect(strstr(hdr, "Cache-Control: no-store"), "%s", hdr);
    cr_expect(!strstr(hdr, "ETag"), "%s", hdr);
    free(body);
    free(hdr);
    body = harness_http(F.admin_port, "GET", "/api/v1/whoami", NULL, NULL, NULL, &st, NULL);
    cr_expect_eq(st, 401);
    free(body);
}
