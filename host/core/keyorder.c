/*
 * keyorder — see keyorder.h.  A lane's table is a fixed array of buckets
 * with chained nodes, one per held (handler, key); nothing here locks,
 * because a lane belongs to one thread at a time.  The follower count in a
 * node mirrors the value of its field in the hold hash: it is what lets a
 * release decide, without reading Redis, whether the key stays held (a
 * follower becomes the owner) or is free again.
 */
#include "core/keyorder.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/partition.h"
#include "util/metrics.h"

#define LANE_BUCKETS 1024

typedef struct ko_node {
    struct ko_node *next;
    uint64_t hash;
    uint64_t followers; /* queued behind the owner, as in the hold hash */
    size_t hlen, klen;
    char field[];       /* "<handler>\n<key>": the hold hash's field */
} ko_node_t;

typedef struct ko_lane {
    ko_node_t *buckets[LANE_BUCKETS];
    size_t count, cap;
} ko_lane_t;

struct keyorder {
    char *stream;
    char *hold_key; /* <stream>:keyhold */
    unsigned n_lanes;
    ko_lane_t *lanes;
    atomic_size_t total;
};

/* Moves the first follower of a key into the stream as its next owner
 * (split as the retry mover splits a schedule member: meta, then the raw
 * event) or deletes the hold when none is left.  KEYS: hold hash, the
 * key's list, the stream; ARGV[1]: the hold field. */
static const char RELEASE_LUA[] =
    "local m = redis.call('LPOP', KEYS[2])\n"
    "if not m then\n"
    "  redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "  return 0\n"
    "end\n"
    "local nl = string.find(m, '\\n', 1, true)\n"
    "if nl then\n"
    "  redis.call('XADD', KEYS[3], '*', 'event', string.sub(m, nl + 1), 'retry', "
    "string.sub(m, 1, nl - 1))\n"
    "end\n"
    "redis.call('HINCRBY', KEYS[1], ARGV[1], -1)\n"
    "return 1\n";

/* ---- the key of an event ------------------------------------------------ */

/* FNV-1a 64 continued from h over s[0..len): node_hash chains the handler
 * onto a key's hash. */
static uint64_t fnv1a_more(const char *s, size_t len, uint64_t h)
{
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* The key's hash is the partition hash's (client/partition.h), so a key's
 * lane and its partition come from one function. */
void keyorder_key_set(keyorder_key_t *key, const char *text, size_t len)
{
    key->len = len < KEYORDER_KEY_MAX ? len : KEYORDER_KEY_MAX;
    memcpy(key->text, text, key->len);
    key->hash = evbus_partition_fnv1a64(key->text, key->len);
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Past the string starting at p (on its opening quote); NULL if unclosed.
 * memchr to the next quote, which closes the string unless an odd run of
 * backslashes escapes it: this runs on every entry the reader reads. */
static const char *skip_string(const char *p, const char *end)
{
    const char *body = p + 1;
    for (const char *from = body; from < end;) {
        const char *q = memchr(from, '"', (size_t)(end - from));
        if (!q)
            return NULL;
        const char *b = q;
        while (b > body && b[-1] == '\\')
            b--;
        if ((q - b) % 2 == 0)
            return q + 1;
        from = q + 1;
    }
    return NULL;
}

/* Past the value starting at p; NULL when it does not end. */
static const char *skip_value(const char *p, const char *end)
{
    if (p < end && *p == '"')
        return skip_string(p, end);
    int depth = 0;
    for (; p < end; p++) {
        if (*p == '"') {
            p = skip_string(p, end);
            if (!p)
                return NULL;
            p--;
        } else if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            if (depth == 0)
                return p;
            if (--depth == 0)
                return p + 1;
        } else if (*p == ',' && depth == 0) {
            return p;
        }
    }
    return depth == 0 ? p : NULL;
}

typedef struct span {
    const char *p;
    size_t len;
} span_t;

/* The value as a key candidate: a string with its quotes (empty for any
 * other value, which is not a key). */
static span_t value_span(const char *v, const char *vend)
{
    if (vend - v > 2 && *v == '"')
        return (span_t){v, (size_t)(vend - v)};
    return (span_t){v, 0};
}

/* Copy the JSON string q[0..len) (quotes included) into key, its escapes
 * decoded as jansson decodes them (client/partition.h reads the parsed
 * event: both must see the same key).  -1 when it decodes to nothing. */
static int copy_string(const char *q, size_t len, keyorder_key_t *key)
{
    const char *text = q + 1;
    size_t n = len - 2;
    json_t *decoded = NULL;
    if (memchr(text, '\\', n)) {
        decoded = json_loadb(q, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (!json_is_string(decoded)) {
            json_decref(decoded);
            return -1;
        }
        text = json_string_value(decoded);
        n = json_string_length(decoded);
    }
    keyorder_key_set(key, text, n);
    json_decref(decoded);
    return key->len ? 0 : -1;
}

int keyorder_key_of(const char *raw, size_t len, keyorder_key_t *key)
{
    static const char *const names[] = {"partitionkey", "tenantid", "id"};
    span_t found[3] = {{NULL, 0}, {NULL, 0}, {NULL, 0}};
    key->len = 0;
    const char *p = raw ? skip_ws(raw, raw + len) : NULL, *end = raw + len;
    if (!p || p >= end || *p != '{')
        return -1;
    p = skip_ws(p + 1, end);
    while (p < end && *p == '"') {
        const char *name = p + 1, *name_end = skip_string(p, end);
        if (!name_end)
            break;
        size_t nlen = (size_t)(name_end - 1 - name);
        p = skip_ws(name_end, end);
        if (p >= end || *p != ':')
            break;
        const char *v = skip_ws(p + 1, end);
        const char *vend = skip_value(v, end);
        if (!vend)
            break;
        for (int i = 0; i < 3; i++)
            if (!found[i].p && nlen == strlen(names[i]) && memcmp(name, names[i], nlen) == 0)
                found[i] = value_span(v, vend);
        if (found[0].p && found[0].len)
            break; /* the first choice: the rest (data) need not be read */
        p = skip_ws(vend, end);
        if (p < end && *p == ',')
            p = skip_ws(p + 1, end);
        else
            break;
    }
    for (int i = 0; i < 3; i++)
        if (found[i].len && copy_string(found[i].p, found[i].len, key) == 0)
            return 0;
    key->len = 0;
    return -1;
}

unsigned keyorder_lane(const keyorder_key_t *key, unsigned lanes)
{
    return lanes <= 1 ? 0 : (unsigned)(key->hash % lanes);
}

/* ---- the table ---------------------------------------------------------- */

keyorder_t *keyorder_new(const char *stream, unsigned lanes, size_t max_keys)
{
    if (lanes == 0)
        lanes = 1;
    keyorder_t *ko = calloc(1, sizeof *ko);
    if (!ko)
        return NULL;
    ko->stream = strdup(stream);
    ko->lanes = calloc(lanes, sizeof *ko->lanes);
    if (asprintf(&ko->hold_key, "%s:keyhold", stream) < 0)
        ko->hold_key = NULL;
    if (!ko->stream || !ko->lanes || !ko->hold_key) {
        keyorder_free(ko);
        return NULL;
    }
    ko->n_lanes = lanes;
    size_t per = max_keys / lanes;
    for (unsigned i = 0; i < lanes; i++)
        ko->lanes[i].cap = per ? per : 1;
    atomic_init(&ko->total, 0);
    return ko;
}

/* Count n more (or fewer) held keys, here and in the gauge: an add, not
 * a set, so lanes changing at once never publish a stale total. */
static void count_held(keyorder_t *ko, long n)
{
    if (n >= 0) {
        atomic_fetch_add_explicit(&ko->total, (size_t)n, memory_order_relaxed);
        METRIC_ADD(keyorder_keys_held, (uint64_t)n);
    } else {
        atomic_fetch_sub_explicit(&ko->total, (size_t)-n, memory_order_relaxed);
        atomic_fetch_sub_explicit(&g_metrics.keyorder_keys_held, (uint64_t)-n,
                                  memory_order_relaxed);
    }
}

static void lane_clear(keyorder_t *ko, ko_lane_t *l)
{
    for (size_t b = 0; b < LANE_BUCKETS; b++) {
        for (ko_node_t *n = l->buckets[b], *next; n; n = next) {
            next = n->next;
            free(n);
        }
        l->buckets[b] = NULL;
    }
    count_held(ko, -(long)l->count);
    l->count = 0;
}

void keyorder_free(keyorder_t *ko)
{
    if (!ko)
        return;
    if (ko->lanes)
        for (unsigned i = 0; i < ko->n_lanes; i++)
            lane_clear(ko, &ko->lanes[i]);
    free(ko->lanes);
    free(ko->stream);
    free(ko->hold_key);
    free(ko);
}

unsigned keyorder_lanes(const keyorder_t *ko) { return ko->n_lanes; }

size_t keyorder_held_total(const keyorder_t *ko)
{
    return atomic_load_explicit(&ko->total, memory_order_relaxed);
}

static uint64_t node_hash(const char *handler, size_t hlen, const keyorder_key_t *key)
{
    return fnv1a_more(handler, hlen, key->hash);
}

/* The node of (handler, key) and, when prev is given, the link to it. */
static ko_node_t *find(const keyorder_t *ko, const char *handler, const keyorder_key_t *key,
                       ko_node_t ***link)
{
    ko_lane_t *l = &ko->lanes[keyorder_lane(key, ko->n_lanes)];
    if (l->count == 0)
        return NULL; /* the common case: nothing of this lane waits for a retry */
    size_t hlen = strlen(handler);
    uint64_t h = node_hash(handler, hlen, key);
    ko_node_t **at = &l->buckets[h % LANE_BUCKETS];
    for (; *at; at = &(*at)->next) {
        ko_node_t *n = *at;
        if (n->hash == h && n->hlen == hlen && n->klen == key->len &&
            memcmp(n->field, handler, hlen) == 0 &&
            memcmp(n->field + hlen + 1, key->text, key->len) == 0) {
            if (link)
                *link = at;
            return n;
        }
    }
    return NULL;
}

/* Insert (handler, key) with `followers`; NULL at the lane's cap or out
 * of memory. */
static ko_node_t *insert(keyorder_t *ko, const char *handler, size_t hlen,
                         const keyorder_key_t *key, uint64_t followers)
{
    ko_lane_t *l = &ko->lanes[keyorder_lane(key, ko->n_lanes)];
    if (l->count >= l->cap)
        return NULL;
    ko_node_t *n = malloc(sizeof *n + hlen + 1 + key->len);
    if (!n)
        return NULL;
    n->hash = node_hash(handler, hlen, key);
    n->followers = followers;
    n->hlen = hlen;
    n->klen = key->len;
    memcpy(n->field, handler, hlen);
    n->field[hlen] = '\n';
    memcpy(n->field + hlen + 1, key->text, key->len);
    ko_node_t **b = &l->buckets[n->hash % LANE_BUCKETS];
    n->next = *b;
    *b = n;
    l->count++;
    count_held(ko, 1);
    return n;
}

bool keyorder_held(const keyorder_t *ko, const char *handler, const keyorder_key_t *key)
{
    return find(ko, handler, key, NULL) != NULL;
}

int keyorder_load(keyorder_t *ko, redisContext *c, char *err, size_t errlen)
{
    for (unsigned i = 0; i < ko->n_lanes; i++)
        lane_clear(ko, &ko->lanes[i]);
    redisReply *r = redisCommand(c, "HGETALL %s", ko->hold_key);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        snprintf(err, errlen, "reading %s: %s", ko->hold_key,
                 r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
        if (r)
            freeReplyObject(r);
        return -1;
    }
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *f = r->element[i], *v = r->element[i + 1];
        if (f->type != REDIS_REPLY_STRING)
            continue;
        const char *nl = memchr(f->str, '\n', f->len);
        if (!nl || (size_t)(nl - f->str) >= 160)
            continue;
        char handler[160];
        size_t hlen = (size_t)(nl - f->str);
        memcpy(handler, f->str, hlen);
        handler[hlen] = '\0';
        keyorder_key_t key;
        keyorder_key_set(&key, nl + 1, f->len - hlen - 1);
        long long followers = v->type == REDIS_REPLY_STRING ? strtoll(v->str, NULL, 10) : 0;
        if (!find(ko, handler, &key, NULL) &&
            !insert(ko, handler, hlen, &key, followers > 0 ? (uint64_t)followers : 0))
            METRIC_INC(keyorder_table_full);
    }
    freeReplyObject(r);
    return 0;
}

/* ---- transitions -------------------------------------------------------- */

/* "<stream>:keyq:<handler>:<key>" into buf (at least 700 bytes). */
static size_t list_key(const keyorder_t *ko, const char *handler, const keyorder_key_t *key,
                       char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s:keyq:%s:", ko->stream, handler);
    size_t off = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
    size_t k = key->len < cap - off ? key->len : cap - off;
    memcpy(buf + off, key->text, k);
    return off + k;
}

static size_t field_of(const char *handler, const keyorder_key_t *key, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s\n", handler);
    size_t off = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
    size_t k = key->len < cap - off ? key->len : cap - off;
    memcpy(buf + off, key->text, k);
    return off + k;
}

#define BUF_LEN (KEYORDER_KEY_MAX + 600)

int keyorder_hold(keyorder_t *ko, const char *handler, const keyorder_key_t *key,
                  keyorder_emit_fn emit, void *arg)
{
    if (find(ko, handler, key, NULL))
        return 0;
    if (!insert(ko, handler, strlen(handler), key, 0)) {
        METRIC_INC(keyorder_table_full);
        return -1;
    }
    char field[BUF_LEN];
    size_t fl = field_of(handler, key, field, sizeof field);
    /* HSETNX: a hold Redis has and the table lost (a cap at start) keeps
     * its follower count */
    const char *argv[] = {"HSETNX", ko->hold_key, field, "0"};
    size_t lens[] = {6, strlen(ko->hold_key), fl, 1};
    emit(arg, 4, argv, lens);
    return 0;
}

void keyorder_enqueue(keyorder_t *ko, const char *handler, const keyorder_key_t *key,
                      const char *member, size_t member_len, keyorder_emit_fn emit, void *arg)
{
    ko_node_t *n = find(ko, handler, key, NULL);
    if (n)
        n->followers++;
    char list[BUF_LEN], field[BUF_LEN];
    size_t ll = list_key(ko, handler, key, list, sizeof list);
    size_t fl = field_of(handler, key, field, sizeof field);
    const char *push[] = {"RPUSH", list, member};
    size_t push_lens[] = {5, ll, member_len};
    emit(arg, 3, push, push_lens);
    const char *incr[] = {"HINCRBY", ko->hold_key, field, "1"};
    size_t incr_lens[] = {7, strlen(ko->hold_key), fl, 1};
    emit(arg, 4, incr, incr_lens);
    METRIC_INC(keyorder_events_held);
}

void keyorder_release(keyorder_t *ko, const char *handler, const keyorder_key_t *key,
                      keyorder_emit_fn emit, void *arg)
{
    ko_node_t **link = NULL;
    ko_node_t *n = find(ko, handler, key, &link);
    if (n && n->followers > 0) {
        n->followers--; /* the first follower is the owner now */
    } else if (n) {
        *link = n->next;
        free(n);
        ko->lanes[keyorder_lane(key, ko->n_lanes)].count--;
        count_held(ko, -1);
    }
    /* the script runs whether the table knew the key or not: Redis has
     * the followers, and a key the table lost must be handed on too */
    char list[BUF_LEN], field[BUF_LEN];
    size_t ll = list_key(ko, handler, key, list, sizeof list);
    size_t fl = field_of(handler, key, field, sizeof field);
    const char *argv[] = {"EVAL", RELEASE_LUA, "3", ko->hold_key, list, ko->stream, field};
    size_t lens[] = {4, sizeof RELEASE_LUA - 1, 1, strlen(ko->hold_key), ll, strlen(ko->stream),
                     fl};
    emit(arg, 7, argv, lens);
}
