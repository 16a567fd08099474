/*
 * routes_console — the operator console: static files embedded in the
 * binary (console_files.h), public like /health (the files are not
 * secret; the console's JavaScript sends the operator's bearer token to
 * /api/v1, which enforces everything).
 *
 * A request names a file exactly: the name is looked up in the embedded
 * table and nothing else, so no request reaches the file system and no
 * path form ("..", "%2e%2e", "//", "%00") can name anything but a table
 * row.  Each reply carries the file's ETag (304 on a matching
 * If-None-Match) and the console's own Content-Security-Policy, which
 * allows the console's own scripts, styles and API calls, and nothing
 * inline.
 */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin_internal.h"
#include "admin/console_files.h"

#define CONSOLE_CSP                                                                                \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

static const console_file_t *console_lookup(const char *name)
{
    for (size_t i = 0; i < admin_console_files_count; i++)
        if (strcmp(admin_console_files[i].name, name) == 0)
            return &admin_console_files[i];
    return NULL;
}

/* If-None-Match: "*" or a list holding the file's tag (weak or strong). */
static bool etag_matches(const char *header, const char *etag)
{
    if (!header)
        return false;
    if (strcmp(header, "*") == 0)
        return true;
    size_t n = strlen(etag);
    for (const char *p = strstr(header, etag); p; p = strstr(p + 1, etag))
        if (p[n] == '\0' || p[n] == ',' || p[n] == ' ')
            return true;
    return false;
}

static int console_send(admin_req_t *r, const char *name)
{
    const console_file_t *f = console_lookup(name);
    if (!f)
        return admin_error(r, 404, "not_found", "path", "no such console file");
    r->csp = CONSOLE_CSP;
    r->etag = f->etag;
    const char *inm = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "If-None-Match");
    if (etag_matches(inm, f->etag))
        return admin_text(r, 304, f->ctype, NULL);
    return admin_text(r, 200, f->ctype, strdup(f->text));
}

static int console_index(admin_req_t *r) { return console_send(r, "index.html"); }

static int console_file(admin_req_t *r) { return console_send(r, r->params[0]); }

const admin_route_t admin_routes_console[] = {
    {"GET", "/console", ADMIN_PUBLIC, false, NULL, NULL, "console", console_index, 0},
    {"GET", "/console/", ADMIN_PUBLIC, false, NULL, NULL, "console", console_index, 0},
    {"GET", "/console/{file}", ADMIN_PUBLIC, false, NULL, NULL, "console", console_file, 0},
    {0},
};
