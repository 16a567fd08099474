/* js_compile.c - schema registry and compiler.
 *
 * Adding a document indexes it: every subschema (found through the keywords
 * that hold subschemas, never through enum/const/unknown keywords) gets its
 * base URI and JSON pointer, and every $id, $anchor and $dynamicAnchor is
 * recorded.  Compiling turns a schema into js_node_t records allocated in the
 * registry's arena, resolving each $ref once, compiling each regex once and
 * hashing property names.  Nodes are cached per jansson value, which is how
 * recursive schemas terminate.  The registry is single-threaded; the nodes it
 * hands out are never written again.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonschema/js_internal.h"
#include "jsonschema/js_uri.h"

#define META_2020 "https://json-schema.org/draft/2020-12/schema"

/* ---------- arena: everything compiled lives until js_registry_free ------ */

typedef struct arena_blk {
    struct arena_blk *next;
    size_t used, cap;
    max_align_t data[];
} arena_blk_t;

/* ---------- maps: string -> pointer and pointer -> pointer --------------- */

typedef struct map_ent {
    const void *key; /* NULL = empty slot */
    void *val;
} map_ent_t;

typedef struct map {
    map_ent_t *e;
    size_t cap, n;
    int str_keys;
} map_t;

typedef struct js_doc {
    char *uri;
    json_t *root;
    struct js_doc *next;
} js_doc_t;

/* One schema resource: a document root or a subschema with $id. */
typedef struct res_info {
    char *uri;
    const json_t *root;
    struct res_info *parent;
    js_doc_t *doc;
    size_t n_dyn, cap_dyn;
    char **dyn_names;
    const json_t **dyn_json;
    js_resource_t *rt; /* compiled view, created on first use */
    unsigned rt_session; /* compile session that created rt */
    int vocab;         /* -1 until computed */
    struct res_info *next;
} res_info_t;

/* Where a subschema sits: its base resource and its pointer in the document. */
typedef struct node_info {
    res_info_t *res;
    char *ptr;
} node_info_t;

struct js_registry {
    js_options_t opts;
    arena_blk_t *arena;
    js_doc_t *docs;
    res_info_t *resources;
    map_t res_by_uri;  /* uri -> res_info_t */
    map_t anchors;     /* "uri#name" -> json_t */
    map_t infos;       /* json_t -> node_info_t */
    map_t compiled;    /* json_t -> js_node_t (NULL after a failed compile) */
    map_t schemas;     /* uri string -> js_schema_t */
    pcre2_code **regexes;
    size_t n_regexes, cap_regexes;
    /* keys of nodes created by the compile in progress, to forget on failure */
    const json_t **session;
    size_t n_session, cap_session;
    unsigned session_id;
    char *err;
    size_t errlen;
};

static void *xalloc(js_registry_t *r, size_t size)
{
    size = (size + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    arena_blk_t *b = r->arena;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > 65536 ? size : 65536;
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = r->arena;
        r->arena = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += size;
    memset(p, 0, size);
    return p;
}

static char *xstrndup(js_registry_t *r, const char *s, size_t n)
{
    char *p = xalloc(r, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static char *xstrdup(js_registry_t *r, const char *s)
{
    return xstrndup(r, s, strlen(s));
}

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static size_t map_hash(const map_t *m, const void *key)
{
    if (m->str_keys)
        return hash_bytes(key, strlen(key));
    uintptr_t v = (uintptr_t)key;
    v ^= v >> 17;
    v *= 0x9E3779B97F4A7C15ull;
    return (size_t)(v ^ (v >> 29));
}

static int map_eq(const map_t *m, const void *a, const void *b)
{
    return m->str_keys ? strcmp(a, b) == 0 : a == b;
}

static map_ent_t *map_find(const map_t *m, const void *key)
{
    if (!m->cap)
        return NULL;
    for (size_t i = map_hash(m, key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->e[i].key)
            return NULL;
        if (map_eq(m, m->e[i].key, key))
            return &m->e[i];
    }
}

static void *map_get(const map_t *m, const void *key)
{
    map_ent_t *e = map_find(m, key);
    return e ? e->val : NULL;
}

/* string keys must outlive the map (they are arena or document strings) */
static int map_put(map_t *m, const void *key, void *val)
{
    map_ent_t *e = map_find(m, key);
    if (e) {
        e->val = val;
        return 0;
    }
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        map_ent_t *ne = calloc(cap, sizeof *ne);
        if (!ne)
            return -1;
        map_t nm = {ne, cap, 0, m->str_keys};
        for (size_t i = 0; i < m->cap; i++)
            if (m->e[i].key)
                map_put(&nm, m->e[i].key, m->e[i].val);
        free(m->e);
        *m = nm;
    }
    size_t i = map_hash(m, key) & (m->cap - 1);
    while (m->e[i].key)
        i = (i + 1) & (m->cap - 1);
    m->e[i].key = key;
    m->e[i].val = val;
    m->n++;
    return 0;
}

static int fail(js_registry_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(js_registry_t *r, const char *fmt, ...)
{
    if (r->err && r->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, r->errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---------- numbers --------------------------------------------------------- */

js_num_t js_num_of(const json_t *v)
{
    js_num_t n = {0, 0, 0};
    if (json_is_integer(v)) {
        n.is_int = 1;
        n.i = json_integer_value(v);
        n.d = (double)n.i;
    } else {
        n.d = json_real_value(v);
        if (n.d == floor(n.d) && n.d >= -9223372036854775808.0 && n.d < 9223372036854775808.0) {
            n.is_int = 1;
            n.i = (long long)n.d;
        }
    }
    return n;
}

static int cmp_int_double(long long i, double d)
{
    if (d >= 9223372036854775808.0)
        return -1;
    if (d < -9223372036854775808.0)
        return 1;
    long long t = (long long)d;
    if (i != t)
        return i < t ? -1 : 1;
    double frac = d - (double)t;
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

int js_num_cmp(js_num_t a, js_num_t b)
{
    if (a.is_int && b.is_int)
        return a.i < b.i ? -1 : a.i > b.i;
    if (a.is_int)
        return cmp_int_double(a.i, b.d);
    if (b.is_int)
        return -cmp_int_double(b.i, a.d);
    return a.d < b.d ? -1 : a.d > b.d;
}

/* ---------- registry: documents and their index ----------------------------- */

js_registry_t *js_registry_new(const js_options_t *opts)
{
    js_registry_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    if (opts)
        r->opts = *opts;
    r->res_by_uri.str_keys = 1;
    r->anchors.str_keys = 1;
    r->schemas.str_keys = 1;
    return r;
}

void js_registry_free(js_registry_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_regexes; i++)
        pcre2_code_free(r->regexes[i]);
    free(r->regexes);
    for (js_doc_t *d = r->docs, *n; d; d = n) {
        n = d->next;
        json_decref(d->root);
        free(d->uri);
        free(d);
    }
    for (res_info_t *ri = r->resources, *n; ri; ri = n) {
        n = ri->next;
        free(ri->dyn_names);
        free(ri->dyn_json);
        free(ri);
    }
    for (arena_blk_t *b = r->arena, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    free(r->res_by_uri.e);
    free(r->anchors.e);
    free(r->infos.e);
    free(r->compiled.e);
    free(r->schemas.e);
    free(r->session);
    free(r);
}

static char *strip_fragment(js_registry_t *r, const char *uri)
{
    const char *h = strchr(uri, '#');
    return xstrndup(r, uri, h ? (size_t)(h - uri) : strlen(uri));
}

static res_info_t *res_new(js_registry_t *r, const char *uri, const json_t *root,
                           res_info_t *parent, js_doc_t *doc)
{
    res_info_t *ri = calloc(1, sizeof *ri);
    if (!ri)
        return NULL;
    ri->uri = xstrdup(r, uri);
    ri->root = root;
    ri->parent = parent;
    ri->doc = doc;
    ri->vocab = -1;
    ri->next = r->resources;
    r->resources = ri;
    /* the first resource to claim an identifier keeps it */
    if (ri->uri && !map_get(&r->res_by_uri, ri->uri) && map_put(&r->res_by_uri, ri->uri, ri))
        return NULL;
    return ri->uri ? ri : NULL;
}

static char *ptr_append(js_registry_t *r, const char *ptr, const char *key)
{
    size_t n = strlen(ptr), k = 0;
    for (const char *p = key; *p; p++)
        k += (*p == '~' || *p == '/') ? 2 : 1;
    char *o = xalloc(r, n + k + 2);
    if (!o)
        return NULL;
    memcpy(o, ptr, n);
    char *w = o + n;
    *w++ = '/';
    for (const char *p = key; *p; p++) {
        if (*p == '~') {
            *w++ = '~';
            *w++ = '0';
        } else if (*p == '/') {
            *w++ = '~';
            *w++ = '1';
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    return o;
}

static const char *const single_kw[] = {"additionalProperties", "propertyNames", "items",
                                        "contains", "not", "if", "then", "else",
                                        "unevaluatedItems", "unevaluatedProperties", NULL};
static const char *const map_kw[] = {"properties", "patternProperties", "$defs",
                                     "dependentSchemas", NULL};
static const char *const array_kw[] = {"allOf", "anyOf", "oneOf", "prefixItems", NULL};

static int index_schema(js_registry_t *r, const json_t *s, res_info_t *res, const char *ptr);

static int index_child(js_registry_t *r, const json_t *s, res_info_t *res, const char *ptr,
                       const char *k1, const char *k2)
{
    char *p = ptr_append(r, ptr, k1);
    if (p && k2)
        p = ptr_append(r, p, k2);
    if (!p)
        return fail(r, "out of memory");
    return index_schema(r, s, res, p);
}

static int index_schema(js_registry_t *r, const json_t *s, res_info_t *res, const char *ptr)
{
    if (!json_is_object(s) && !json_is_boolean(s))
        return 0;
    if (map_get(&r->infos, s))
        return 0;
    const json_t *id = json_object_get(s, "$id");
    if (json_is_string(id) && res->root != s) {
        char *abs = js_uri_resolve(res->uri, json_string_value(id));
        if (!abs)
            return fail(r, "out of memory");
        char *base = strip_fragment(r, abs);
        free(abs);
        if (!base || !(res = res_new(r, base, s, res, res->doc)))
            return fail(r, "out of memory");
    }
    node_info_t *ni = xalloc(r, sizeof *ni);
    if (!ni)
        return fail(r, "out of memory");
    ni->res = res;
    ni->ptr = (char *)ptr;
    if (map_put(&r->infos, s, ni))
        return fail(r, "out of memory");
    if (!json_is_object(s))
        return 0;
    const json_t *a = json_object_get(s, "$anchor");
    const json_t *da = json_object_get(s, "$dynamicAnchor");
    for (int k = 0; k < 2; k++) {
        const json_t *name = k ? da : a;
        if (!json_is_string(name))
            continue;
        size_t n = strlen(res->uri) + json_string_length(name) + 2;
        char *key = xalloc(r, n);
        if (!key)
            return fail(r, "out of memory");
        snprintf(key, n, "%s#%s", res->uri, json_string_value(name));
        if (!map_get(&r->anchors, key) && map_put(&r->anchors, key, (void *)s))
            return fail(r, "out of memory");
        if (k == 1) {
            if (res->n_dyn == res->cap_dyn) {
                size_t cap = res->cap_dyn ? res->cap_dyn * 2 : 4;
                char **nn = realloc(res->dyn_names, cap * sizeof *nn);
                if (nn)
                    res->dyn_names = nn;
                const json_t **nj = realloc(res->dyn_json, cap * sizeof *nj);
                if (nj)
                    res->dyn_json = nj;
                if (!nn || !nj)
                    return fail(r, "out of memory");
                res->cap_dyn = cap;
            }
            res->dyn_names[res->n_dyn] = xstrdup(r, json_string_value(name));
            res->dyn_json[res->n_dyn++] = s;
        }
    }
    for (int i = 0; single_kw[i]; i++) {
        const json_t *c = json_object_get(s, single_kw[i]);
        if (c && index_child(r, c, res, ptr, single_kw[i], NULL))
            return -1;
    }
    for (int i = 0; map_kw[i]; i++) {
        const json_t *m = json_object_get(s, map_kw[i]);
        const char *k;
        json_t *c;
        if (!json_is_object(m))
            continue;
        json_object_foreach((json_t *)m, k, c)
        {
            if (index_child(r, c, res, ptr, map_kw[i], k))
                return -1;
        }
    }
    for (int i = 0; array_kw[i]; i++) {
        const json_t *arr = json_object_get(s, array_kw[i]);
        size_t j;
        json_t *c;
        char idx[32];
        if (!json_is_array(arr))
            continue;
        json_array_foreach(arr, j, c)
        {
            snprintf(idx, sizeof idx, "%zu", j);
            if (index_child(r, c, res, ptr, array_kw[i], idx))
                return -1;
        }
    }
    return 0;
}

static int registry_add(js_registry_t *r, const char *uri, json_t *doc)
{
    const json_t *id = json_is_object(doc) ? json_object_get(doc, "$id") : NULL;
    char *id_abs = NULL;
    if (json_is_string(id)) {
        id_abs = js_uri_resolve(uri, json_string_value(id));
        if (!id_abs)
            return fail(r, "out of memory");
        char *h = strchr(id_abs, '#');
        if (h)
            *h = '\0';
    }
    const char *name = uri ? uri : id_abs;
    if (!name || !js_uri_is_absolute(name)) {
        free(id_abs);
        return fail(r, "document has no absolute URI: pass one or give it an absolute $id");
    }
    char *canon = strip_fragment(r, name);
    if (!canon || map_get(&r->res_by_uri, canon)) {
        free(id_abs);
        return canon ? fail(r, "a document is already known as '%s'", canon)
                     : fail(r, "out of memory");
    }
    js_doc_t *d = calloc(1, sizeof *d);
    if (!d || !(d->uri = strdup(canon))) {
        free(d);
        free(id_abs);
        return fail(r, "out of memory");
    }
    d->root = json_incref(doc);
    d->next = r->docs;
    r->docs = d;
    /* the $id names the root resource; the given URI is an alias of it */
    res_info_t *res = res_new(r, id_abs ? id_abs : canon, doc, NULL, d);
    free(id_abs);
    if (!res)
        return fail(r, "out of memory");
    if (!map_get(&r->res_by_uri, canon) && map_put(&r->res_by_uri, xstrdup(r, canon), res))
        return fail(r, "out of memory");
    return index_schema(r, doc, res, xstrdup(r, ""));
}

int js_registry_add(js_registry_t *r, const char *uri, json_t *doc, char *err, size_t errlen)
{
    r->err = err;
    r->errlen = errlen;
    if (!doc)
        return fail(r, "no document");
    return registry_add(r, uri, doc);
}

int js_registry_add_file(js_registry_t *r, const char *path, const char *uri, char *err,
                         size_t errlen)
{
    r->err = err;
    r->errlen = errlen;
    json_error_t je;
    json_t *doc = json_load_file(path, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!doc && strstr(je.text, "too big"))
        doc = json_load_file(path, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
    if (!doc)
        return fail(r, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    char *file_uri = NULL;
    if (!uri && !json_is_string(json_object_get(doc, "$id"))) {
        char *abs = realpath(path, NULL);
        if (abs) {
            file_uri = malloc(strlen(abs) + 8);
            if (file_uri)
                sprintf(file_uri, "file://%s", abs);
            free(abs);
        }
        uri = file_uri;
    }
    int rc = registry_add(r, uri, doc);
    free(file_uri);
    json_decref(doc);
    return rc;
}

/* ---------- reference resolution --------------------------------------------- */

/* An added document wins; then the resolve callback; then, for the 2020-12
 * metaschema URI only, evbus's built-in equivalent (js_meta.c). */
static res_info_t *find_resource(js_registry_t *r, const char *uri)
{
    res_info_t *ri = map_get(&r->res_by_uri, uri);
    if (ri)
        return ri;
    json_t *doc = r->opts.resolve ? r->opts.resolve(uri, r->opts.resolve_ud) : NULL;
    if (!doc && !strcmp(uri, META_2020))
        doc = js_meta_2020_doc();
    if (!doc)
        return NULL;
    char *save = r->err;
    r->err = NULL; /* a failed add just means "not found" to the caller */
    int rc = registry_add(r, uri, doc);
    r->err = save;
    json_decref(doc);
    return rc ? NULL : map_get(&r->res_by_uri, uri);
}

/* Evaluates a JSON pointer from a resource root.  Values the index never saw
 * (under unknown keywords) get a node_info derived from the deepest indexed
 * ancestor, so they still compile with a base URI and a location. */
static const json_t *eval_pointer(js_registry_t *r, res_info_t *res, const char *frag)
{
    const json_t *cur = res->root;
    node_info_t *anc = map_get(&r->infos, cur);
    const char *p = frag;
    char tok[1024];
    while (*p == '/') {
        p++;
        size_t n = 0;
        while (*p && *p != '/' && n + 1 < sizeof tok) {
            if (p[0] == '~' && p[1] == '0') {
                tok[n++] = '~';
                p += 2;
            } else if (p[0] == '~' && p[1] == '1') {
                tok[n++] = '/';
                p += 2;
            } else {
                tok[n++] = *p++;
            }
        }
        tok[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            char *end;
            errno = 0;
            unsigned long idx = strtoul(tok, &end, 10);
            if (!n || *end || errno || (n > 1 && tok[0] == '0'))
                return NULL;
            cur = json_array_get(cur, idx);
        } else {
            return NULL;
        }
        if (!cur)
            return NULL;
        node_info_t *ni = map_get(&r->infos, cur);
        if (ni) {
            anc = ni;
        } else if (anc) {
            node_info_t *syn = xalloc(r, sizeof *syn);
            if (!syn)
                return NULL;
            syn->res = anc->res;
            syn->ptr = ptr_append(r, anc->ptr, tok);
            if (!syn->ptr || map_put(&r->infos, cur, syn))
                return NULL;
            anc = syn;
        }
    }
    return *p ? NULL : cur;
}

/* Resolves ref against base to a schema value; *res_out = its resource. */
static const json_t *resolve_ref(js_registry_t *r, const char *base, const char *ref,
                                 res_info_t **res_out, char **frag_out)
{
    char *abs = js_uri_resolve(base, ref);
    if (!abs) {
        fail(r, "out of memory");
        return NULL;
    }
    char *hash = strchr(abs, '#');
    char *frag = hash ? hash + 1 : abs + strlen(abs);
    if (hash)
        *hash = '\0';
    js_uri_percent_decode(frag);
    res_info_t *res = find_resource(r, abs);
    const json_t *t = NULL;
    if (!res) {
        fail(r, "cannot resolve '%s': no document '%s'", ref, abs);
    } else if (!*frag) {
        t = res->root;
    } else if (*frag == '/') {
        t = eval_pointer(r, res, frag);
        if (!t)
            fail(r, "cannot resolve '%s': no value at pointer '%s' in '%s'", ref, frag, abs);
    } else {
        size_t n = strlen(res->uri) + strlen(frag) + 2;
        char *key = malloc(n);
        if (key) {
            snprintf(key, n, "%s#%s", res->uri, frag);
            t = map_get(&r->anchors, key);
            free(key);
        }
        if (!t)
            fail(r, "cannot resolve '%s': no anchor '%s' in '%s'", ref, frag, abs);
    }
    if (t) {
        node_info_t *ni = map_get(&r->infos, t);
        *res_out = ni ? ni->res : res;
        if (frag_out)
            *frag_out = xstrdup(r, frag);
    }
    free(abs);
    return t;
}

/* ---------- vocabularies ------------------------------------------------------ */

static int vocab_of(js_registry_t *r, res_info_t *res)
{
    if (res->vocab >= 0)
        return res->vocab;
    const json_t *sch = json_is_object(res->root) ? json_object_get(res->root, "$schema") : NULL;
    int v = res->parent ? vocab_of(r, res->parent) : JS_V_ALL;
    if (v < 0)
        return -1;
    if (json_is_string(sch) && strcmp(json_string_value(sch), META_2020) != 0) {
        char *save = r->err;
        r->err = NULL;
        res_info_t *mres = NULL;
        const json_t *meta = resolve_ref(r, res->uri, json_string_value(sch), &mres, NULL);
        r->err = save;
        const json_t *vocabs = json_is_object(meta) ? json_object_get(meta, "$vocabulary") : NULL;
        if (json_is_object(vocabs)) {
            static const struct {
                const char *suffix;
                int bit;
            } known[] = {{"applicator", JS_V_APPLICATOR}, {"validation", JS_V_VALIDATION},
                         {"unevaluated", JS_V_UNEVALUATED}, {"format-annotation", JS_V_FORMAT},
                         {"format-assertion", JS_V_FORMAT}, {"core", 0}, {"meta-data", 0},
                         {"content", 0}};
            const char *k;
            json_t *req;
            v = 0;
            json_object_foreach((json_t *)vocabs, k, req)
            {
                const char *pfx = "https://json-schema.org/draft/2020-12/vocab/";
                int found = 0;
                if (!strncmp(k, pfx, strlen(pfx))) {
                    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
                        if (!strcmp(k + strlen(pfx), known[i].suffix)) {
                            v |= known[i].bit;
                            found = 1;
                        }
                    }
                }
                if (!found && json_is_true(req))
                    return fail(r, "%s: metaschema requires unknown vocabulary '%s'", res->uri, k);
            }
        }
    }
    res->vocab = v;
    return v;
}

/* ---------- ECMA-262 patterns on PCRE2 --------------------------------------- */

static const char *const gc_names[][2] = {
    {"Letter", "L"}, {"Cased_Letter", "L&"}, {"Uppercase_Letter", "Lu"},
    {"Lowercase_Letter", "Ll"}, {"Titlecase_Letter", "Lt"}, {"Modifier_Letter", "Lm"},
    {"Other_Letter", "Lo"}, {"Mark", "M"}, {"Nonspacing_Mark", "Mn"}, {"Spacing_Mark", "Mc"},
    {"Enclosing_Mark", "Me"}, {"Number", "N"}, {"Decimal_Number", "Nd"}, {"digit", "Nd"},
    {"Letter_Number", "Nl"}, {"Other_Number", "No"}, {"Punctuation", "P"},
    {"Connector_Punctuation", "Pc"}, {"Dash_Punctuation", "Pd"}, {"Open_Punctuation", "Ps"},
    {"Close_Punctuation", "Pe"}, {"Initial_Punctuation", "Pi"}, {"Final_Punctuation", "Pf"},
    {"Other_Punctuation", "Po"}, {"Symbol", "S"}, {"Math_Symbol", "Sm"},
    {"Currency_Symbol", "Sc"}, {"Modifier_Symbol", "Sk"}, {"Other_Symbol", "So"},
    {"Separator", "Z"}, {"Space_Separator", "Zs"}, {"Line_Separator", "Zl"},
    {"Paragraph_Separator", "Zp"}, {"Other", "C"}, {"Control", "Cc"}, {"Format", "Cf"},
    {"Surrogate", "Cs"}, {"Private_Use", "Co"}, {"Unassigned", "Cn"}};

/* Rewrites the ECMA-262 constructs PCRE2 reads differently: \d and \w are
 * ASCII-only in ECMA (PCRE2 with UCP makes them Unicode), long General
 * Category names in \p{...}, and the empty classes [] and [^].  Returns a
 * malloc'd string (NULL when out of memory). */
char *js_regex_translate(const char *src, size_t len, size_t *out_len)
{
    char *o = malloc(len * 16 + 16);
    if (!o)
        return NULL;
    size_t w = 0;
    int in_class = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = src[i];
        if (ch == '\\' && i + 1 < len) {
            char e = src[++i];
            const char *rep = NULL;
            if (e == 'd')
                rep = in_class ? "0-9" : "[0-9]";
            else if (e == 'D' && !in_class)
                rep = "[^0-9]";
            else if (e == 'w')
                rep = in_class ? "A-Za-z0-9_" : "[A-Za-z0-9_]";
            else if (e == 'W' && !in_class)
                rep = "[^A-Za-z0-9_]";
            if (rep) {
                memcpy(o + w, rep, strlen(rep));
                w += strlen(rep);
                continue;
            }
            o[w++] = '\\';
            o[w++] = e;
            if ((e == 'p' || e == 'P') && i + 1 < len && src[i + 1] == '{') {
                const char *end = memchr(src + i + 2, '}', len - i - 2);
                if (end) {
                    const char *nm = src + i + 2;
                    size_t nl = (size_t)(end - nm);
                    if (nl > 17 && !strncmp(nm, "General_Category=", 17)) {
                        nm += 17;
                        nl -= 17;
                    } else if (nl > 3 && !strncmp(nm, "gc=", 3)) {
                        nm += 3;
                        nl -= 3;
                    }
                    for (size_t k = 0; k < sizeof gc_names / sizeof gc_names[0]; k++) {
                        if (strlen(gc_names[k][0]) == nl && !strncmp(nm, gc_names[k][0], nl)) {
                            w += (size_t)sprintf(o + w, "{%s}", gc_names[k][1]);
                            i = (size_t)(end - src);
                            break;
                        }
                    }
                }
            }
            continue;
        }
        if (!in_class && ch == '[') {
            if (i + 1 < len && src[i + 1] == ']') {
                memcpy(o + w, "(?!)", 4);
                w += 4;
                i++;
                continue;
            }
            if (i + 2 < len && src[i + 1] == '^' && src[i + 2] == ']') {
                memcpy(o + w, "[\\s\\S]", 6);
                w += 6;
                i += 2;
                continue;
            }
            in_class = 1;
            o[w++] = ch;
            if (i + 1 < len && src[i + 1] == '^')
                o[w++] = src[++i];
            continue;
        }
        if (in_class && ch == ']')
            in_class = 0;
        o[w++] = ch;
    }
    o[w] = '\0';
    *out_len = w;
    return o;
}

/* ---------- compiling -------------------------------------------------------------- */

static js_node_t *compile(js_registry_t *r, const json_t *s, const node_info_t *parent,
                          const char *k1, const char *k2);

static js_resource_t *runtime_resource(js_registry_t *r, res_info_t *ri)
{
    if (ri->rt)
        return ri->rt;
    js_resource_t *rt = xalloc(r, sizeof *rt);
    if (!rt)
        return NULL;
    ri->rt = rt;
    ri->rt_session = r->session_id;
    rt->uri = ri->uri;
    rt->n_dyn = ri->n_dyn;
    rt->dyn_names = xalloc(r, (ri->n_dyn + 1) * sizeof *rt->dyn_names);
    rt->dyn_nodes = xalloc(r, (ri->n_dyn + 1) * sizeof *rt->dyn_nodes);
    if (!rt->dyn_names || !rt->dyn_nodes)
        return NULL;
    for (size_t i = 0; i < ri->n_dyn; i++) {
        rt->dyn_names[i] = ri->dyn_names[i];
        rt->dyn_nodes[i] = compile(r, ri->dyn_json[i], NULL, NULL, NULL);
        if (!rt->dyn_nodes[i])
            return NULL;
    }
    return rt;
}

static int get_count(js_registry_t *r, const js_node_t *n, const json_t *s, const char *kw,
                     long long *out)
{
    const json_t *v = json_object_get(s, kw);
    if (!v)
        return 0;
    if (json_is_number(v)) {
        js_num_t num = js_num_of(v);
        if (num.is_int && num.i >= 0) {
            *out = num.i;
            return 0;
        }
        if (!num.is_int && num.d > 0 && num.d == floor(num.d)) {
            *out = LLONG_MAX;
            return 0;
        }
    }
    return fail(r, "%s#%s: '%s' must be a non-negative integer", n->doc_uri, n->ptr, kw);
}

static int get_number(js_registry_t *r, const js_node_t *n, const json_t *s, const char *kw,
                      int *has, js_num_t *out)
{
    const json_t *v = json_object_get(s, kw);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return fail(r, "%s#%s: '%s' must be a number", n->doc_uri, n->ptr, kw);
    *has = 1;
    *out = js_num_of(v);
    return 0;
}

static js_node_t **compile_list(js_registry_t *r, const json_t *s, const node_info_t *ni,
                                const js_node_t *n, const char *kw, size_t *count)
{
    const json_t *a = json_object_get(s, kw);
    if (!a)
        return NULL;
    if (!json_is_array(a) || json_array_size(a) == 0) {
        fail(r, "%s#%s: '%s' must be a non-empty array of schemas", n->doc_uri, n->ptr, kw);
        return NULL;
    }
    js_node_t **out = xalloc(r, json_array_size(a) * sizeof *out);
    if (!out) {
        fail(r, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < json_array_size(a); i++) {
        char idx[32];
        snprintf(idx, sizeof idx, "%zu", i);
        if (!(out[i] = compile(r, json_array_get(a, i), ni, kw, idx)))
            return NULL;
    }
    *count = json_array_size(a);
    return out;
}

static pcre2_code *compile_regex(js_registry_t *r, const js_node_t *n, const char *kw,
                                 const char *src, size_t len)
{
    int ec;
    PCRE2_SIZE off;
    size_t tl;
    char *t = js_regex_translate(src, len, &tl);
    if (!t) {
        fail(r, "out of memory");
        return NULL;
    }
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)t, tl, JS_PCRE2_OPTIONS, &ec, &off, NULL);
    free(t);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        fail(r, "%s#%s: %s '%s' is not a valid regex (at offset %zu after translation): %s", n->doc_uri, n->ptr, kw,
             src, (size_t)off, (char *)msg);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    if (r->n_regexes == r->cap_regexes) {
        size_t cap = r->cap_regexes ? r->cap_regexes * 2 : 16;
        pcre2_code **nr = realloc(r->regexes, cap * sizeof *nr);
        if (!nr) {
            pcre2_code_free(re);
            fail(r, "out of memory");
            return NULL;
        }
        r->regexes = nr;
        r->cap_regexes = cap;
    }
    r->regexes[r->n_regexes++] = re;
    return re;
}

static int compile_type(js_registry_t *r, js_node_t *n, const json_t *t)
{
    static const struct {
        const char *name;
        unsigned bits;
    } names[] = {{"null", JS_T_NULL},     {"boolean", JS_T_BOOLEAN}, {"object", JS_T_OBJECT},
                 {"array", JS_T_ARRAY},   {"number", JS_T_NUMBER},   {"string", JS_T_STRING},
                 {"integer", JS_T_INTEGER}};
    size_t cnt = json_is_array(t) ? json_array_size(t) : 1;
    for (size_t i = 0; i < cnt; i++) {
        const json_t *e = json_is_array(t) ? json_array_get(t, i) : t;
        size_t k = 0;
        while (k < sizeof names / sizeof names[0] &&
               !(json_is_string(e) && !strcmp(json_string_value(e), names[k].name)))
            k++;
        if (k == sizeof names / sizeof names[0])
            return fail(r, "%s#%s: 'type' must be a type name or an array of them", n->doc_uri,
                        n->ptr);
        n->types |= names[k].bits;
    }
    return 0;
}

static int compile_object_keywords(js_registry_t *r, js_node_t *n, const json_t *s,
                                   const node_info_t *ni, int voc)
{
    const char *k;
    json_t *v;
    if (voc & JS_V_APPLICATOR) {
        const json_t *props = json_object_get(s, "properties");
        if (props && !json_is_object(props))
            return fail(r, "%s#%s: 'properties' must be an object", n->doc_uri, n->ptr);
        if (props && json_object_size(props)) {
            n->n_props = json_object_size(props);
            n->props = xalloc(r, n->n_props * sizeof *n->props);
            size_t slots = 4;
            while (slots < n->n_props * 2)
                slots *= 2;
            n->prop_mask = (uint32_t)(slots - 1);
            n->prop_slots = xalloc(r, slots * sizeof *n->prop_slots);
            if (!n->props || !n->prop_slots)
                return fail(r, "out of memory");
            size_t i = 0;
            for (void *it = json_object_iter((json_t *)props); it;
                 it = json_object_iter_next((json_t *)props, it), i++) {
                js_prop_t *p = &n->props[i];
                p->name = json_object_iter_key(it);
                p->len = json_object_iter_key_len(it);
                p->hash = hash_bytes(p->name, p->len);
                if (!(p->schema = compile(r, json_object_iter_value(it), ni, "properties", p->name)))
                    return -1;
                uint32_t h = p->hash & n->prop_mask;
                while (n->prop_slots[h])
                    h = (h + 1) & n->prop_mask;
                n->prop_slots[h] = p;
            }
        }
        const json_t *pp = json_object_get(s, "patternProperties");
        if (pp && !json_is_object(pp))
            return fail(r, "%s#%s: 'patternProperties' must be an object", n->doc_uri, n->ptr);
        if (pp && json_object_size(pp)) {
            n->pattern_props = xalloc(r, json_object_size(pp) * sizeof *n->pattern_props);
            if (!n->pattern_props)
                return fail(r, "out of memory");
            json_object_foreach((json_t *)pp, k, v)
            {
                js_pattern_prop_t *p = &n->pattern_props[n->n_pattern_props++];
                if (!(p->re = compile_regex(r, n, "patternProperties", k, strlen(k))) ||
                    !(p->schema = compile(r, v, ni, "patternProperties", k)))
                    return -1;
            }
        }
        if ((v = json_object_get(s, "additionalProperties")) &&
            !(n->additional_props = compile(r, v, ni, "additionalProperties", NULL)))
            return -1;
        if ((v = json_object_get(s, "propertyNames")) &&
            !(n->property_names = compile(r, v, ni, "propertyNames", NULL)))
            return -1;
        const json_t *ds = json_object_get(s, "dependentSchemas");
        if (ds && !json_is_object(ds))
            return fail(r, "%s#%s: 'dependentSchemas' must be an object", n->doc_uri, n->ptr);
        if (ds && json_object_size(ds)) {
            n->dep_schemas = xalloc(r, json_object_size(ds) * sizeof *n->dep_schemas);
            if (!n->dep_schemas)
                return fail(r, "out of memory");
            size_t kl;
            json_object_keylen_foreach((json_t *)ds, k, kl, v)
            {
                js_dep_schema_t *d = &n->dep_schemas[n->n_dep_schemas++];
                d->name = k;
                d->len = kl;
                if (!(d->schema = compile(r, v, ni, "dependentSchemas", k)))
                    return -1;
            }
        }
    }
    if (voc & JS_V_VALIDATION) {
        const json_t *req = json_object_get(s, "required");
        if (req && !json_is_array(req))
            return fail(r, "%s#%s: 'required' must be an array of strings", n->doc_uri, n->ptr);
        if (req && json_array_size(req)) {
            n->n_required = json_array_size(req);
            n->required = xalloc(r, n->n_required * sizeof *n->required);
            n->required_lens = xalloc(r, n->n_required * sizeof *n->required_lens);
            if (!n->required || !n->required_lens)
                return fail(r, "out of memory");
            for (size_t i = 0; i < n->n_required; i++) {
                const json_t *e = json_array_get(req, i);
                if (!json_is_string(e))
                    return fail(r, "%s#%s: 'required' must be an array of strings", n->doc_uri,
                                n->ptr);
                n->required[i] = json_string_value(e);
                n->required_lens[i] = json_string_length(e);
            }
        }
        const json_t *dr = json_object_get(s, "dependentRequired");
        if (dr && !json_is_object(dr))
            return fail(r, "%s#%s: 'dependentRequired' must be an object", n->doc_uri, n->ptr);
        if (dr && json_object_size(dr)) {
            n->dep_required = xalloc(r, json_object_size(dr) * sizeof *n->dep_required);
            if (!n->dep_required)
                return fail(r, "out of memory");
            size_t kl;
            json_object_keylen_foreach((json_t *)dr, k, kl, v)
            {
                js_dep_required_t *d = &n->dep_required[n->n_dep_required++];
                if (!json_is_array(v))
                    return fail(r, "%s#%s: 'dependentRequired/%s' must be an array of strings",
                                n->doc_uri, n->ptr, k);
                d->name = k;
                d->len = kl;
                d->n = json_array_size(v);
                d->names = xalloc(r, (d->n + 1) * sizeof *d->names);
                d->lens = xalloc(r, (d->n + 1) * sizeof *d->lens);
                if (!d->names || !d->lens)
                    return fail(r, "out of memory");
                for (size_t i = 0; i < d->n; i++) {
                    const json_t *e = json_array_get(v, i);
                    if (!json_is_string(e))
                        return fail(r, "%s#%s: 'dependentRequired/%s' must be an array of strings",
                                    n->doc_uri, n->ptr, k);
                    d->names[i] = json_string_value(e);
                    d->lens[i] = json_string_length(e);
                }
            }
        }
        if (get_count(r, n, s, "minProperties", &n->min_props) ||
            get_count(r, n, s, "maxProperties", &n->max_props))
            return -1;
    }
    for (size_t i = 0; i < n->n_props; i++)
        n->props[i].required_idx = -1;
    n->required_by_mask = n->n_props && n->n_required && n->n_required <= 64;
    for (size_t i = 0; i < n->n_required && n->required_by_mask; i++) {
        size_t j = 0;
        while (j < n->n_props && !(n->props[j].len == n->required_lens[i] &&
                                   !memcmp(n->props[j].name, n->required[i], n->required_lens[i])))
            j++;
        if (j == n->n_props || n->props[j].required_idx >= 0)
            n->required_by_mask = 0;
        else
            n->props[j].required_idx = (int)i;
    }
    if (n->required_by_mask)
        n->required_mask = n->n_required == 64 ? ~0ull : (1ull << n->n_required) - 1;
    if (n->n_props || n->n_pattern_props || n->additional_props || n->property_names)
        n->flags |= JS_F_OBJECT_ITER;
    if (n->n_required || n->n_dep_required || n->n_dep_schemas || n->min_props >= 0 ||
        n->max_props >= 0)
        n->flags |= JS_F_OBJECT_OTHER;
    return 0;
}

static int compile_keywords(js_registry_t *r, js_node_t *n, const json_t *s, const node_info_t *ni,
                            int voc)
{
    const json_t *v;
    const char *base = ni->res->uri;
    if ((v = json_object_get(s, "$ref"))) {
        res_info_t *tres = NULL;
        const json_t *t = json_is_string(v) ? resolve_ref(r, base, json_string_value(v), &tres, NULL)
                                            : NULL;
        if (!json_is_string(v))
            return fail(r, "%s#%s: '$ref' must be a string", n->doc_uri, n->ptr);
        if (!t || !(n->ref = compile(r, t, NULL, NULL, NULL)))
            return -1;
    }
    if ((v = json_object_get(s, "$dynamicRef"))) {
        res_info_t *tres = NULL;
        char *frag = NULL;
        if (!json_is_string(v))
            return fail(r, "%s#%s: '$dynamicRef' must be a string", n->doc_uri, n->ptr);
        const json_t *t = resolve_ref(r, base, json_string_value(v), &tres, &frag);
        if (!t || !(n->dynref = compile(r, t, NULL, NULL, NULL)))
            return -1;
        /* dynamic only when the static target is itself a matching
         * $dynamicAnchor ("bookending"); otherwise it is a plain $ref */
        const json_t *da = json_is_object(t) ? json_object_get(t, "$dynamicAnchor") : NULL;
        if (frag && *frag && frag[0] != '/' && json_is_string(da) &&
            !strcmp(json_string_value(da), frag))
            n->dynref_anchor = frag;
    }
    if (voc & JS_V_APPLICATOR) {
        if ((json_object_get(s, "allOf") && !(n->all_of = compile_list(r, s, ni, n, "allOf", &n->n_all))) ||
            (json_object_get(s, "anyOf") && !(n->any_of = compile_list(r, s, ni, n, "anyOf", &n->n_any))) ||
            (json_object_get(s, "oneOf") && !(n->one_of = compile_list(r, s, ni, n, "oneOf", &n->n_one))))
            return -1;
        static const char *const kws[] = {"not", "if", "then", "else", "items", "contains"};
        js_node_t **dst[] = {&n->not_, &n->if_, &n->then_, &n->else_, &n->items, &n->contains};
        for (size_t i = 0; i < 6; i++)
            if ((v = json_object_get(s, kws[i])) && !(*dst[i] = compile(r, v, ni, kws[i], NULL)))
                return -1;
        if (json_object_get(s, "prefixItems") &&
            !(n->prefix_items = compile_list(r, s, ni, n, "prefixItems", &n->n_prefix)))
            return -1;
    }
    if (voc & JS_V_UNEVALUATED) {
        if ((v = json_object_get(s, "unevaluatedProperties")) &&
            !(n->unevaluated_props = compile(r, v, ni, "unevaluatedProperties", NULL)))
            return -1;
        if ((v = json_object_get(s, "unevaluatedItems")) &&
            !(n->unevaluated_items = compile(r, v, ni, "unevaluatedItems", NULL)))
            return -1;
    }
    if (compile_object_keywords(r, n, s, ni, voc))
        return -1;
    if (voc & JS_V_VALIDATION) {
        if ((v = json_object_get(s, "type")) && compile_type(r, n, v))
            return -1;
        n->const_value = json_object_get(s, "const");
        if ((v = json_object_get(s, "enum"))) {
            if (!json_is_array(v))
                return fail(r, "%s#%s: 'enum' must be an array", n->doc_uri, n->ptr);
            n->enum_values = v;
        }
        if (get_count(r, n, s, "minItems", &n->min_items) ||
            get_count(r, n, s, "maxItems", &n->max_items) ||
            get_count(r, n, s, "minContains", &n->min_contains) ||
            get_count(r, n, s, "maxContains", &n->max_contains) ||
            get_count(r, n, s, "minLength", &n->min_len) ||
            get_count(r, n, s, "maxLength", &n->max_len))
            return -1;
        if ((v = json_object_get(s, "uniqueItems"))) {
            if (!json_is_boolean(v))
                return fail(r, "%s#%s: 'uniqueItems' must be a boolean", n->doc_uri, n->ptr);
            n->unique_items = json_is_true(v);
        }
        if ((v = json_object_get(s, "pattern"))) {
            if (!json_is_string(v))
                return fail(r, "%s#%s: 'pattern' must be a string", n->doc_uri, n->ptr);
            n->pattern_src = json_string_value(v);
            if (!(n->pattern = compile_regex(r, n, "pattern", n->pattern_src, json_string_length(v))))
                return -1;
        }
        if (get_number(r, n, s, "minimum", &n->has_min, &n->min) ||
            get_number(r, n, s, "maximum", &n->has_max, &n->max) ||
            get_number(r, n, s, "exclusiveMinimum", &n->has_xmin, &n->xmin) ||
            get_number(r, n, s, "exclusiveMaximum", &n->has_xmax, &n->xmax) ||
            get_number(r, n, s, "multipleOf", &n->has_mult, &n->mult))
            return -1;
        if (n->has_mult && js_num_cmp(n->mult, (js_num_t){1, 0, 0}) <= 0)
            return fail(r, "%s#%s: 'multipleOf' must be greater than 0", n->doc_uri, n->ptr);
    }
    if ((voc & JS_V_FORMAT) && r->opts.format_assert && (v = json_object_get(s, "format"))) {
        if (!json_is_string(v))
            return fail(r, "%s#%s: 'format' must be a string", n->doc_uri, n->ptr);
        n->format_name = json_string_value(v);
        n->format = js_format_lookup(n->format_name);
    }
    if (n->contains || n->prefix_items || n->items || n->min_items >= 0 || n->max_items >= 0 ||
        n->unique_items)
        n->flags |= JS_F_ARRAY;
    if (n->min_len >= 0 || n->max_len >= 0 || n->pattern || n->format)
        n->flags |= JS_F_STRING;
    if (n->has_min || n->has_max || n->has_xmin || n->has_xmax || n->has_mult)
        n->flags |= JS_F_NUMBER;
    if (n->all_of || n->any_of || n->one_of || n->not_ || n->if_)
        n->flags |= JS_F_APPLICATORS;
    if (n->unevaluated_props || n->unevaluated_items)
        n->flags |= JS_F_UNEVALUATED;
    return 0;
}

static int session_note(js_registry_t *r, const json_t *s)
{
    if (r->n_session == r->cap_session) {
        size_t cap = r->cap_session ? r->cap_session * 2 : 64;
        const json_t **ns = realloc(r->session, cap * sizeof *ns);
        if (!ns)
            return -1;
        r->session = ns;
        r->cap_session = cap;
    }
    r->session[r->n_session++] = s;
    return 0;
}

/* Compiles schema value s.  parent/k1/k2 locate it when the index does not
 * know it (a subschema under a keyword reached through an unindexed parent). */
static js_node_t *compile(js_registry_t *r, const json_t *s, const node_info_t *parent,
                          const char *k1, const char *k2)
{
    js_node_t *n = map_get(&r->compiled, s);
    if (n)
        return n;
    node_info_t *ni = map_get(&r->infos, s);
    if (!ni) {
        if (!parent) {
            fail(r, "internal: schema value without location");
            return NULL;
        }
        ni = xalloc(r, sizeof *ni);
        if (!ni || !(ni->ptr = ptr_append(r, parent->ptr, k1)) ||
            (k2 && !(ni->ptr = ptr_append(r, ni->ptr, k2))) || map_put(&r->infos, s, ni)) {
            fail(r, "out of memory");
            return NULL;
        }
        ni->res = parent->res;
    }
    n = xalloc(r, sizeof *n);
    if (!n || map_put(&r->compiled, s, n) || session_note(r, s)) {
        fail(r, "out of memory");
        return NULL;
    }
    n->doc_uri = ni->res->doc->uri;
    n->ptr = ni->ptr;
    n->min_props = n->max_props = n->min_items = n->max_items = -1;
    n->min_len = n->max_len = n->max_contains = -1;
    n->min_contains = 1;
    if (json_is_boolean(s)) {
        n->kind = json_is_true(s) ? JS_K_TRUE : JS_K_FALSE;
        return n;
    }
    if (!json_is_object(s)) {
        fail(r, "%s#%s: a schema must be an object or a boolean", n->doc_uri, n->ptr);
        return NULL;
    }
    n->kind = JS_K_OBJECT;
    int voc = vocab_of(r, ni->res);
    if (voc < 0 || !(n->owner = runtime_resource(r, ni->res)) || compile_keywords(r, n, s, ni, voc))
        return NULL;
    return n;
}

const js_schema_t *js_compile(js_registry_t *r, const char *uri, char *err, size_t errlen)
{
    r->err = err;
    r->errlen = errlen;
    if (!uri) {
        fail(r, "no schema URI");
        return NULL;
    }
    js_schema_t *sc = map_get(&r->schemas, uri);
    if (sc)
        return sc;
    r->n_session = 0;
    r->session_id++;
    res_info_t *res = NULL;
    const json_t *t = resolve_ref(r, NULL, uri, &res, NULL);
    js_node_t *n = t ? compile(r, t, NULL, NULL, NULL) : NULL;
    char *key = n ? xstrdup(r, uri) : NULL;
    sc = key ? xalloc(r, sizeof *sc) : NULL;
    if (!sc || map_put(&r->schemas, key, sc)) {
        /* nodes of a failed compile may be half-filled: forget them all */
        for (size_t i = 0; i < r->n_session; i++)
            map_put(&r->compiled, r->session[i], NULL);
        for (res_info_t *ri = r->resources; ri; ri = ri->next)
            if (ri->rt && ri->rt_session == r->session_id)
                ri->rt = NULL;
        if (n)
            fail(r, "out of memory");
        return NULL;
    }
    sc->root = n;
    sc->doc_uri = n->doc_uri;
    return sc;
}
