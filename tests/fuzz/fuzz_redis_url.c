/*
 * fuzz_redis_url — the Redis URL parser behind evbus_client_new() and
 * evbus_redis_connect() (host/client/client.c parse_url; only
 * evbus_client_new is driven: it parses without connecting).  An accepted
 * URL must give what evbus_client.h documents: a TCP host (non-empty, port
 * 1..65535) or an absolute unix socket path, a database 0..1000000; a
 * refused one a message naming the problem.
 */
#include "client/client_internal.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = fuzz_strndup((const char *)data, size);
    char err[512] = "";
    evbus_client_t *c = evbus_client_new(url, "fuzz", err, sizeof err);
    if (c) {
        bool tcp = c->host != NULL, unix_sock = c->unix_path != NULL;
        if (tcp == unix_sock)
            fuzz_fail("\"%s\": host %s, unix path %s", url, c->host ? c->host : "-",
                      c->unix_path ? c->unix_path : "-");
        if (tcp && (!c->host[0] || c->port < 1 || c->port > 65535))
            fuzz_fail("\"%s\": host \"%s\" port %d", url, c->host, c->port);
        if (unix_sock && c->unix_path[0] != '/')
            fuzz_fail("\"%s\": unix path \"%s\" is not absolute", url, c->unix_path);
        if (c->db < 0 || c->db > 1000000)
            fuzz_fail("\"%s\": db %d", url, c->db);
        if (c->user && !c->password)
            fuzz_fail("\"%s\": a user without a password", url);
        evbus_client_free(c);
    } else if (!err[0]) {
        fuzz_fail("\"%s\" refused without a message", url);
    }
    free(url);
    return 0;
}
