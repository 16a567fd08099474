/*
 * dlq — reading and managing the dead-letter stream (wire format in
 * evbus_client.h).  Only the daemon writes dead letters; this file lists,
 * shows, retries, deletes and purges them.  The archive format lives in
 * dlq_archive.c.
 *
 * Filtering happens here, not in Redis: streams have no secondary index,
 * and the DLQ is capped by the daemon (dlq.capacity), so a scan
 * newest-first in pages of SCAN_PAGE entries stays bounded.  Only the time
 * filters become the range Redis reads.  Tenant checks are made on every
 * path so another tenant's entry is indistinguishable from a missing one.
 *
 * On a Redis Cluster every command goes to the node of its key's slot
 * (evbus__conn_key): a dead-letter stream "{S:p}:dlq" and its partition's
 * stream "{S:p}" share one slot, so a retry's MULTI/EXEC is one node's.  A
 * redirect (the slot moved mid-operation) drops the connections so the
 * next command reads the map again; a scan retries it, the single-entry
 * operations report it (nothing was changed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "client_internal.h"
#include "cluster.h"

enum { SCAN_PAGE = 500, XDEL_CHUNK = 500, RETRY_WATCH_ATTEMPTS = 10, SCAN_REDIRECTS = 20 };

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

/* The milliseconds of a stream id ("ms-seq"); 0 for anything else. */
static int64_t id_ms(const char *id)
{
    return valid_stream_id(id) ? (int64_t)strtoll(id, NULL, 10) : 0;
}

static int check_type(evbus_client_t *c, const char *type, char *err, size_t errlen)
{
    if (!type || strcmp(type, "**") == 0)
        return 0;
    size_t n = strlen(type);
    if (n > 3 && strcmp(type + n - 3, ".**") == 0) {
        char prefix[256];
        if (n - 3 < sizeof prefix) {
            memcpy(prefix, type, n - 3);
            prefix[n - 3] = '\0';
            if (evbus_type_check(prefix) == 0)
                return 0;
        }
    } else if (evbus_type_check(type) == 0) {
        return 0;
    }
    return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                       "type \"%.64s\": must be a type, \"<type>.**\" or \"**\"", type);
}

static int check_reason(evbus_client_t *c, const char *reason, char *err, size_t errlen)
{
    if (!reason)
        return 0;
    for (int r = EVBUS_DLQ_NONE + 1; evbus_dlq_reason_name((evbus_dlq_reason_t)r); r++)
        if (strcmp(reason, evbus_dlq_reason_name((evbus_dlq_reason_t)r)) == 0)
            return 0;
    char names[512] = "";
    for (int r = EVBUS_DLQ_NONE + 1; evbus_dlq_reason_name((evbus_dlq_reason_t)r); r++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
                 r > EVBUS_DLQ_NONE + 1 ? ", " : "", evbus_dlq_reason_name((evbus_dlq_reason_t)r));
    return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                       "reason \"%.40s\": not a dead-letter reason (%s)", reason, names);
}

/* "instance" or "instance/subscriber": printable, no spaces or quotes. */
static int check_handler(evbus_client_t *c, const char *h, char *err, size_t errlen)
{
    if (!h)
        return 0;
    const char *slash = strchr(h, '/');
    bool ok = *h && *h != '/' && strlen(h) < 256 &&
              (!slash || (slash[1] && !strchr(slash + 1, '/')));
    for (const char *p = h; ok && *p; p++)
        ok = (unsigned char)*p > ' ' && *p != '"' && *p != 0x7f;
    if (ok)
        return 0;
    return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                       "handler \"%.64s\": must be \"instance\" or \"instance/subscriber\"", h);
}

/* A CloudEvent id as the filter takes it: what the daemon can have
 * written in the `event_id` field (the envelope check refuses control
 * characters), bounded so a request cannot make every entry compare
 * against a huge string. */
static int check_event_id(evbus_client_t *c, const char *id, char *err, size_t errlen)
{
    if (!id)
        return 0;
    bool ok = *id && strlen(id) <= 256;
    for (const char *p = id; ok && *p; p++)
        ok = (unsigned char)*p >= ' ' && *p != 0x7f;
    if (ok)
        return 0;
    return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                       "event_id: must be 1 to 256 bytes without control characters");
}

int evbus_dlq_filter_check(evbus_client_t *c, const evbus_dlq_filter_t *f, char *err,
                           size_t errlen)
{
    if (!f)
        return 0;
    int rc;
    if ((rc = check_type(c, f->type, err, errlen)) != 0 ||
        (rc = check_reason(c, f->reason, err, errlen)) != 0 ||
        (rc = check_handler(c, f->handler, err, errlen)) != 0 ||
        (rc = check_event_id(c, f->event_id, err, errlen)) != 0)
        return rc;
    if (f->since_ms < 0 || f->until_ms < 0)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "%s: before 1970",
                           f->since_ms < 0 ? "since" : "until");
    if (f->since_ms && f->until_ms && f->since_ms >= f->until_ms)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "since: must be before until");
    return 0;
}

static bool tenant_ok(const char *want, const evbus_dlq_entry_t *e)
{
    return !want || strcmp(want, e->tenant) == 0;
}

static bool type_match(const char *want, const char *type)
{
    if (!want || strcmp(want, "**") == 0)
        return true;
    size_t n = strlen(want);
    if (n > 3 && strcmp(want + n - 3, ".**") == 0) {
        size_t p = n - 3;
        return strncmp(type, want, p) == 0 && (type[p] == '\0' || type[p] == '.');
    }
    return strcmp(want, type) == 0;
}

/* Whether the JSON array `handlers` names `want` ("instance/subscriber"
 * exactly, or "instance": any of its subscribers). */
static bool handler_match(const char *want, const char *handlers)
{
    if (!want)
        return true;
    json_t *a = json_loads(handlers, 0, NULL);
    bool hit = false;
    size_t i, n = strlen(want);
    json_t *h;
    json_array_foreach(a, i, h)
    {
        const char *s = json_string_value(h);
        if (s && strncmp(s, want, n) == 0 && (s[n] == '\0' || (s[n] == '/' && !strchr(want, '/'))))
            hit = true;
    }
    json_decref(a);
    return hit;
}

/* Tenant, type, reason, handler and event id; the time bounds are the
 * scan's range. */
static bool filter_match(const evbus_dlq_filter_t *f, const evbus_dlq_entry_t *e)
{
    return !f || (tenant_ok(f->tenant, e) && type_match(f->type, e->type) &&
                  (!f->event_id || strcmp(f->event_id, e->event_id) == 0) &&
                  (!f->reason || strcmp(f->reason, e->reason) == 0) &&
                  handler_match(f->handler, e->handlers));
}

void evbus_dlq_entry_free(evbus_dlq_entry_t *e)
{
    if (!e)
        return;
    char **strs[] = {&e->event,  &e->stream,        &e->orig_id,      &e->event_id,
                     &e->type,   &e->tenant,        &e->reason,       &e->handlers,
                     &e->error,  &e->first_failure, &e->last_failure, &e->replay_job,
                     &e->attempt_errors};
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
        {"attempt_errors", &e->attempt_errors},
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

/* The newest id a scan reads: below the cursor (or at it, `inclusive`),
 * before until_ms. */
static void scan_end(const evbus_dlq_filter_t *f, const char *cursor, bool inclusive, char *end,
                     size_t len)
{
    int64_t until = f ? f->until_ms : 0;
    if (cursor && *cursor && (!until || id_ms(cursor) < until))
        snprintf(end, len, "%s%s", inclusive ? "" : "(", cursor);
    else if (until)
        snprintf(end, len, "%lld", (long long)(until - 1)); /* "ms" = ms-<any seq> */
    else
        snprintf(end, len, "+");
}

static int scan_at(evbus_client_t *c, const char *dlq, const evbus_dlq_filter_t *f,
                   const char *cursor, bool inclusive, scan_fn fn, void *ud, char *err,
                   size_t errlen)
{
    int rc = evbus_dlq_filter_check(c, f, err, errlen);
    if (rc != 0)
        return rc;
    if (cursor && *cursor && !valid_stream_id(cursor))
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                           "cursor \"%.40s\": not a dead-letter id (ms-seq)", cursor);
    char end[EVBUS_STREAM_ID_LEN + 1], start[24] = "-";
    scan_end(f, cursor, inclusive, end, sizeof end);
    if (f && f->since_ms)
        snprintf(start, sizeof start, "%lld", (long long)f->since_ms);
    int redirects = 0;
    for (;;) {
        /* each page asks for the connection again: fn may have used the
         * client on another key (another node of a cluster) */
        if (!evbus__conn_key(c, dlq, err, errlen))
            return EVBUS_CLIENT_EREDIS;
        redisReply *r = redisCommand(c->ctx, "XREVRANGE %s %s %s COUNT %d", dlq, end, start,
                                     SCAN_PAGE);
        if (!r)
            return evbus__io_fail(c, err, errlen, "XREVRANGE");
        if (c->cl && evbus_cluster_reply_is_redirect(r) && redirects++ < SCAN_REDIRECTS) {
            /* the slot moved or the cluster is not ready: this page did
             * not run; read the map again and ask again */
            freeReplyObject(r);
            evbus__drop(c);
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        if (r->type != REDIS_REPLY_ARRAY) {
            if (c->cl && evbus_cluster_reply_is_redirect(r))
                evbus__drop(c);
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
                return s > 0 ? 0
                             : evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS,
                                           "dlq: out of memory");
            }
        }
        freeReplyObject(r);
        if (got < SCAN_PAGE)
            return 0;
    }
}

static int scan(evbus_client_t *c, const char *dlq, const evbus_dlq_filter_t *f,
                const char *cursor, scan_fn fn, void *ud, char *err, size_t errlen)
{
    return scan_at(c, dlq, f, cursor, false, fn, ud, err, errlen);
}

/* What list and page collect: skip `skip` matches, then take up to
 * `limit`.  A page (peek) goes on to the next match, which proves that
 * another page exists; a list stops at its last entry. */
struct take_state {
    size_t skip, limit, n, cap;
    bool peek, more;
    evbus_dlq_entry_t *items;
};

static int take_cb(evbus_dlq_entry_t *e, void *ud)
{
    struct take_state *st = ud;
    if (st->skip > 0) {
        st->skip--;
        return 0;
    }
    if (st->n == st->limit) {
        st->more = true;
        return 1;
    }
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 64;
        void *p = realloc(st->items, cap * sizeof *st->items);
        if (!p)
            return -1;
        st->items = p;
        st->cap = cap;
    }
    st->items[st->n++] = *e;
    memset(e, 0, sizeof *e);
    return st->n == st->limit && !st->peek ? 1 : 0;
}

static int take(evbus_client_t *c, const char *dlq, const evbus_dlq_filter_t *f,
                const char *cursor, struct take_state *st, evbus_dlq_entry_t **out, size_t *n,
                char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (st->limit < 1 || st->limit > EVBUS_DLQ_LIST_MAX)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "limit %zu: must be 1..%d",
                           st->limit, EVBUS_DLQ_LIST_MAX);
    int rc = scan(c, dlq, f, cursor, take_cb, st, err, errlen);
    if (rc != 0 || st->n == 0) {
        evbus_dlq_list_free(st->items, st->n);
        return rc;
    }
    *out = st->items;
    *n = st->n;
    return 0;
}

int evbus_dlq_list(evbus_client_t *c, const char *dlq_stream, const evbus_dlq_filter_t *f,
                   size_t offset, size_t limit, evbus_dlq_entry_t **out, size_t *n, char *err,
                   size_t errlen)
{
    struct take_state st = {.skip = offset, .limit = limit};
    return take(c, dlq_stream, f, NULL, &st, out, n, err, errlen);
}

int evbus_dlq_page(evbus_client_t *c, const char *dlq_stream, const evbus_dlq_filter_t *f,
                   const char *cursor, size_t limit, evbus_dlq_entry_t **out, size_t *n,
                   char *next, char *err, size_t errlen)
{
    next[0] = '\0';
    struct take_state st = {.limit = limit, .peek = true};
    int rc = take(c, dlq_stream, f, cursor, &st, out, n, err, errlen);
    if (rc == 0 && st.more)
        snprintf(next, EVBUS_STREAM_ID_LEN, "%s", (*out)[*n - 1].dlq_id);
    return rc;
}

/* ---- several dead-letter streams as one (partitions) ------------------ */

/* An entry of a merged page and the stream it came from. */
struct merged_item {
    evbus_dlq_entry_t e;
    size_t stream;
    unsigned long long ms, seq;
};

void evbus_stream_id_split(const char *id, unsigned long long *ms, unsigned long long *seq)
{
    char *end;
    *ms = strtoull(id, &end, 10);
    *seq = *end == '-' ? strtoull(end + 1, NULL, 10) : 0;
}

/* Newest first; the same id in two streams: the higher index first. */
static int merged_cmp(const void *a, const void *b)
{
    const struct merged_item *x = a, *y = b;
    if (x->ms != y->ms)
        return x->ms > y->ms ? -1 : 1;
    if (x->seq != y->seq)
        return x->seq > y->seq ? -1 : 1;
    return x->stream == y->stream ? 0 : x->stream > y->stream ? -1 : 1;
}

int evbus_dlq_merged_id(const char *id, size_t n_streams, char *plain, size_t *index)
{
    const char *colon = id ? strchr(id, ':') : NULL;
    if (!colon || (size_t)(colon - id) >= EVBUS_STREAM_ID_LEN)
        return EVBUS_CLIENT_EINVAL;
    memcpy(plain, id, (size_t)(colon - id));
    plain[colon - id] = '\0';
    char *end;
    unsigned long v = strtoul(colon + 1, &end, 10);
    if (!valid_stream_id(plain) || end == colon + 1 || *end || colon[1] == '-' ||
        v >= n_streams)
        return EVBUS_CLIENT_EINVAL;
    *index = (size_t)v;
    return 0;
}

int evbus_dlq_page_merged(evbus_client_t *c, const char *const *dlq_streams, size_t n_streams,
                          const evbus_dlq_filter_t *f, const char *cursor, size_t limit,
                          evbus_dlq_entry_t **out, size_t *n, size_t *streams, char *next,
                          char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    next[0] = '\0';
    if (n_streams == 0)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "no dead-letter stream");
    if (limit < 1 || limit > EVBUS_DLQ_LIST_MAX)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "limit %zu: must be 1..%d",
                           limit, EVBUS_DLQ_LIST_MAX);
    char at[EVBUS_STREAM_ID_LEN] = "";
    size_t at_index = 0;
    if (cursor && *cursor && evbus_dlq_merged_id(cursor, n_streams, at, &at_index) != 0)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                           "cursor \"%.60s\": not a cursor of a partitioned dead-letter list "
                           "(id:partition)", cursor);
    /* each stream's newest `limit` entries after the cursor (and one more:
     * whether more follow), merged; the first `limit` of them are the page */
    struct merged_item *all = NULL;
    size_t total = 0, cap = 0;
    bool more = false;
    int rc = 0;
    for (size_t k = 0; k < n_streams && rc == 0; k++) {
        struct take_state st = {.limit = limit, .peek = true};
        /* after (id, index) in the merged order: older ids, and the same id
         * in the streams of a lower index */
        rc = at[0] ? scan_at(c, dlq_streams[k], f, at, k < at_index, take_cb, &st, err, errlen)
                   : scan(c, dlq_streams[k], f, NULL, take_cb, &st, err, errlen);
        if (rc == 0 && total + st.n > cap) {
            size_t ncap = (total + st.n) * 2;
            struct merged_item *p = realloc(all, ncap * sizeof *all);
            if (!p)
                rc = evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "dlq: out of memory");
            else
                all = p, cap = ncap;
        }
        if (rc != 0) {
            evbus_dlq_list_free(st.items, st.n);
            break;
        }
        for (size_t i = 0; i < st.n; i++) {
            all[total].e = st.items[i];
            all[total].stream = k;
            evbus_stream_id_split(st.items[i].dlq_id, &all[total].ms, &all[total].seq);
            total++;
        }
        free(st.items);
        more = more || st.more;
    }
    if (rc != 0) {
        for (size_t i = 0; i < total; i++)
            evbus_dlq_entry_free(&all[i].e);
        free(all);
        return rc;
    }
    if (total > 1)
        qsort(all, total, sizeof *all, merged_cmp);
    size_t take = total < limit ? total : limit;
    more = more || total > limit;
    if (take) {
        *out = malloc(take * sizeof **out);
        if (!*out) {
            for (size_t i = 0; i < total; i++)
                evbus_dlq_entry_free(&all[i].e);
            free(all);
            return evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "dlq: out of memory");
        }
    }
    for (size_t i = 0; i < total; i++) {
        if (i < take) {
            (*out)[i] = all[i].e;
            if (streams)
                streams[i] = all[i].stream;
        } else {
            evbus_dlq_entry_free(&all[i].e);
        }
    }
    *n = take;
    if (more && take)
        snprintf(next, EVBUS_DLQ_MERGED_CURSOR_LEN, "%s:%zu", all[take - 1].e.dlq_id,
                 all[take - 1].stream);
    free(all);
    return 0;
}

struct public_scan {
    evbus_dlq_scan_fn fn;
    void *ud;
    int stopped; /* the caller's negative code */
};

static int public_scan_cb(evbus_dlq_entry_t *e, void *ud)
{
    struct public_scan *ps = ud;
    int s = ps->fn(e, ps->ud);
    if (s < 0)
        ps->stopped = s;
    return s != 0;
}

int evbus_dlq_scan(evbus_client_t *c, const char *dlq_stream, const evbus_dlq_filter_t *f,
                   evbus_dlq_scan_fn fn, void *ud, char *err, size_t errlen)
{
    struct public_scan ps = {fn, ud, 0};
    int rc = scan(c, dlq_stream, f, NULL, public_scan_cb, &ps, err, errlen);
    if (rc == 0 && ps.stopped)
        rc = evbus__fail(c, err, errlen, ps.stopped, "dlq scan: stopped by the callback (%d)",
                         ps.stopped);
    return rc;
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
    int rc = scan(c, dlq_stream, f, NULL, count_cb, &n, err, errlen);
    return rc != 0 ? rc : (ssize_t)n;
}

/* An error or unexpected reply r to `what` on `key`: EVBUS_CLIENT_EREDIS
 * with the reply's text; a cluster redirect also drops the connections
 * (the command did not run; the next call reads the map again). */
static int reply_fail(evbus_client_t *c, const redisReply *r, char *err, size_t errlen,
                      const char *what, const char *key)
{
    int rc = evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "redis: %s %s: %s%s", what, key,
                         r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply",
                         c->cl && evbus_cluster_reply_is_redirect(r)
                             ? " (the cluster moved the slot: try again)"
                             : "");
    if (c->cl && evbus_cluster_reply_is_redirect(r))
        evbus__drop(c);
    return rc;
}

long long evbus_dlq_length(evbus_client_t *c, const char *dlq_stream, char *err, size_t errlen)
{
    if (!evbus__conn_key(c, dlq_stream, err, errlen))
        return EVBUS_CLIENT_EREDIS;
    redisReply *r = redisCommand(c->ctx, "XLEN %s", dlq_stream);
    if (!r)
        return evbus__io_fail(c, err, errlen, "XLEN");
    long long n = r->type == REDIS_REPLY_INTEGER ? r->integer
                                                 : reply_fail(c, r, err, errlen, "XLEN", dlq_stream);
    freeReplyObject(r);
    return n;
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
        rc = reply_fail(c, r, err, errlen, "XRANGE", dlq);
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

/* Common start of the single-entry operations: id syntax and the
 * connection of the dead-letter stream dlq. */
static int begin(evbus_client_t *c, const char *dlq, const char *id, char *err, size_t errlen)
{
    if (!valid_stream_id(id))
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                           "dead letter id \"%.40s\": not a stream id (ms-seq)", id ? id : "");
    return evbus__conn_key(c, dlq, err, errlen) ? 0 : EVBUS_CLIENT_EREDIS;
}

int evbus_dlq_get(evbus_client_t *c, const char *dlq_stream, const char *dlq_id,
                  const char *tenant, evbus_dlq_entry_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    int rc = begin(c, dlq_stream, dlq_id, err, errlen);
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
        rc = reply_fail(c, r, err, errlen, argv[0], argc > 1 ? argv[1] : "");
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
    long long max = evbus__guard_max(c);
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

/* 0 when XADD can write to `stream`: it is a stream or does not exist
 * (a key of another type would fail the XADD inside MULTI). */
static int target_ok(evbus_client_t *c, const char *stream, char *err, size_t errlen)
{
    redisReply *r = redisCommand(c->ctx, "TYPE %s", stream);
    if (!r)
        return evbus__io_fail(c, err, errlen, "TYPE");
    int rc = 0;
    if (r->type != REDIS_REPLY_STATUS)
        rc = evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "redis: TYPE %s: %s", stream,
                         r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    else if (strcmp(r->str, "stream") != 0 && strcmp(r->str, "none") != 0)
        rc = evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS,
                         "%s holds a %s, not a stream: the dead letter stays", stream, r->str);
    freeReplyObject(r);
    return rc;
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
    if (c->cl && evbus_cluster_keyslot(target, strlen(target)) !=
                     evbus_cluster_keyslot(dlq, strlen(dlq))) {
        /* MULTI/EXEC is one node's: the target must share the DLQ's tag */
        rc = evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS,
                         "retry of %s: its stream %s is not in the slot of %s (a Redis "
                         "Cluster runs a MULTI on one slot): the dead letter stays",
                         id, target, dlq);
        evbus_dlq_entry_free(&e);
        const char *unwatch[1] = {"UNWATCH"};
        simple_command(c, NULL, 0, 1, unwatch, NULL);
        return rc;
    }
    /* An error inside MULTI would not stop the XDEL, and the dead letter
     * would be lost: so what can make the XADD fail is checked first (the
     * guard cannot run inside MULTI either, and the XADD is a plain one). */
    if ((rc = target_ok(c, target, err, errlen)) != 0 ||
        (c->guard == 1 && (rc = stream_has_room(c, target, err, errlen)) != 0)) {
        evbus_dlq_entry_free(&e);
        if (c->ctx) {
            const char *unwatch[1] = {"UNWATCH"};
            simple_command(c, NULL, 0, 1, unwatch, NULL);
        }
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
    int rc = begin(c, dlq_stream, dlq_id, err, errlen);
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
    if (!evbus__conn_key(c, dlq, err, errlen))
        return EVBUS_CLIENT_EREDIS;
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
    int rc = begin(c, dlq_stream, dlq_id, err, errlen);
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

/* Reads the replies of `n` pipelined commands into r[] (NULL for an
 * error reply, remembered as the first failure); 0, or EVBUS_CLIENT_EREDIS
 * when the connection failed (r[] is then freed). */
static int pipeline_replies(evbus_client_t *c, const char *what, redisReply **r, size_t n,
                            char *err, size_t errlen)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        void *reply = NULL;
        if (redisGetReply(c->ctx, &reply) != REDIS_OK || !reply) {
            for (size_t k = 0; k < i; k++)
                freeReplyObject(r[k]);
            memset(r, 0, n * sizeof *r);
            return evbus__io_fail(c, err, errlen, what);
        }
        r[i] = reply;
        if (r[i]->type == REDIS_REPLY_ERROR) {
            if (rc == 0)
                rc = evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "redis: %s: %s", what,
                                 r[i]->str);
            freeReplyObject(r[i]);
            r[i] = NULL;
        }
    }
    return rc;
}

/* The found entries of evbus_dlq_remove: their XRANGE replies and parses. */
struct found {
    redisReply **replies; /* one XRANGE reply per id, NULL when not found */
    redisReply **items;   /* the entries, for the archive */
    evbus_dlq_entry_t *es;
    size_t n;
};

static void found_free(struct found *fd, size_t n_ids)
{
    for (size_t i = 0; fd->replies && i < n_ids; i++)
        if (fd->replies[i])
            freeReplyObject(fd->replies[i]);
    evbus_dlq_list_free(fd->es, fd->n);
    free(fd->replies);
    free(fd->items);
}

/* Reads ids[] in one pipeline into fd: the entries that exist and are the
 * tenant's.  0 or <0. */
static int remove_read(evbus_client_t *c, const char *dlq, const char *const *ids, size_t n,
                       const char *tenant, struct found *fd, char *err, size_t errlen)
{
    fd->replies = calloc(n, sizeof *fd->replies);
    fd->items = calloc(n, sizeof *fd->items);
    fd->es = calloc(n, sizeof *fd->es);
    if (!fd->replies || !fd->items || !fd->es)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "dlq: out of memory");
    for (size_t i = 0; i < n; i++)
        if (redisAppendCommand(c->ctx, "XRANGE %s %s %s", dlq, ids[i], ids[i]) != REDIS_OK)
            return evbus__io_fail(c, err, errlen, "XRANGE");
    int rc = pipeline_replies(c, "XRANGE", fd->replies, n, err, errlen);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        redisReply *r = fd->replies[i];
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 1)
            continue;
        if (parse_entry(r->element[0], &fd->es[fd->n]) != 0)
            return evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS,
                               "redis: XRANGE %s: malformed entry or out of memory", dlq);
        if (!tenant_ok(tenant, &fd->es[fd->n])) {
            evbus_dlq_entry_free(&fd->es[fd->n]);
            continue;
        }
        fd->items[fd->n++] = r->element[0];
    }
    return 0;
}

/* Deletes fd's entries in one pipeline and keeps, in order, those whose
 * XDEL removed something (someone else may have been first).  0 or <0. */
static int remove_delete(evbus_client_t *c, const char *dlq, struct found *fd, char *err,
                         size_t errlen)
{
    if (fd->n == 0)
        return 0;
    redisReply **del = calloc(fd->n, sizeof *del);
    if (!del)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EREDIS, "dlq: out of memory");
    for (size_t i = 0; i < fd->n; i++)
        if (redisAppendCommand(c->ctx, "XDEL %s %s", dlq, fd->es[i].dlq_id) != REDIS_OK) {
            free(del);
            return evbus__io_fail(c, err, errlen, "XDEL");
        }
    int rc = pipeline_replies(c, "XDEL", del, fd->n, err, errlen);
    size_t kept = 0;
    for (size_t i = 0; i < fd->n; i++) {
        bool gone = del[i] && del[i]->type == REDIS_REPLY_INTEGER && del[i]->integer == 1;
        if (del[i])
            freeReplyObject(del[i]);
        if (!gone) {
            evbus_dlq_entry_free(&fd->es[i]);
        } else if (kept < i) {
            fd->es[kept++] = fd->es[i];
            memset(&fd->es[i], 0, sizeof fd->es[i]);
        } else {
            kept++;
        }
    }
    fd->n = kept;
    free(del);
    return rc;
}

ssize_t evbus_dlq_remove(evbus_client_t *c, const char *dlq_stream, const char *const *ids,
                         size_t n, const char *tenant, const char *archive_path,
                         evbus_dlq_entry_t **out, size_t *n_out, char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    if (n_out)
        *n_out = 0;
    if (n > EVBUS_DLQ_LIST_MAX)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "%zu ids: at most %d at once",
                           n, EVBUS_DLQ_LIST_MAX);
    for (size_t i = 0; i < n; i++)
        if (!valid_stream_id(ids[i]))
            return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                               "dead letter id \"%.40s\": not a stream id (ms-seq)",
                               ids[i] ? ids[i] : "");
    if (n == 0)
        return 0;
    if (!evbus__conn_key(c, dlq_stream, err, errlen))
        return EVBUS_CLIENT_EREDIS;
    struct found fd = {0};
    int rc = remove_read(c, dlq_stream, ids, n, tenant, &fd, err, errlen);
    if (rc == 0 && archive_path && fd.n > 0) {
        char msg[256];
        int a = evbus_dlq_archive_append(archive_path, fd.items, fd.n, msg, sizeof msg);
        if (a != 0)
            rc = evbus__fail(c, err, errlen, a, "%s; nothing was removed", msg);
    }
    if (rc == 0)
        rc = remove_delete(c, dlq_stream, &fd, err, errlen);
    ssize_t deleted = rc == 0 ? (ssize_t)fd.n : rc;
    if (rc == 0 && out && fd.n > 0) {
        *out = fd.es;
        if (n_out)
            *n_out = fd.n;
        fd.es = NULL;
        fd.n = 0;
    }
    found_free(&fd, n);
    return deleted;
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
            return -1;
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
    int rc = scan(c, dlq_stream, f, NULL, purge_cb, &st, err, errlen);
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
    json_t *errors = json_loads(e->attempt_errors ? e->attempt_errors : "", 0, NULL);
    if (!json_is_array(errors)) {
        json_decref(errors);
        errors = e->attempt_errors && *e->attempt_errors ? json_string(e->attempt_errors)
                                                         : json_array();
    }
    json_t *event = json_loadb(e->event, e->event_len, JSON_ALLOW_NUL, NULL);
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
             json_object_set_new(o, "attempt_errors", errors) |
             json_object_set_new(o, "raw", json_stringn(e->event, e->event_len)) |
             json_object_set_new(o, "event", event ? event : json_null());
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}
