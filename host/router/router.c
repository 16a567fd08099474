/*
 * router — pattern syntax, the subscription trie and the per-thread cache.
 *
 * The trie has one node per pattern prefix.  A node's children are its
 * literal segments (kept sorted for binary search), one `*` child and one
 * `**` child.  Matching walks the type segment by segment keeping the SET
 * of live nodes: a `**` node stays live on every segment (it absorbs it),
 * and entering a node also enters its `**` child (zero segments), which is
 * what makes "a.**" match "a".  Node marks live in the caller's cache, not
 * in the nodes, so a frozen router is never written during matching.
 *
 * This file does not know what targets are, and does not log.
 */
#include "router/router.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NODE_NONE UINT32_MAX
#define CACHE_MAX_TYPES 1024u
#define CACHE_SLOTS 2048u /* power of two, twice CACHE_MAX_TYPES */

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fputs("router: out of memory\n", stderr);
        abort();
    }
    return q;
}

/* ---- syntax ---------------------------------------------------------- */

/* What each byte may be in a type or pattern (besides '*' in patterns). */
enum { TYPE_OTHER, TYPE_SEG, TYPE_DOT };
static const unsigned char type_byte[256] = {
    ['a' ... 'z'] = TYPE_SEG, ['0' ... '9'] = TYPE_SEG, ['_'] = TYPE_SEG, ['-'] = TYPE_SEG,
    ['.'] = TYPE_DOT,
};

static bool seg_char_ok(char c)
{
    return type_byte[(unsigned char)c] == TYPE_SEG;
}

static int check_syntax(const char *s, bool wildcards, char *err, size_t errlen)
{
    const char *what = wildcards ? "pattern" : "event type";
    if (!s || !*s) {
        set_err(err, errlen, "empty %s", what);
        return -1;
    }
    size_t start = 0;
    for (size_t i = 0;; i++) {
        char c = s[i];
        if (c == '.' || c == '\0') {
            size_t len = i - start;
            if (len == 0) {
                set_err(err, errlen, "empty segment at offset %zu", start);
                return -1;
            }
            size_t stars = 0;
            for (size_t k = start; k < i; k++)
                stars += s[k] == '*';
            if (stars && (stars != len || len > 2)) {
                set_err(err, errlen,
                        "segment '%.*s' at offset %zu: a wildcard must be a whole segment, '*' or '**'",
                        (int)len, s + start, start);
                return -1;
            }
            if (c == '\0')
                return 0;
            start = i + 1;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
            set_err(err, errlen, "whitespace at offset %zu", i);
            return -1;
        }
        if (c >= 'A' && c <= 'Z') {
            set_err(err, errlen, "uppercase character '%c' at offset %zu (use lowercase)", c, i);
            return -1;
        }
        if (c == '*') {
            if (!wildcards) {
                set_err(err, errlen, "wildcard '*' at offset %zu is not allowed in an event type", i);
                return -1;
            }
            continue;
        }
        if (!seg_char_ok(c)) {
            if (c > 0x20 && c < 0x7f)
                set_err(err, errlen, "invalid character '%c' at offset %zu (allowed: a-z 0-9 _ -)", c, i);
            else
                set_err(err, errlen, "invalid byte 0x%02x at offset %zu (allowed: a-z 0-9 _ -)",
                        (unsigned)(unsigned char)c, i);
            return -1;
        }
    }
}

int router_pattern_check(const char *pattern, char *err, size_t errlen)
{
    return check_syntax(pattern, true, err, errlen);
}

/* The type check runs on every event, so a valid type is recognised with
 * one table load per byte, and only a type it refuses goes through
 * check_syntax() for the message. */
static bool type_valid(const char *s)
{
    size_t seg = 0; /* bytes in the current segment */
    for (const unsigned char *p = (const unsigned char *)s;; p++) {
        unsigned k = type_byte[*p];
        if (k == TYPE_SEG)
            seg++;
        else if (k == TYPE_DOT && seg)
            seg = 0;
        else
            return *p == '\0' && seg;
    }
}

int router_type_check(const char *type, char *err, size_t errlen)
{
    if (type && type_valid(type))
        return 0;
    return check_syntax(type, false, err, errlen);
}

/* A segment as a slice of a longer string. */
typedef struct seg {
    const char *p;
    size_t len;
} seg_t;

static size_t split(const char *s, seg_t *out)
{
    size_t n = 0;
    const char *start = s;
    for (const char *q = s;; q++) {
        if (*q == '.' || *q == '\0') {
            out[n].p = start;
            out[n].len = (size_t)(q - start);
            n++;
            if (*q == '\0')
                return n;
            start = q + 1;
        }
    }
}

static size_t count_segments(const char *s)
{
    size_t n = 1;
    for (; *s; s++)
        n += *s == '.';
    return n;
}

static bool seg_is(seg_t s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

/* NFA over pattern positions: live[i] means the first i pattern segments
 * have matched the type prefix consumed so far.  Independent of the trie,
 * which lets tests cross-check the two. */
bool router_pattern_match(const char *pattern, const char *type)
{
    if (router_pattern_check(pattern, NULL, 0) != 0 || router_type_check(type, NULL, 0) != 0)
        return false;
    size_t np = count_segments(pattern), nt = count_segments(type);
    seg_t *ps = xrealloc(NULL, np * sizeof *ps);
    seg_t *ts = xrealloc(NULL, nt * sizeof *ts);
    bool *live = xrealloc(NULL, (np + 1) * sizeof *live);
    bool *next = xrealloc(NULL, (np + 1) * sizeof *next);
    split(pattern, ps);
    split(type, ts);

    memset(live, 0, (np + 1) * sizeof *live);
    live[0] = true;
    for (size_t i = 0; i < np; i++) /* zero-segment `**` closure */
        if (live[i] && seg_is(ps[i], "**"))
            live[i + 1] = true;
    for (size_t t = 0; t < nt; t++) {
        memset(next, 0, (np + 1) * sizeof *next);
        for (size_t i = 0; i < np; i++) {
            if (!live[i])
                continue;
            if (seg_is(ps[i], "**"))
                next[i] = true;
            else if (seg_is(ps[i], "*") ||
                     (ps[i].len == ts[t].len && memcmp(ps[i].p, ts[t].p, ts[t].len) == 0))
                next[i + 1] = true;
        }
        for (size_t i = 0; i < np; i++)
            if (next[i] && seg_is(ps[i], "**"))
                next[i + 1] = true;
        bool *tmp = live;
        live = next;
        next = tmp;
    }
    bool ok = live[np];
    free(ps);
    free(ts);
    free(live);
    free(next);
    return ok;
}

/* ---- trie ------------------------------------------------------------ */

typedef struct redge {
    char *seg;
    size_t len;
    uint32_t child;
} redge_t;

typedef struct rsub {
    router_entry_t e;
    uint32_t order; /* router_add() order: the last tie-breaker */
} rsub_t;

typedef struct rnode {
    redge_t *lit; /* sorted by (bytes, length) */
    uint32_t n_lit, cap_lit;
    uint32_t star, star2;
    bool is_star2;
    rsub_t *subs;
    uint32_t n_subs, cap_subs;
} rnode_t;

struct router {
    uint64_t id;
    rnode_t *nodes;
    uint32_t n_nodes, cap_nodes;
    size_t count;
    bool frozen;
};

static atomic_uint_fast64_t router_next_id = 1;

static int seg_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static uint32_t node_new(router_t *r, bool is_star2)
{
    if (r->n_nodes == r->cap_nodes) {
        r->cap_nodes = r->cap_nodes ? r->cap_nodes * 2 : 16;
        r->nodes = xrealloc(r->nodes, r->cap_nodes * sizeof *r->nodes);
    }
    rnode_t *n = &r->nodes[r->n_nodes];
    memset(n, 0, sizeof *n);
    n->star = n->star2 = NODE_NONE;
    n->is_star2 = is_star2;
    return r->n_nodes++;
}

router_t *router_new(void)
{
    router_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->id = atomic_fetch_add(&router_next_id, 1);
    node_new(r, false);
    return r;
}

/* Index of the literal edge for seg in node, or where it would be inserted. */
static uint32_t lit_find(const rnode_t *n, const char *seg, size_t len, bool *found)
{
    uint32_t lo = 0, hi = n->n_lit;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = seg_cmp(n->lit[mid].seg, n->lit[mid].len, seg, len);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static uint32_t child_for(router_t *r, uint32_t node, seg_t s)
{
    if (seg_is(s, "*")) {
        if (r->nodes[node].star == NODE_NONE) {
            uint32_t c = node_new(r, false);
            r->nodes[node].star = c;
        }
        return r->nodes[node].star;
    }
    if (seg_is(s, "**")) {
        if (r->nodes[node].star2 == NODE_NONE) {
            uint32_t c = node_new(r, true);
            r->nodes[node].star2 = c;
        }
        return r->nodes[node].star2;
    }
    bool found;
    uint32_t at = lit_find(&r->nodes[node], s.p, s.len, &found);
    if (found)
        return r->nodes[node].lit[at].child;
    uint32_t c = node_new(r, false);
    rnode_t *n = &r->nodes[node];
    if (n->n_lit == n->cap_lit) {
        n->cap_lit = n->cap_lit ? n->cap_lit * 2 : 4;
        n->lit = xrealloc(n->lit, n->cap_lit * sizeof *n->lit);
    }
    memmove(&n->lit[at + 1], &n->lit[at], (n->n_lit - at) * sizeof *n->lit);
    char *copy = xrealloc(NULL, s.len + 1);
    memcpy(copy, s.p, s.len);
    copy[s.len] = '\0';
    n->lit[at] = (redge_t){.seg = copy, .len = s.len, .child = c};
    n->n_lit++;
    return c;
}

int router_add(router_t *r, const char *pattern, int priority, uint32_t seq, void *target,
               char *err, size_t errlen)
{
    if (r->frozen) {
        set_err(err, errlen, "router is frozen; cannot add '%s'", pattern ? pattern : "");
        return -1;
    }
    char perr[160];
    if (router_pattern_check(pattern, perr, sizeof perr) != 0) {
        set_err(err, errlen, "invalid pattern '%s': %s", pattern ? pattern : "", perr);
        return -1;
    }
    size_t ns = count_segments(pattern);
    seg_t *segs = xrealloc(NULL, ns * sizeof *segs);
    split(pattern, segs);
    uint32_t node = 0;
    for (size_t i = 0; i < ns; i++)
        node = child_for(r, node, segs[i]);
    free(segs);

    rnode_t *n = &r->nodes[node];
    if (n->n_subs == n->cap_subs) {
        n->cap_subs = n->cap_subs ? n->cap_subs * 2 : 2;
        n->subs = xrealloc(n->subs, n->cap_subs * sizeof *n->subs);
    }
    n->subs[n->n_subs++] = (rsub_t){
        .e = {.target = target, .priority = priority, .seq = seq},
        .order = (uint32_t)r->count,
    };
    r->count++;
    return 0;
}

void router_freeze(router_t *r)
{
    r->frozen = true;
}

size_t router_count(const router_t *r)
{
    return r->count;
}

void router_free(router_t *r)
{
    if (!r)
        return;
    for (uint32_t i = 0; i < r->n_nodes; i++) {
        for (uint32_t k = 0; k < r->nodes[i].n_lit; k++)
            free(r->nodes[i].lit[k].seg);
        free(r->nodes[i].lit);
        free(r->nodes[i].subs);
    }
    free(r->nodes);
    free(r);
}

/* ---- cache and matching ---------------------------------------------- */

typedef struct cache_slot {
    char *type; /* NULL = empty slot */
    router_entry_t *items;
    size_t count;
} cache_slot_t;

struct router_cache {
    uint64_t router_id; /* 0 = never used */
    cache_slot_t *slots;
    size_t used;

    /* scratch for one match, sized for the current router */
    uint32_t *mark;
    uint32_t *cur, *next;
    uint32_t n_cur, n_next;
    uint32_t cap_nodes;
    uint32_t gen;
    rsub_t *found;
    size_t n_found, cap_found;
};

router_cache_t *router_cache_new(void)
{
    router_cache_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->slots = calloc(CACHE_SLOTS, sizeof *c->slots);
    if (!c->slots) {
        free(c);
        return NULL;
    }
    return c;
}

static void cache_clear(router_cache_t *c)
{
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        free(c->slots[i].type);
        free(c->slots[i].items);
    }
    memset(c->slots, 0, CACHE_SLOTS * sizeof *c->slots);
    c->used = 0;
}

void router_cache_free(router_cache_t *c)
{
    if (!c)
        return;
    cache_clear(c);
    free(c->slots);
    free(c->mark);
    free(c->cur);
    free(c->next);
    free(c->found);
    free(c);
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static void mark_next_gen(router_cache_t *c)
{
    if (++c->gen == 0) { /* wrapped: old marks could alias the new generation */
        memset(c->mark, 0, c->cap_nodes * sizeof *c->mark);
        c->gen = 1;
    }
}

/* Adds node and, transitively, its `**` children to the next set. */
static void enter(const router_t *r, router_cache_t *c, uint32_t node)
{
    while (node != NODE_NONE && c->mark[node] != c->gen) {
        c->mark[node] = c->gen;
        c->next[c->n_next++] = node;
        node = r->nodes[node].star2;
    }
}

static void swap_sets(router_cache_t *c)
{
    uint32_t *t = c->cur;
    c->cur = c->next;
    c->next = t;
    c->n_cur = c->n_next;
    c->n_next = 0;
}

static int cmp_by_target(const void *a, const void *b)
{
    const rsub_t *x = a, *y = b;
    if (x->e.target != y->e.target)
        return (uintptr_t)x->e.target < (uintptr_t)y->e.target ? -1 : 1;
    if (x->e.priority != y->e.priority)
        return x->e.priority < y->e.priority ? -1 : 1;
    if (x->e.seq != y->e.seq)
        return x->e.seq < y->e.seq ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int cmp_by_order(const void *a, const void *b)
{
    const rsub_t *x = a, *y = b;
    if (x->e.priority != y->e.priority)
        return x->e.priority < y->e.priority ? -1 : 1;
    if (x->e.seq != y->e.seq)
        return x->e.seq < y->e.seq ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Resolves type into c->found (sorted, one entry per target). */
static void resolve(const router_t *r, router_cache_t *c, const char *type)
{
    if (c->cap_nodes < r->n_nodes) {
        c->mark = xrealloc(c->mark, r->n_nodes * sizeof *c->mark);
        memset(c->mark, 0, r->n_nodes * sizeof *c->mark);
        c->cur = xrealloc(c->cur, r->n_nodes * sizeof *c->cur);
        c->next = xrealloc(c->next, r->n_nodes * sizeof *c->next);
        c->cap_nodes = r->n_nodes;
        c->gen = 0;
    }
    c->n_found = 0;
    c->n_next = 0;
    mark_next_gen(c);
    enter(r, c, 0);
    swap_sets(c);

    const char *p = type;
    while (c->n_cur > 0) {
        const char *end = strchr(p, '.');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        mark_next_gen(c);
        for (uint32_t i = 0; i < c->n_cur; i++) {
            const rnode_t *n = &r->nodes[c->cur[i]];
            if (n->is_star2)
                enter(r, c, c->cur[i]);
            bool found;
            uint32_t at = lit_find(n, p, len, &found);
            if (found)
                enter(r, c, n->lit[at].child);
            if (n->star != NODE_NONE)
                enter(r, c, n->star);
        }
        swap_sets(c);
        if (!end)
            break;
        p = end + 1;
    }

    for (uint32_t i = 0; i < c->n_cur; i++) {
        const rnode_t *n = &r->nodes[c->cur[i]];
        if (n->n_subs == 0) /* inner nodes; memcpy must not see NULL */
            continue;
        if (c->n_found + n->n_subs > c->cap_found) {
            c->cap_found = (c->n_found + n->n_subs) * 2;
            c->found = xrealloc(c->found, c->cap_found * sizeof *c->found);
        }
        memcpy(&c->found[c->n_found], n->subs, n->n_subs * sizeof *n->subs);
        c->n_found += n->n_subs;
    }
    if (c->n_found < 2)
        return;
    qsort(c->found, c->n_found, sizeof *c->found, cmp_by_target);
    size_t w = 1;
    for (size_t i = 1; i < c->n_found; i++)
        if (c->found[i].e.target != c->found[w - 1].e.target)
            c->found[w++] = c->found[i];
    c->n_found = w;
    qsort(c->found, c->n_found, sizeof *c->found, cmp_by_order);
}

router_list_t router_match(const router_t *r, router_cache_t *c, const char *type)
{
    if (c->router_id != r->id) {
        cache_clear(c);
        c->router_id = r->id;
    }
    if (!type)
        return (router_list_t){.items = NULL, .count = 0};

    /* Only valid types are ever cached, so a hit needs no syntax check:
     * the check runs once per type, not once per event. */
    uint64_t h = hash_str(type);
    size_t slot = h & (CACHE_SLOTS - 1);
    while (c->slots[slot].type) {
        if (strcmp(c->slots[slot].type, type) == 0)
            return (router_list_t){.items = c->slots[slot].items, .count = c->slots[slot].count};
        slot = (slot + 1) & (CACHE_SLOTS - 1);
    }
    if (router_type_check(type, NULL, 0) != 0)
        return (router_list_t){.items = NULL, .count = 0};

    resolve(r, c, type);
    router_entry_t *items = NULL;
    if (c->n_found) {
        items = xrealloc(NULL, c->n_found * sizeof *items);
        for (size_t i = 0; i < c->n_found; i++)
            items[i] = c->found[i].e;
    }
    if (c->used >= CACHE_MAX_TYPES) {
        cache_clear(c);
        slot = h & (CACHE_SLOTS - 1);
    }
    size_t tlen = strlen(type);
    char *key = xrealloc(NULL, tlen + 1);
    memcpy(key, type, tlen + 1);
    c->slots[slot] = (cache_slot_t){.type = key, .items = items, .count = c->n_found};
    c->used++;
    return (router_list_t){.items = items, .count = c->n_found};
}
