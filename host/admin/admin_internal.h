/*
 * admin_internal — what the admin server's own files share (admin.c,
 * auth.c, schemas.c, the route modules' background jobs).  Route modules
 * use api.h only.
 */
#ifndef EVBUS_ADMIN_INTERNAL_H
#define EVBUS_ADMIN_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "admin/admin.h"
#include "admin/api.h"
#include "jsonschema/jsonschema.h"

#define ADMIN_POOL_MAX 64
#define ADMIN_REQ_STATS_MAX 512

typedef enum admin_auth_failure {
    ADMIN_AUTH_MISSING = 0, /* no Authorization header */
    ADMIN_AUTH_MALFORMED,   /* not "Bearer <token>" */
    ADMIN_AUTH_UNKNOWN,     /* no token has this hash */
    ADMIN_AUTH_ROLE,        /* the token lacks the route's role */
    ADMIN_AUTH_READ_ONLY,   /* a mutating route under admin.read_only */
    ADMIN_AUTH_RATE,        /* the token's rate limit */
    ADMIN_AUTH_TENANT,      /* a tenant token asked for another tenant */
    ADMIN_AUTH_FAILURE_KINDS
} admin_auth_failure_t;

typedef struct rate_bucket {
    char name[65];
    double tokens;
    int64_t last_ms;
} rate_bucket_t;

/* One cached GET reply (see admin_route_t.cache_ms). */
typedef struct cache_entry {
    char *key;          /* route \0 tenant \0 query, as one string with separators */
    char *body;         /* NULL while loading */
    const char *ctype;
    unsigned status;
    int64_t expires_ms; /* monotonic */
    bool loading;
} cache_entry_t;

#define ADMIN_CACHE_MAX 256

struct admin_jobs;
struct audit;

struct admin {
    void *mhd; /* struct MHD_Daemon * */
    engine_t *eng;
    atomic_int *reloads;
    int port;
    char *redis_url, *stream; /* restart settings: fixed for the server's life */
    char *cluster;            /* redis.cluster's seeds (NULL: the one server of redis_url):
                                 the pooled clients are cluster clients then */
    unsigned partitions;      /* restart setting too */
    char *tls_cert, *tls_key;
    unsigned char cursor_key[32];

    pthread_mutex_t pool_mu; /* guards both pools */
    evbus_client_t *redis_pool[ADMIN_POOL_MAX];
    size_t n_redis;
    PGconn *pg_pool[ADMIN_POOL_MAX];
    size_t n_pg;

    pthread_mutex_t stats_mu; /* guards req_stats */
    struct {
        const char *route;
        unsigned code;
        uint64_t count;
    } req_stats[ADMIN_REQ_STATS_MAX];
    size_t n_req_stats;
    atomic_uint_fast64_t auth_failures[ADMIN_AUTH_FAILURE_KINDS];

    pthread_mutex_t rate_mu; /* guards the buckets */
    rate_bucket_t *buckets;
    size_t n_buckets;

    pthread_mutex_t cache_mu; /* guards the cache; cache_cv signals a finished load */
    pthread_cond_t cache_cv;
    cache_entry_t cache[ADMIN_CACHE_MAX];
    size_t n_cache;
    int nice;                 /* admin.nice, applied to each pool thread once */

    js_registry_t *schemas; /* request schemas, compiled at start; read-only after */
    const char *schema_names[32];
    const js_schema_t *schema_ptrs[32];
    size_t n_schemas;

    struct admin_jobs *jobs; /* background jobs (DLQ re-drives): routes_dlq.c */
    struct audit *audit;
};

/* auth.c: the token, its roles, read_only, the rate limit.  true: go on;
 * false: r's reply (401/403/429) is set. */
bool admin__authorize(admin_t *a, admin_req_t *r, const admin_route_t *route,
                      const char *authorization);
void admin__rate_free(admin_t *a);
void admin__auth_failure(admin_t *a, admin_auth_failure_t why);

/* schemas.c: the embedded request schemas (host/admin/schemas/). */
int admin__schemas_load(admin_t *a, char *err, size_t errlen);
const js_schema_t *admin__schema(admin_t *a, const char *name);
void admin__schemas_free(admin_t *a);

/* /metrics: the process metrics plus the admin server's own. */
char *admin__metrics_text(admin_t *a);

/* routes_dlq.c: the re-drive jobs' thread. */
int admin__jobs_start(admin_t *a, const evbus_config_t *cfg, char *err, size_t errlen);
void admin__jobs_stop(admin_t *a);

/* audit glue (auth.c until the audit module lands) */
struct audit *admin__audit_start(const evbus_config_t *cfg, char *err, size_t errlen);
void admin__audit_stop(struct audit *au);

#endif
