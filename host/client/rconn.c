/*
 * rconn — see rconn.h.
 */
#include "client/rconn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/cluster.h"
#include "client/evbus_client.h"

struct evbus_rconn {
    char *url;
    evbus_cluster_t *cl; /* a cluster, or NULL: one server at url */
    redisContext *one;
    int connect_ms, command_ms;
};

evbus_rconn_t *evbus_rconn_new(const char *url, const char *cluster, int connect_ms,
                               int command_ms, char *err, size_t errlen)
{
    evbus_rconn_t *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->connect_ms = connect_ms;
    r->command_ms = command_ms;
    if (cluster) {
        evbus_cluster_opts_t o = {.connect_timeout_ms = connect_ms,
                                  .command_timeout_ms = command_ms};
        r->cl = evbus_cluster_new(cluster, &o, err, errlen);
        if (!r->cl) {
            free(r);
            return NULL;
        }
    } else if (!(r->url = strdup(url ? url : ""))) {
        snprintf(err, errlen, "out of memory");
        free(r);
        return NULL;
    }
    return r;
}

void evbus_rconn_free(evbus_rconn_t *r)
{
    if (!r)
        return;
    if (r->one)
        redisFree(r->one);
    evbus_cluster_free(r->cl);
    free(r->url);
    free(r);
}

bool evbus_rconn_is_cluster(const evbus_rconn_t *r) { return r->cl != NULL; }

void evbus_rconn_set_connect_ms(evbus_rconn_t *r, int connect_ms)
{
    r->connect_ms = connect_ms; /* the cluster handle keeps its own: fixed at start */
}

redisContext *evbus_rconn_get(evbus_rconn_t *r, const char *key, char *err, size_t errlen)
{
    if (r->cl)
        return evbus_cluster_slot_conn(
            r->cl, key ? evbus_cluster_keyslot(key, strlen(key)) : 0, err, errlen);
    if (r->one && r->one->err) {
        redisFree(r->one);
        r->one = NULL;
    }
    if (!r->one)
        r->one = evbus_redis_connect(r->url, r->connect_ms, r->command_ms, err, errlen);
    return r->one;
}

void evbus_rconn_reset(evbus_rconn_t *r)
{
    if (r->cl) {
        evbus_cluster_reset(r->cl);
    } else if (r->one) {
        redisFree(r->one);
        r->one = NULL;
    }
}

bool evbus_rconn_is_redirect(const redisReply *r) { return evbus_cluster_reply_is_redirect(r); }
