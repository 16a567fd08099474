/*
 * event — CloudEvent completion and checks, and the id/time generators.
 *
 * Completion only fills what is absent and checks what the bus relies on
 * (routing type, tenant, identity, time); it does not validate `data`
 * against schemas — that is the daemon's job.  Randomness comes from
 * getrandom(2), drawn 4 KiB at a time into a per-thread pool (one system
 * call per ~256 ids; 256 bytes at a time cost evbusctl ~6 % more CPU to
 * publish 200,000 events); the pool is emptied in a forked child so parent
 * and child never hand out the same bytes.  The
 * time string is formatted once per second per thread, only the
 * milliseconds are written per call.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "client_internal.h"

static __thread unsigned char rng_pool[4096];
static __thread size_t rng_left; /* unused bytes at the end of rng_pool */
static pthread_once_t rng_once = PTHREAD_ONCE_INIT;

static void rng_fill(unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r > 0)
            got += (size_t)r;
        /* r < 0 is EINTR (a signal during the call), a short read is
         * possible above 256 bytes: either way, go on. */
    }
}

/* Runs in the child, in the thread that forked (the only one there). */
static void rng_forget(void)
{
    rng_left = 0;
}

static void rng_register(void)
{
    pthread_atfork(NULL, NULL, rng_forget);
}

static void random_bytes(unsigned char *buf, size_t n)
{
    pthread_once(&rng_once, rng_register);
    if (rng_left < n) {
        rng_fill(rng_pool, sizeof rng_pool);
        rng_left = sizeof rng_pool;
    }
    memcpy(buf, rng_pool + sizeof rng_pool - rng_left, n);
    memset(rng_pool + sizeof rng_pool - rng_left, 0, n); /* handed out once */
    rng_left -= n;
}

void evbus_uuid4(char out[37])
{
    unsigned char b[16];
    random_bytes(b, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0x0f];
    }
    out[o] = '\0';
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)(ts.tv_nsec / 1000000);
}

/* Per-thread state keeps ULIDs of one thread strictly increasing even when
 * several are made in the same millisecond (the ULID spec's monotonic
 * mode), without any lock. */
static __thread uint64_t ulid_last_ms;
static __thread unsigned char ulid_last_rand[10];

void evbus_ulid(char out[27])
{
    static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    uint64_t ms = now_ms();
    unsigned char r[10];
    if (ms <= ulid_last_ms) {
        ms = ulid_last_ms;
        memcpy(r, ulid_last_rand, sizeof r);
        int i = 9;
        while (i >= 0 && ++r[i] == 0)
            i--;
        if (i < 0) { /* 80-bit overflow: move to the next millisecond */
            ms++;
            random_bytes(r, sizeof r);
        }
    } else {
        random_bytes(r, sizeof r);
    }
    ulid_last_ms = ms;
    memcpy(ulid_last_rand, r, sizeof r);

    ms &= (UINT64_C(1) << 48) - 1;
    for (int i = 9; i >= 0; i--) {
        out[i] = b32[ms & 31];
        ms >>= 5;
    }
    /* 80 random bits = 16 groups of 5, most significant first. */
    for (int g = 0; g < 16; g++) {
        unsigned v = 0;
        for (int k = 0; k < 5; k++) {
            int bit = g * 5 + k;
            v = (v << 1) | ((r[bit / 8] >> (7 - bit % 8)) & 1u);
        }
        out[10 + g] = b32[v];
    }
    out[26] = '\0';
}

static __thread time_t time_sec = -1;
static __thread char time_prefix[24]; /* "2026-11-26T22:06:42" of time_sec */
static __thread size_t time_prefix_len;

void evbus_time_now_rfc3339(char out[32])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != time_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        time_prefix_len = strftime(time_prefix, sizeof time_prefix, "%Y-%m-%dT%H:%M:%S", &tm);
        time_sec = ts.tv_sec;
    }
    unsigned ms = (unsigned)(ts.tv_nsec / 1000000);
    char *o = out + time_prefix_len;
    memcpy(out, time_prefix, time_prefix_len);
    o[0] = '.';
    o[1] = (char)('0' + ms / 100);
    o[2] = (char)('0' + ms / 10 % 10);
    o[3] = (char)('0' + ms % 10);
    o[4] = 'Z';
    o[5] = '\0';
}

int evbus_type_check(const char *type)
{
    if (!type || !*type)
        return -1;
    size_t seg = 0;
    for (const char *p = type;; p++) {
        if (*p == '.' || *p == '\0') {
            if (seg == 0)
                return -1;
            if (*p == '\0')
                return 0;
            seg = 0;
            continue;
        }
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
            return -1;
        seg++;
    }
}

/* Reads exactly n digits at *p; -1 when they are not all digits. */
static int digits(const char **p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char ch = (*p)[i];
        if (ch < '0' || ch > '9')
            return -1;
        v = v * 10 + (ch - '0');
    }
    *p += n;
    return v;
}

static int days_in_month(int y, int m)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : d[m - 1];
}

int evbus_time_check(const char *s)
{
    if (!s)
        return -1;
    const char *p = s;
    int y = digits(&p, 4);
    if (y < 0 || *p++ != '-')
        return -1;
    int mo = digits(&p, 2);
    if (mo < 1 || mo > 12 || *p++ != '-')
        return -1;
    int d = digits(&p, 2);
    if (d < 1 || d > days_in_month(y, mo))
        return -1;
    if (*p != 'T' && *p != 't')
        return -1;
    p++;
    int h = digits(&p, 2);
    if (h < 0 || h > 23 || *p++ != ':')
        return -1;
    int mi = digits(&p, 2);
    if (mi < 0 || mi > 59 || *p++ != ':')
        return -1;
    int se = digits(&p, 2);
    if (se < 0 || se > 60) /* 60: leap second */
        return -1;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'Z' || *p == 'z')
        return p[1] == '\0' ? 0 : -1;
    if (*p != '+' && *p != '-')
        return -1;
    p++;
    int oh = digits(&p, 2);
    if (oh < 0 || oh > 23 || *p++ != ':')
        return -1;
    int om = digits(&p, 2);
    if (om < 0 || om > 59)
        return -1;
    return *p == '\0' ? 0 : -1;
}

/* An optional attribute: absent is fine, present must be a non-empty string. */
/* A string attribute holding U+0000 (JSON allows it in strings, and the
 * parsers accept it since payloads may carry it): C code reading the
 * attribute would see a shorter value than another consumer. */
static bool has_nul(const json_t *v)
{
    return json_is_string(v) && strlen(json_string_value(v)) != json_string_length(v);
}

static int check_optional_string(evbus_client_t *c, const json_t *v, const char *name, char *err,
                                 size_t errlen)
{
    if (v && (!json_is_string(v) || json_string_length(v) == 0))
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "%s: must be a non-empty string",
                           name);
    return has_nul(v) ? evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                                    "%s: must not contain U+0000", name)
                      : 0;
}

/* The event's CloudEvent attributes (indexed by EVBUS__A_*), found in one
 * walk over its members: a dozen json_object_get calls (each hashing its
 * key) were half of evbus_event_complete.  Keys are matched as the text
 * scanner matches them (evbus__attr_index): "type\0x" is not "type", as
 * for json_object_get. */
static void json_attrs_find(json_t *ev, json_t *a[EVBUS__A_COUNT])
{
    memset(a, 0, EVBUS__A_COUNT * sizeof *a);
    for (void *it = json_object_iter(ev); it; it = json_object_iter_next(ev, it)) {
        int k = evbus__attr_index(json_object_iter_key(it), json_object_iter_key_len(it));
        if (k >= 0)
            a[k] = json_object_iter_value(it);
    }
}

const char *evbus__source(evbus_client_t *c, char buf[300])
{
    if (c && c->source)
        return c->source;
    if (c && c->default_source)
        return c->default_source;
    char host[256];
    if (gethostname(host, sizeof host) != 0 || !host[0])
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    snprintf(buf, 300, "/evbus/%s", host);
    /* The host name is looked up once per client: it costs a system call. */
    if (c)
        c->default_source = strdup(buf);
    return buf;
}

static int set_string(json_t *ev, const char *name, const char *value)
{
    return json_object_set_new(ev, name, json_string(value));
}

int evbus_event_complete(evbus_client_t *c, json_t *ev, char *err, size_t errlen)
{
    if (!json_is_object(ev))
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "event: not a JSON object");

    json_t *a[EVBUS__A_COUNT];
    json_attrs_find(ev, a);
    json_t *v = a[EVBUS__A_SPECVERSION];
    if (v && !(json_is_string(v) && strcmp(json_string_value(v), "1.0") == 0))
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "specversion: must be \"1.0\"");

    v = a[EVBUS__A_TYPE];
    if (!v)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "type: missing");
    if (!json_is_string(v))
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "type: not a string");
    if (evbus_type_check(json_string_value(v)) != 0 || has_nul(v))
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                           "type: \"%.64s\" is not lowercase dot-separated segments of "
                           "[a-z0-9_-]",
                           json_string_value(v));

    v = a[EVBUS__A_TENANTID];
    if (!v)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "tenantid: missing");
    if (!json_is_string(v) || json_string_length(v) == 0)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                           "tenantid: must be a non-empty string");
    if (has_nul(v))
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                           "tenantid: must not contain U+0000");

    if (check_optional_string(c, a[EVBUS__A_ID], "id", err, errlen) ||
        check_optional_string(c, a[EVBUS__A_SOURCE], "source", err, errlen) ||
        check_optional_string(c, a[EVBUS__A_CORRELATIONID], "correlationid", err, errlen))
        return EVBUS_CLIENT_EINVAL;

    v = a[EVBUS__A_TIME];
    if (v && !json_is_string(v))
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "time: not a string");
    if (v && evbus_time_check(json_string_value(v)) != 0)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                           "time: \"%.64s\" is not an RFC 3339 date-time", json_string_value(v));

    int rc = 0;
    if (!a[EVBUS__A_SPECVERSION])
        rc |= set_string(ev, "specversion", "1.0");
    if (!a[EVBUS__A_ID]) {
        char id[37];
        if (c && c->id_kind == EVBUS_ID_ULID)
            evbus_ulid(id);
        else
            evbus_uuid4(id);
        rc |= set_string(ev, "id", id);
    }
    if (!a[EVBUS__A_SOURCE]) {
        char def[300];
        rc |= set_string(ev, "source", evbus__source(c, def));
    }
    if (!a[EVBUS__A_TIME]) {
        char t[32];
        evbus_time_now_rfc3339(t);
        rc |= set_string(ev, "time", t);
    }
    if (!a[EVBUS__A_CORRELATIONID]) {
        char id[37];
        evbus_uuid4(id);
        rc |= set_string(ev, "correlationid", id);
    }
    if (rc)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "event: out of memory");
    return 0;
}

/* ------------------------------------------------------ text events */

/* Copies n bytes as a NUL-terminated string at *o; returns it. */
static const char *text_put(char **o, const char *s, size_t n)
{
    char *r = *o;
    memcpy(r, s, n);
    r[n] = '\0';
    *o += n + 1;
    return r;
}

/* Whether the scanned attributes pass evbus_event_complete's checks. */
static bool text_attrs_ok(const evbus__scan_t *sc)
{
    char buf[256];
    if (sc->val[EVBUS__A_SPECVERSION] &&
        !(sc->len[EVBUS__A_SPECVERSION] == 3 && memcmp(sc->val[EVBUS__A_SPECVERSION], "1.0", 3) == 0))
        return false;
    if (!sc->val[EVBUS__A_TYPE] || !sc->val[EVBUS__A_TENANTID] || sc->len[EVBUS__A_TENANTID] == 0)
        return false;
    memcpy(buf, sc->val[EVBUS__A_TYPE], sc->len[EVBUS__A_TYPE]);
    buf[sc->len[EVBUS__A_TYPE]] = '\0';
    if (evbus_type_check(buf) != 0)
        return false;
    static const int optional[] = {EVBUS__A_ID, EVBUS__A_SOURCE, EVBUS__A_CORRELATIONID};
    for (size_t k = 0; k < sizeof optional / sizeof optional[0]; k++)
        if (sc->val[optional[k]] && sc->len[optional[k]] == 0)
            return false;
    if (sc->val[EVBUS__A_TIME]) {
        memcpy(buf, sc->val[EVBUS__A_TIME], sc->len[EVBUS__A_TIME]);
        buf[sc->len[EVBUS__A_TIME]] = '\0';
        if (evbus_time_check(buf) != 0)
            return false;
    }
    return true;
}

/* Appends "\"name\":" to the head being built (room reserved by the
 * caller). */
static void head_name(evbus__buf_t *h, const char *name)
{
    size_t nl = strlen(name);
    h->p[h->len] = '"';
    memcpy(h->p + h->len + 1, name, nl);
    memcpy(h->p + h->len + 1 + nl, "\":", 2);
    h->len += nl + 3;
}

/* Appends "\"name\":\"v\"," for a value that needs no escapes (generated
 * ids and times; room reserved by the caller). */
static void head_plain(evbus__buf_t *h, const char *name, const char *v)
{
    size_t n = strlen(v);
    head_name(h, name);
    h->p[h->len] = '"';
    memcpy(h->p + h->len + 1, v, n);
    memcpy(h->p + h->len + 1 + n, "\",", 2);
    h->len += n + 3;
}

/* The attributes a scanned event lacks, generated ("" / NULL: present). */
typedef struct text_gen {
    char id[37], t[32], corr[37];
    const char *src;
    size_t srclen;
    char def[300];
} text_gen_t;

static void text_generate(evbus_client_t *c, const evbus__scan_t *sc, text_gen_t *g)
{
    g->id[0] = g->t[0] = g->corr[0] = '\0';
    g->src = NULL;
    g->srclen = 0;
    if (!sc->val[EVBUS__A_ID]) {
        if (c && c->id_kind == EVBUS_ID_ULID)
            evbus_ulid(g->id);
        else
            evbus_uuid4(g->id);
    }
    if (!sc->val[EVBUS__A_TIME])
        evbus_time_now_rfc3339(g->t);
    if (!sc->val[EVBUS__A_CORRELATIONID])
        evbus_uuid4(g->corr);
    if (!sc->val[EVBUS__A_SOURCE]) {
        g->src = evbus__source(c, g->def);
        g->srclen = strlen(g->src);
    }
}

/* Most bytes text_head() appends: '{' and at most five attributes, each
 * name, quotes and punctuation plus its value; only the source can need
 * escapes, and evbus__json_write_string wants room for 6 bytes a byte. */
static size_t text_head_max(const text_gen_t *g)
{
    return 1 + 5 * 20 + 3 + strlen(g->id) + strlen(g->t) + strlen(g->corr) + 6 * g->srclen + 2;
}

/* Appends the head of a completed text event to h: '{' and the missing
 * attributes, each followed by ',' (the caller's text follows, without its
 * '{').  0, or -1 (h->len unchanged) when the source is not UTF-8 or
 * memory runs out. */
static int text_head(const evbus__scan_t *sc, const text_gen_t *g, evbus__buf_t *h)
{
    size_t mark = h->len;
    if (evbus__buf_reserve(h, text_head_max(g)) != 0)
        return -1;
    h->p[h->len++] = '{';
    if (!sc->val[EVBUS__A_SPECVERSION])
        head_plain(h, "specversion", "1.0");
    if (g->id[0])
        head_plain(h, "id", g->id);
    if (g->src) {
        /* The reservation also covers the worst-case escaping that
         * evbus__json_write_string wants room for. */
        head_name(h, "source");
        if (evbus__json_write_string(h, g->src, g->srclen) != 0) {
            h->len = mark;
            return -1;
        }
        h->p[h->len++] = ',';
    }
    if (g->t[0])
        head_plain(h, "time", g->t);
    if (g->corr[0])
        head_plain(h, "correlationid", g->corr);
    return 0;
}

/* The fast path: keeps the caller's bytes, inserts what is missing.
 * -1 (nothing owned) when it cannot, e.g. a source that is not UTF-8.
 * One allocation of about the head plus the attribute strings: sizing it
 * for the worst case (kilobytes) made completing a batch walk megabytes. */
static int text_fast(evbus_client_t *c, const evbus__scan_t *sc, evbus_text_event_t *ev)
{
    text_gen_t g;
    text_generate(c, sc, &g);
    size_t head_cap = text_head_max(&g);
    size_t attr_cap = strlen(g.id) + strlen(g.t) + strlen(g.corr) + g.srclen + 6;
    for (int a = 0; a < EVBUS__A_COUNT; a++)
        if (a != EVBUS__A_SPECVERSION && a != EVBUS__A_PARTITIONKEY && sc->val[a])
            attr_cap += sc->len[a];
    char *mem = malloc(head_cap + attr_cap);
    if (!mem)
        return -1;
    evbus__buf_t h = {mem, 0, head_cap};
    if (text_head(sc, &g, &h) != 0 || h.p != mem) {
        /* (h.p != mem cannot happen: text_head_max is the bound; if it
         * did, mem was handed to realloc.) */
        free(h.p);
        return -1;
    }
    char *o = mem + head_cap;
#define ATTR(a, gen, genlen)                                                                   \
    (sc->val[a] ? text_put(&o, sc->val[a], sc->len[a]) : text_put(&o, gen, genlen))
    ev->id = ATTR(EVBUS__A_ID, g.id, strlen(g.id));
    ev->type = text_put(&o, sc->val[EVBUS__A_TYPE], sc->len[EVBUS__A_TYPE]);
    ev->tenantid = text_put(&o, sc->val[EVBUS__A_TENANTID], sc->len[EVBUS__A_TENANTID]);
    ev->source = ATTR(EVBUS__A_SOURCE, g.src, g.srclen);
    ev->correlationid = ATTR(EVBUS__A_CORRELATIONID, g.corr, strlen(g.corr));
    ev->time = ATTR(EVBUS__A_TIME, g.t, strlen(g.t));
#undef ATTR
    ev->mem = mem;
    ev->head = mem;
    ev->head_len = h.len;
    ev->tail = sc->open + 1;
    ev->tail_len = (size_t)(sc->close - sc->open - 1);
    return 0;
}

int evbus__text_emit(evbus_client_t *c, const char *text, size_t len, evbus__buf_t *b, char *msg,
                     size_t msglen)
{
    evbus__scan_t sc;
    if (evbus__scan_event(text, len, &sc) == 0 && text_attrs_ok(&sc)) {
        text_gen_t g;
        text_generate(c, &sc, &g);
        size_t mark = b->len, tail = (size_t)(sc.close - sc.open - 1);
        if (text_head(&sc, &g, b) == 0) {
            if (evbus__buf_reserve(b, tail) != 0) {
                b->len = mark;
                return -1;
            }
            memcpy(b->p + b->len, sc.open + 1, tail);
            b->len += tail;
            return 0;
        }
    }
    /* What the fast path leaves (jansson decides): complete, copy, drop. */
    evbus_text_event_t ev;
    if (evbus_event_text_complete(c, text, len, &ev, msg, msglen) != 0)
        return EVBUS_CLIENT_EINVAL;
    int rc = evbus__buf_reserve(b, ev.head_len + ev.tail_len);
    if (rc == 0) {
        memcpy(b->p + b->len, ev.head, ev.head_len);
        if (ev.tail_len)
            memcpy(b->p + b->len + ev.head_len, ev.tail, ev.tail_len);
        b->len += ev.head_len + ev.tail_len;
    }
    evbus_text_event_clear(&ev);
    return rc;
}

static const char *json_attr(const json_t *ev, const char *name)
{
    return json_string_value(json_object_get(ev, name));
}

/* FNV-1a, 64 bit: stable across runs and builds, so a key always lands
 * in the same partition. */
static uint64_t key_hash(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211u;
    }
    return h;
}

/* The slow path: jansson parses, evbus_event_complete decides, the event
 * is re-serialized (when ev) and its partition key hashed (when hash). */
static int text_slow(evbus_client_t *c, const char *text, size_t len, evbus_text_event_t *ev,
                     uint64_t *hash, char *err, size_t errlen)
{
    json_error_t jerr;
    /* as the consumer reads it (host/core/event.c): U+0000 in strings is
     * JSON, a member name twice is ambiguous and refused */
    json_t *j = json_loadb(text, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
    if (!j)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "invalid JSON: %s (column %d)",
                           jerr.text, jerr.column);
    /* Read before completing: the tenantid is never filled in. */
    if (hash) {
        json_t *k = json_object_get(j, "partitionkey");
        if (!json_is_string(k))
            k = json_object_get(j, "tenantid");
        *hash = key_hash(json_string_value(k) ? json_string_value(k) : "",
                         json_string_value(k) ? json_string_length(k) : 0);
    }
    int rc = evbus_event_complete(c, j, err, errlen);
    if (rc != 0 || !ev) {
        json_decref(j);
        return rc;
    }
    char *body = json_dumps(j, JSON_COMPACT);
    const char *names[6] = {"id", "type", "tenantid", "source", "correlationid", "time"};
    size_t need = body ? strlen(body) + 1 : 0;
    for (size_t k = 0; k < 6; k++)
        need += strlen(json_attr(j, names[k])) + 1;
    char *mem = body ? malloc(need) : NULL;
    if (!mem) {
        free(body);
        json_decref(j);
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "event: cannot serialize");
    }
    char *o = mem;
    ev->head = text_put(&o, body, strlen(body));
    ev->head_len = strlen(body);
    const char **slots[6] = {&ev->id, &ev->type, &ev->tenantid, &ev->source, &ev->correlationid,
                             &ev->time};
    for (size_t k = 0; k < 6; k++) {
        const char *v = json_attr(j, names[k]);
        *slots[k] = text_put(&o, v, strlen(v));
    }
    ev->mem = mem;
    free(body);
    json_decref(j);
    return 0;
}

int evbus_event_text_complete(evbus_client_t *c, const char *text, size_t len,
                              evbus_text_event_t *ev, char *err, size_t errlen)
{
    memset(ev, 0, sizeof *ev);
    evbus__scan_t sc;
    if (evbus__scan_event(text, len, &sc) == 0 && text_attrs_ok(&sc) && text_fast(c, &sc, ev) == 0)
        return 0;
    memset(ev, 0, sizeof *ev);
    return text_slow(c, text, len, ev, NULL, err, errlen);
}

/* Fingerprint of a checked text: eight bytes a step, so comparing costs a
 * small part of a scan.  Each step (xor, odd multiply, xor-shift) is a
 * bijection of the state, so a change confined to one word is always
 * seen. */
static uint64_t text_mix(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0xFF51AFD7ED558CCDu;
    return h ^ (h >> 32);
}

/* A fingerprint of a line (change detection between evbusctl's passes,
 * not security).  Four independent lanes of 8 bytes: one lane's chain of
 * dependent multiplies made this a fifth of the first pass. */
static uint64_t text_sum(const char *s, size_t n)
{
    uint64_t a = 0x9E3779B97F4A7C15u ^ n, b = 0xC2B2AE3D27D4EB4Fu, c = 0x165667B19E3779F9u,
             d = 0x85EBCA77C2B2AE63u, w, x, y, z;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        memcpy(&w, s + i, 8);
        memcpy(&x, s + i + 8, 8);
        memcpy(&y, s + i + 16, 8);
        memcpy(&z, s + i + 24, 8);
        a = text_mix(a, w);
        b = text_mix(b, x);
        c = text_mix(c, y);
        d = text_mix(d, z);
    }
    uint64_t h = a ^ (b << 17 | b >> 47) ^ (c << 31 | c >> 33) ^ (d << 47 | d >> 17);
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, s + i, 8);
        h = text_mix(h, w);
    }
    w = 0;
    memcpy(&w, s + i, n - i);
    h = (h ^ w) * 0xFF51AFD7ED558CCDu;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53u;
    return h ^ (h >> 29);
}

_Static_assert(EVBUS__A_COUNT <= 8, "evbus_text_checked_t holds eight attributes");

int evbus_event_text_check_keep(evbus_client_t *c, const char *text, size_t len,
                                uint64_t *out_hash, evbus_text_checked_t *chk, char *err,
                                size_t errlen)
{
    memset(chk, 0, sizeof *chk);
    uint64_t hash;
    evbus__scan_t sc;
    if (evbus__scan_event(text, len, &sc) == 0 && text_attrs_ok(&sc)) {
        int a = sc.val[EVBUS__A_PARTITIONKEY] ? EVBUS__A_PARTITIONKEY : EVBUS__A_TENANTID;
        if (out_hash)
            *out_hash = key_hash(sc.val[a], sc.len[a]);
        /* Offsets are 32-bit; a longer text is simply scanned again. */
        if (len > UINT32_MAX)
            return 0;
        chk->sum = text_sum(text, len);
        chk->len = (uint32_t)len;
        chk->open = (uint32_t)(sc.open - text);
        chk->close = (uint32_t)(sc.close - text);
        for (int k = 0; k < EVBUS__A_COUNT; k++) {
            if (!sc.val[k])
                continue;
            chk->present |= (uint8_t)(1u << k);
            chk->off[k] = (uint32_t)(sc.val[k] - text);
            chk->alen[k] = (uint8_t)sc.len[k];
        }
        chk->fast = 1;
        return 0;
    }
    return text_slow(c, text, len, NULL, out_hash ? out_hash : &hash, err, errlen);
}

int evbus_event_text_complete_checked(evbus_client_t *c, const char *text, size_t len,
                                      const evbus_text_checked_t *chk, evbus_text_event_t *ev,
                                      char *err, size_t errlen)
{
    if (!chk->fast || chk->len != len || text_sum(text, len) != chk->sum)
        return evbus_event_text_complete(c, text, len, ev, err, errlen);
    memset(ev, 0, sizeof *ev);
    evbus__scan_t sc = {.open = text + chk->open, .close = text + chk->close};
    for (int k = 0; k < EVBUS__A_COUNT; k++) {
        if (chk->present & (1u << k)) {
            sc.val[k] = text + chk->off[k];
            sc.len[k] = chk->alen[k];
        }
    }
    if (text_fast(c, &sc, ev) == 0)
        return 0;
    memset(ev, 0, sizeof *ev);
    return text_slow(c, text, len, ev, NULL, err, errlen);
}

int evbus_event_text_check(evbus_client_t *c, const char *text, size_t len, char *err,
                           size_t errlen)
{
    uint64_t hash;
    return evbus_event_text_check_key(c, text, len, &hash, err, errlen);
}

int evbus_event_text_check_key(evbus_client_t *c, const char *text, size_t len,
                               uint64_t *hash, char *err, size_t errlen)
{
    evbus__scan_t sc;
    if (evbus__scan_event(text, len, &sc) == 0 && text_attrs_ok(&sc)) {
        /* The scanner only reports values without escapes: their raw
         * bytes are the decoded string. */
        int a = sc.val[EVBUS__A_PARTITIONKEY] ? EVBUS__A_PARTITIONKEY : EVBUS__A_TENANTID;
        *hash = key_hash(sc.val[a], sc.len[a]);
        return 0;
    }
    return text_slow(c, text, len, NULL, hash, err, errlen);
}

void evbus_text_event_clear(evbus_text_event_t *ev)
{
    free(ev->mem);
    memset(ev, 0, sizeof *ev);
}
