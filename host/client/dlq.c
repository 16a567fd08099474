/*
 * dlq — reading and managing the dead-letter stream (wire format in
 * evbus_client.h).  Only the daemon writes dead letters; this file lists,
 * shows, retries, deletes and purges them.
 *
 * Filtering (tenant, type) happens here, not in Redis: streams have no
 * secondary index, and the DLQ is capped by the daemon (dlq.capacity), so
 * a scan newest-first in pages of SCAN_PAGE entries stays bounded.  Tenant
 * checks are made on every path so another tenant's entry is
 * indistinguishable from a missing one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

enum { SCAN_PAGE = 500, XDEL_CHUNK = 500, RETRY_WATCH_ATTEMPTS = 10 };

const char *evbus_dlq_reason_name(evbus_dlq_reason_t r)
{
    static const char *const names[] = {
        NULL,
#define NAME(id, name, meaning) name,
        EVBUS_DLQ_REASONS(NAME)
#undef NAME
    };
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : NULL;
}

static bool valid_stream_id(const char *id)
{
    if (!id || !*id || strlen(id) >= EVBUS_STREAM_ID_LEN)
        return false;
    const char *p = id;
    size_t ms = 0, seq = 0;
    while (*p >= '0' && *p <= '9')
        p++, ms++;
    if (ms == 0)
        return false;
    if (*p == '\0')
        return true;
    if (*p++ != '-')
        return false;
    while (*p >= '0' && *p <= '9')
        p++, seq++;
    return seq > 0 && *p == '\0';
}

static int check_filter(evbus_client_t *c, const evbus_dlq_filter_t *f, char *err,
                        size_t errlen)
{
    if (!f || !f->type || strcmp(f->type, "**") == 0)
        return 0;
    size_t n = strlen(f->type);
    if (n > 3 && strcmp(f->type + n - 3, ".**") == 0) {
        char prefix[256];
        if (n - 3 < sizeof prefix) {
            memcpy(prefix, f->type, n - 3);
            prefix[n - 3] = '\0';
            if (evbus_type_check(prefix) == 0)
                return 0;
        }
    } else if (evbus_type_check(f->type) == 0) {
        return 0;
    }
    return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                       "type filter \"%.64s\": must be a type, \"<type>.**\" or \"**\"",
                       f->type);
}

static bool tenant_ok(const char *want, const evbus_dlq_entry_t *e)
{
    return !want || strcmp(want, e->tenant) == 0;
}

static bool filter_match(const evbus_dlq_filter_t *f, const evbus_dlq_entry_t *e)
{
    if (!f)
        return true;
    if (!tenant_ok(f->tenant, e))
        return false;
    if (!f->type || strcmp(f->type, "**") == 0)
        return true;
    size_t n = strlen(f->type);
    if (n > 3 && strcmp(f->type + n - 3, ".**") == 0) {
        size_t p = n - 3;
        return strncmp(e->type, f->type, p) == 0 && (e->type[p] == '\0' || e->type[p] == '.');
    }
    return strcmp(f->type, e->type) == 0;
}

void evbus_dlq_entry_free(evbus_dlq_entry_t *e)
{
    if (!e)
        return;
    char **strs[] = {&e->event,  &e->stream,        &e->orig_id,      &e->event_id,
                     &e->type,   &e->tenant,        &e->reason,       &e->handlers,
                     &e->error,  &e->first_failure, &e->last_failure, &e->replay_job};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        free(*strs[i]);
    memset(e, 0, sizeof *e);
}

void evbus_dlq_list_free(evbus_dlq_entry_t *entries, size_t n)
{
    for (size_t i = 0; i < n; i++)
        evbus_dlq_entry_free(&entries[i]);
    free(entries);
}

/* Fills e from one XRANGE item [id, [k, v, ...]]; -1 on a malformed item or OOM. */
static int parse_entry(const redisReply *item, evbus_dlq_entry_t *e)
{
    memset(e, 0, sizeof *e);
    if (item->type != REDIS_REPLY_ARRAY || item->elements != 2 ||
        item->element[0]->type != REDIS_REPLY_STRING)
        return -1;
    snprintf(e->dlq_id, sizeof e->dlq_id, "%s", item->element[0]->str);
    const redisReply *kv = item->element[1];
    struct {
        const char *key;
        char **dst;
    } map[] = {
        {"stream", &e->stream},        {"id", &e->orig_id},         {"event_id", &e->event_id},
        {"type", &e->type},            {"tenant", &e->tenant},      {"reason", &e->reason},
        {"handlers", &e->handlers},    {"error", &e->error},        {"first_failure", &e->first_failure},
        {"last_failure", &e->last_failure}, {"replay_job", &e->replay_job},
    };
    if (kv->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < kv->elements; i += 2) {
            const redisReply *k = kv->element[i], *v = kv->element[i + 1];
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                continue;
            if (strcmp(k->str, "event") == 0) {
                free(e->event);
                e->event = malloc(v->len + 1);
                if (!e->event)
                    goto oom;
                memcpy(e->event, v->str, v->len);
                e->event[v->len] = '\0';
                e->event_len = v->len;
            } else if (strcmp(k->str, "attempts") == 0) {
                e->attempts = strtol(v->str, NULL, 10);
            } else {
                for (size_t m = 0; m < sizeof map / sizeof map[0]; m++)
                    if (strcmp(k->str, map[m].key) == 0) {
                        free(*map[m].dst);
                        *map[m].dst = strdup(v->str);
                        if (!*map[m].dst)
                            goto oom;
                    }
            }
        }
    }
    /* Missing fields read as "" so callers never test for NULL (except
     * replay_job, whose absence means "not from a replay"). */
    if (!e->event && !(e->event = strdup("")))
        goto oom;
    for (size_t m = 0; m < sizeof map / sizeof map[0]; m++)
        if (map[m].dst != &e->replay_job && !*map[m].dst && !(*map[m].dst = strdup("")))
            goto oom;
    return 0;
oom:
    evbus_dlq_entry_free(e);
    return -1;
}

/* Called per matching entry by scan(); may take *e (then zero it).
 * Returns 0 to go on, 1 to stop, <0 to fail with that code. */
typedef int (*scan_fn)(evbus_dlq_entry_t *e, void *ud);

static int scan(evbus_client_t *c, const char *dlq, const evbus_dlq_filter_t *f, scan_fn fn,
                void *ud, char *err, size_t errlen)
{
    int rc = check_filter(c, f, err, errlen);
    if (rc != 0)
        return rc;
    if (!evbus__conn(c, err, errlen))
        return EVBUS_CLIENT_EREDIS;
    char end[EVBUS_STREAM_ID_LEN + 1] = "+";
    for (;;) {
        redisReply *r = redisCommand(c->ctx, "XREVRANGE %s %s - COUNT %d", dlq, end, SCAN_PAGE);
        if (!r)
            return evbus__io_fail(c, err, errlen, "XREVRANGE");
        if (r->type != REDIS_REPLY_ARRAY) {
            rc = evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "redis: XREVRANGE %s: %s", dlq,
                             r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            freeReplyObject(r);
            return rc;
        }
        size_t got = r->elements;
        for (size_t i = 0; i < got; i++) {
            evbus_dlq_entry_t e;
            if (parse_entry(r->element[i], &e) != 0) {
                freeReplyObject(r);
                return evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS,
                                   "redis: XREVRANGE %s: malformed entry or out of memory", dlq);
            }
            snprintf(end, sizeof end, "(%s", e.dlq_id);
            int s = filter_match(f, &e) ? fn(&e, ud) : 0;
            evbus_dlq_entry_free(&e);
            if (s != 0) {
                freeReplyObject(r);
                return s > 0 ? 0 : evbus__fail(c, err, errlen, s, "dlq: out of memory");
            }
        }
        freeReplyObject(r);
        if (got < SCAN_PAGE)
            return 0;
    }
}

struct list_state {
    size_t skip, limit, n;
    evbus_dlq_entry_t *items;
};

static int list_cb(evbus_dlq_entry_t *e, void *ud)
{
    struct list_state *st = ud;
    if (st->skip > 0) {
        st->skip--;
        return 0;
    }
    st->items[st->n++] = *e;
    memset(e, 0, sizeof *e);
    return st->n == st->limit ? 1 : 0;
}

int evbus_dlq_list(evbus_client_t *c, const char *dlq_stream, const evbus_dlq_filter_t *f,
                   size_t offset, size_t limit, evbus_dlq_entry_t **out, size_t *n, char *err,
                   size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (limit < 1 || limit > EVBUS_DLQ_LIST_MAX)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "limit %zu: must be 1..%d",
                           limit, EVBUS_DLQ_LIST_MAX);
    struct list_state st = {offset, limit, 0, calloc(limit, sizeof(evbus_dlq_entry_t))};
    if (!st.items)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "dlq: out of memory");
    int rc = scan(c, dlq_stream, f, list_cb, &st, err, errlen);
    if (rc != 0 || st.n == 0) {
        evbus_dlq_list_free(st.items, st.n);
        return rc;
    }
    *out = st.items;
    *n = st.n;
    return 0;
}

static int count_cb(evbus_dlq_entry_t *e, void *ud)
{
    (void)e;
    (*(size_t *)ud)++;
    return 0;
}

ssize_t evbus_dlq_count(evbus_client_t *c, const char *dlq_stream, const evbus_dlq_filter_t *f,
                        char *err, size_t errlen)
{
    size_t n = 0;
    int rc = scan(c, dlq_stream, f, count_cb, &n, err, errlen);
    return rc != 0 ? rc : (ssize_t)n;
}

/* XRANGE id id, with the tenant check; 0 found, 1 not found, <0 error. */
static int get_one(evbus_client_t *c, const char *dlq, const char *id, const char *tenant,
                   evbus_dlq_entry_t *out, char *err, size_t errlen)
{
    redisReply *r = redisCommand(c->ctx, "XRANGE %s %s %s", dlq, id, id);
    if (!r)
        return evbus__io_fail(c, err, errlen, "XRANGE");
    int rc;
    if (r->type != REDIS_REPLY_ARRAY)
        rc = evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "redis: XRANGE %s: %s", dlq,
                         r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    else if (r->elements == 0)
        rc = 1;
    else if (parse_entry(r->element[0], out) != 0)
        rc = evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS,
                         "redis: XRANGE %s: malformed entry or out of memory", dlq);
    else if (!tenant_ok(tenant, out)) {
        evbus_dlq_entry_free(out);
        rc = 1;
    } else
        rc = 0;
    freeReplyObject(r);
    if (rc == 1)
        evbus__fail(c, err, errlen, 1, "dead letter %s: not found", id);
    return rc;
}

/* Common start of the single-entry operations: id syntax and connection. */
static int begin(evbus_client_t *c, const char *id, char *err, size_t errlen)
{
    if (!valid_stream_id(id))
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                           "dead letter id \"%.40s\": not a stream id (ms-seq)", id ? id : "");
    return evbus__conn(c, err, errlen) ? 0 : EVBUS_CLIENT_EREDIS;
}

int evbus_dlq_get(evbus_client_t *c, const char *dlq_stream, const char *dlq_id,
                  const char *tenant, evbus_dlq_entry_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    int rc = begin(c, dlq_id, err, errlen);
    return rc != 0 ? rc : get_one(c, dlq_stream, dlq_id, tenant, out, err, errlen);
}

/* Runs a command that must reply with a status or QUEUED; 0 or EREDIS. */
static int simple_command(evbus_client_t *c, char *err, size_t errlen, int argc,
                          const char **argv, const size_t *lens)
{
    redisReply *r = redisCommandArgv(c->ctx, argc, argv, lens);
    if (!r)
        return evbus__io_fail(c, err, errlen, argv[0]);
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR)
        rc = evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "redis: %s: %s", argv[0], r->str);
    freeReplyObject(r);
    return rc;
}

/* 0 when `stream` is below its retention cap (the policy hash's
 * max_entries, the trimmer's full flag), else EVBUS_CLIENT_EFULL; a Redis
 * failure is EVBUS_CLIENT_EREDIS. */
static int stream_has_room(evbus_client_t *c, const char *stream, char *err, size_t errlen)
{
    redisReply *r = redisCommand(c->ctx, "GET %s:retention:full", stream);
    if (!r)
        return evbus__io_fail(c, err, errlen, "GET");
    bool full = r->type == REDIS_REPLY_STRING;
    freeReplyObject(r);
    if (full)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EFULL,
                           "stream full: %s is at its retention.max_bytes", stream);
    long long max = c->guard_max;
    if (!max) {
        r = redisCommand(c->ctx, "HGET %s:retention max_entries", stream);
        if (!r)
            return evbus__io_fail(c, err, errlen, "HGET");
        max = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
        freeReplyObject(r);
    }
    if (max <= 0)
        return 0;
    r = redisCommand(c->ctx, "XLEN %s", stream);
    if (!r)
        return evbus__io_fail(c, err, errlen, "XLEN");
    long long len = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    if (len < max)
        return 0;
    return evbus__fail(c, err, errlen, EVBUS_CLIENT_EFULL,
                       "stream full: %s holds %lld entries (retention.max_entries %lld); retry "
                       "the dead letter once the consumers caught up", stream, len, max);
}

/* One WATCH/MULTI/EXEC attempt; 2 when the DLQ changed under the WATCH. */
static int retry_once(evbus_client_t *c, const char *dlq, const char *id, const char *tenant,
                      char *new_id, size_t len, char *err, size_t errlen)
{
    const char *watch[2] = {"WATCH", dlq};
    int rc = simple_command(c, err, errlen, 2, watch, NULL);
    if (rc != 0)
        return rc;
    evbus_dlq_entry_t e;
    rc = get_one(c, dlq, id, tenant, &e, err, errlen);
    if (rc != 0) {
        if (c->ctx) {
            const char *unwatch[1] = {"UNWATCH"};
            simple_command(c, NULL, 0, 1, unwatch, NULL);
        }
        return rc;
    }
    const char *target = e.stream[0] ? e.stream : c->stream;
    const char *argv[24];
    size_t lens[24];
    /* The guard cannot run inside MULTI: a refusal there would not stop
     * the XDEL, and the dead letter would be lost.  So a full stream is
     * detected first, and the XADD itself is a plain one. */
    if (c->guard == 1 && (rc = stream_has_room(c, target, err, errlen)) != 0) {
        const char *unwatch[1] = {"UNWATCH"};
        simple_command(c, NULL, 0, 1, unwatch, NULL);
        return rc;
    }
    int argc = 0;
    argv[argc] = "XADD", lens[argc++] = 4;
    argv[argc] = target, lens[argc++] = strlen(target);
    argv[argc] = "*", lens[argc++] = 1;
    argv[argc] = "event", lens[argc++] = 5;
    argv[argc] = e.event, lens[argc++] = e.event_len;
    argv[argc] = "retried_from", lens[argc++] = 12;
    argv[argc] = id, lens[argc++] = strlen(id);
    argv[argc] = "orig_id", lens[argc++] = 7;
    argv[argc] = e.orig_id, lens[argc++] = strlen(e.orig_id);
    const char *multi[1] = {"MULTI"};
    const char *xdel[3] = {"XDEL", dlq, id};
    if ((rc = simple_command(c, err, errlen, 1, multi, NULL)) != 0 ||
        (rc = simple_command(c, err, errlen, argc, argv, lens)) != 0 ||
        (rc = simple_command(c, err, errlen, 3, xdel, NULL)) != 0) {
        evbus_dlq_entry_free(&e);
        if (c->ctx) {
            const char *discard[1] = {"DISCARD"};
            simple_command(c, NULL, 0, 1, discard, NULL);
        }
        return rc;
    }
    evbus_dlq_entry_free(&e);
    redisReply *r = redisCommand(c->ctx, "EXEC");
    if (!r)
        return evbus__io_fail(c, err, errlen, "EXEC");
    if (r->type == REDIS_REPLY_NIL) {
        rc = 2;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
               r->element[0]->type == REDIS_REPLY_STRING) {
        snprintf(new_id, len, "%s", r->element[0]->str);
        rc = 0;
    } else {
        const redisReply *bad = r->type == REDIS_REPLY_ARRAY && r->elements > 0 ? r->element[0] : r;
        rc = evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "redis: retry of %s: %s", id,
                         bad->type == REDIS_REPLY_ERROR ? bad->str : "unexpected EXEC reply");
    }
    freeReplyObject(r);
    return rc;
}

int evbus_dlq_retry(evbus_client_t *c, const char *dlq_stream, const char *dlq_id,
                    const char *tenant, char *new_id, size_t len, char *err, size_t errlen)
{
    if (new_id && len)
        new_id[0] = '\0';
    int rc = begin(c, dlq_id, err, errlen);
    if (rc != 0)
        return rc;
    /* The daemon appends to the DLQ concurrently, which also trips the
     * WATCH; a few attempts are enough in practice. */
    for (int attempt = 0; attempt < RETRY_WATCH_ATTEMPTS; attempt++) {
        char idbuf[EVBUS_STREAM_ID_LEN];
        rc = retry_once(c, dlq_stream, dlq_id, tenant, idbuf, sizeof idbuf, err, errlen);
        if (rc != 2) {
            if (rc == 0 && new_id && len)
                snprintf(new_id, len, "%s", idbuf);
            return rc;
        }
    }
    return evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS,
                       "retry of %s: the dead-letter stream kept changing, try again", dlq_id);
}

/* XDEL of up to XDEL_CHUNK ids; returns how many Redis deleted or <0. */
static ssize_t xdel(evbus_client_t *c, const char *dlq, char (*ids)[EVBUS_STREAM_ID_LEN],
                    size_t n, char *err, size_t errlen)
{
    const char *argv[2 + XDEL_CHUNK];
    argv[0] = "XDEL";
    argv[1] = dlq;
    for (size_t i = 0; i < n; i++)
        argv[2 + i] = ids[i];
    redisReply *r = redisCommandArgv(c->ctx, (int)(2 + n), argv, NULL);
    if (!r)
        return evbus__io_fail(c, err, errlen, "XDEL");
    ssize_t rc = r->type == REDIS_REPLY_INTEGER
                     ? (ssize_t)r->integer
                     : evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "redis: XDEL %s: %s", dlq,
                                   r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    freeReplyObject(r);
    return rc;
}

int evbus_dlq_delete(evbus_client_t *c, const char *dlq_stream, const char *dlq_id,
                     const char *tenant, char *err, size_t errlen)
{
    int rc = begin(c, dlq_id, err, errlen);
    if (rc != 0)
        return rc;
    evbus_dlq_entry_t e;
    rc = get_one(c, dlq_stream, dlq_id, tenant, &e, err, errlen);
    if (rc != 0)
        return rc;
    evbus_dlq_entry_free(&e);
    char ids[1][EVBUS_STREAM_ID_LEN];
    snprintf(ids[0], sizeof ids[0], "%s", dlq_id);
    ssize_t d = xdel(c, dlq_stream, ids, 1, err, errlen);
    if (d < 0)
        return (int)d;
    /* 0: someone else deleted it between our read and our XDEL. */
    return d == 1 ? 0 : evbus__fail(c, err, errlen, 1, "dead letter %s: not found", dlq_id);
}

struct purge_state {
    char (*ids)[EVBUS_STREAM_ID_LEN];
    size_t n, cap;
};

static int purge_cb(evbus_dlq_entry_t *e, void *ud)
{
    struct purge_state *st = ud;
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 256;
        void *p = realloc(st->ids, cap * sizeof *st->ids);
        if (!p)
            return EVBUS_CLIENT_EREDIS;
        st->ids = p;
        st->cap = cap;
    }
    memcpy(st->ids[st->n++], e->dlq_id, EVBUS_STREAM_ID_LEN);
    return 0;
}

ssize_t evbus_dlq_purge(evbus_client_t *c, const char *dlq_stream, const evbus_dlq_filter_t *f,
                        char *err, size_t errlen)
{
    /* Collect first, delete after: deleting while paging would be safe for
     * XREVRANGE with exclusive ends too, but two phases keep each simple. */
    struct purge_state st = {0};
    int rc = scan(c, dlq_stream, f, purge_cb, &st, err, errlen);
    ssize_t total = 0;
    for (size_t i = 0; rc == 0 && i < st.n; i += XDEL_CHUNK) {
        size_t k = st.n - i < XDEL_CHUNK ? st.n - i : XDEL_CHUNK;
        ssize_t d = xdel(c, dlq_stream, st.ids + i, k, err, errlen);
        if (d < 0)
            rc = (int)d;
        else
            total += d;
    }
    free(st.ids);
    return rc != 0 ? rc : total;
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

json_t *evbus_dlq_entry_json(const evbus_dlq_entry_t *e)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_t *handlers = json_loads(e->handlers, 0, NULL);
    if (!json_is_array(handlers)) {
        json_decref(handlers);
        handlers = json_string(e->handlers);
    }
    json_t *event = json_loadb(e->event, e->event_len, 0, NULL);
    int rc = json_object_set_new(o, "dlq_id", json_string(e->dlq_id)) |
             json_object_set_new(o, "stream", json_string(e->stream)) |
             json_object_set_new(o, "orig_id", json_string(e->orig_id)) |
             json_object_set_new(o, "event_id", json_string(e->event_id)) |
             json_object_set_new(o, "type", json_string(e->type)) |
             json_object_set_new(o, "tenant", json_string(e->tenant)) |
             json_object_set_new(o, "reason", json_string(e->reason)) |
             json_object_set_new(o, "handlers", handlers) |
             json_object_set_new(o, "attempts", json_integer(e->attempts)) |
             json_object_set_new(o, "error", json_string(e->error)) |
             json_object_set_new(o, "first_failure", json_string(e->first_failure)) |
             json_object_set_new(o, "last_failure", json_string(e->last_failure)) |
             json_object_set_new(o, "replay_job", str_or_null(e->replay_job)) |
             json_object_set_new(o, "raw", json_stringn(e->event, e->event_len)) |
             json_object_set_new(o, "event", event ? event : json_null());
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}
