/* admin — see admin.h.  Deliberately tiny: no routing framework. */
#include "admin/admin.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/metrics.h"

struct admin {
    struct MHD_Daemon *mhd;
    engine_t *eng;
    atomic_int *reloads;
    int port;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                             char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", ctype);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const char *error,
                                   const char *field)
{
    json_t *o = json_pack("{s:s, s:s}", "error", error, "field", field);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return reply(c, status, "application/json", body);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    (void)version;
    (void)upload;
    admin_t *a = cls;
    if (*con_cls == NULL) { /* first call: headers only */
        *con_cls = a;
        return MHD_YES;
    }
    if (*upload_size) { /* bodies are ignored by every route */
        *upload_size = 0;
        return MHD_YES;
    }
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    if (strcmp(url, "/health") == 0) {
        if (!get)
            return reply_error(c, 405, "method not allowed: use GET", "method");
        json_t *h = engine_health(a->eng);
        unsigned status = strcmp(json_string_value(json_object_get(h, "status")), "unhealthy") == 0
                              ? 503 : 200;
        char *body = json_dumps(h, JSON_COMPACT);
        json_decref(h);
        return reply(c, status, "application/json", body);
    }
    if (strcmp(url, "/metrics") == 0) {
        if (!get)
            return reply_error(c, 405, "method not allowed: use GET", "method");
        char *body = metrics_render();
        return reply(c, 200, "text/plain; version=0.0.4", body ? body : strdup(""));
    }
    if (strcmp(url, "/config") == 0) {
        /* what is in force: the serving generation's settings, with the
         * value the files ask for on each setting that waits for a restart */
        if (!get)
            return reply_error(c, 405, "method not allowed: use GET", "method");
        generation_t *g = engine_current(a->eng);
        json_t *h = engine_health(a->eng);
        json_t *o = json_pack("{s:I, s:O, s:o}", "generation", (json_int_t)g->number, "reload",
                              json_object_get(h, "reload"), "settings",
                              config_settings_json(g->cfg, &g->pending_restart));
        json_decref(h);
        generation_unref(g);
        char *body = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        return reply(c, 200, "application/json", body);
    }
    if (strcmp(url, "/reload") == 0) {
        if (!post)
            return reply_error(c, 405, "method not allowed: use POST", "method");
        atomic_fetch_add(a->reloads, 1);
        return reply(c, 202, "application/json", strdup("{\"reload\":\"scheduled\"}"));
    }
    return reply_error(c, 404, "no such endpoint", "path");
}

admin_t *admin_start(const char *listen, engine_t *e, atomic_int *reload_requests, char *err,
                     size_t errlen)
{
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
    admin_t *a = calloc(1, sizeof *a);
    a->eng = e;
    a->reloads = reload_requests;
    a->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL,
                              NULL, handle, a, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (!a->mhd) {
        snprintf(err, errlen, "admin.listen '%s': cannot listen (address in use?)", listen);
        free(a);
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
    MHD_stop_daemon(a->mhd);
    free(a);
}
