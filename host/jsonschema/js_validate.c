/* js_validate.c - checks a jansson value against a compiled schema.
 *
 * Validation reads the compiled nodes and the instance and writes only to
 * its own stack: the instance path and the dynamic scope are linked lists of
 * stack frames, and a JSON Pointer string is built only when an error is
 * reported.  Evaluated-property/item annotations (for unevaluated*) are
 * tracked only below a node that has an unevaluated keyword, so schemas
 * without them pay nothing.  Subschemas of anyOf/oneOf/not/if/contains are
 * evaluated "quietly": their failures are reported through the keyword.
 */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonschema/js_internal.h"

/* deep enough for any sane schema; stops {"$ref": "#"} loops and stack
 * exhaustion on hostile input */
#define JS_MAX_DEPTH 400

typedef struct seg {
    const struct seg *up;
    const char *key; /* NULL: array index */
    size_t len;
    size_t idx;
} seg_t;

typedef struct scope {
    const struct scope *up;
    const js_resource_t *res;
} scope_t;

/* evaluated properties (by iteration order) or items (by index) */
typedef struct ann {
    uint64_t *bits;
    size_t n;
    int all;
    uint64_t inl[4];
} ann_t;

typedef struct vctx {
    js_errors_t *errs;
    int all;   /* report every error */
    int quiet; /* report nothing (boolean answer wanted) */
    int oom;
    unsigned depth;
    const seg_t *path;
    const scope_t *scope;
    const char *root_doc;
    pcre2_match_data *md;
} vctx_t;

#define STOP(c) ((c)->quiet || !(c)->all)
#define FAILED()                                                                                   \
    do {                                                                                           \
        ok = 0;                                                                                    \
        if (STOP(c))                                                                               \
            return 0;                                                                              \
    } while (0)

/* ---------- per-thread PCRE2 match block ------------------------------------ */

static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static pthread_key_t md_key;
static int md_key_ok;

static void md_destroy(void *p)
{
    pcre2_match_data_free(p);
}

static void md_init(void)
{
    md_key_ok = pthread_key_create(&md_key, md_destroy) == 0;
}

pcre2_match_data *js_match_data(void)
{
    pthread_once(&md_once, md_init);
    if (!md_key_ok)
        return NULL;
    pcre2_match_data *md = pthread_getspecific(md_key);
    if (!md) {
        md = pcre2_match_data_create(1, NULL);
        if (md && pthread_setspecific(md_key, md)) {
            pcre2_match_data_free(md);
            md = NULL;
        }
    }
    return md;
}

static int re_match(vctx_t *c, const pcre2_code *re, const char *s, size_t len)
{
    if (!c->md && !(c->md = js_match_data())) {
        c->oom = 1;
        return 0;
    }
    return pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, c->md, NULL) >= 0;
}

/* ---------- annotations ------------------------------------------------------ */

static int ann_init(vctx_t *c, ann_t *a, size_t n)
{
    size_t words = (n + 63) / 64;
    a->n = n;
    a->all = 0;
    a->bits = a->inl;
    if (words > sizeof a->inl / sizeof a->inl[0]) {
        a->bits = calloc(words, sizeof *a->bits);
        if (!a->bits) {
            a->bits = a->inl;
            a->n = 0;
            c->oom = 1;
            return -1;
        }
    } else {
        memset(a->inl, 0, sizeof a->inl);
    }
    return 0;
}

static void ann_free(ann_t *a)
{
    if (a->bits != a->inl)
        free(a->bits);
}

static void ann_set(ann_t *a, size_t i)
{
    if (i < a->n)
        a->bits[i >> 6] |= 1ull << (i & 63);
}

static int ann_has(const ann_t *a, size_t i)
{
    return a->all || (i < a->n && ((a->bits[i >> 6] >> (i & 63)) & 1));
}

static void ann_merge(ann_t *d, const ann_t *s)
{
    d->all |= s->all;
    size_t words = (d->n < s->n ? d->n : s->n) / 64 + 1;
    for (size_t w = 0; w < words && w * 64 < d->n; w++)
        d->bits[w] |= s->bits[w];
}

/* ---------- errors ------------------------------------------------------------ */

static void esc_append(char **w, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '~') {
            *(*w)++ = '~';
            *(*w)++ = '0';
        } else if (s[i] == '/') {
            *(*w)++ = '~';
            *(*w)++ = '1';
        } else {
            *(*w)++ = s[i];
        }
    }
}

static char *instance_path(const seg_t *path)
{
    size_t cnt = 0, n = 1;
    for (const seg_t *p = path; p; p = p->up) {
        cnt++;
        n += 1 + (p->key ? p->len * 2 : 21);
    }
    const seg_t **v = malloc((cnt + 1) * sizeof *v);
    char *out = malloc(n);
    if (!v || !out) {
        free(v);
        free(out);
        return NULL;
    }
    size_t i = cnt;
    for (const seg_t *p = path; p; p = p->up)
        v[--i] = p;
    char *w = out;
    for (i = 0; i < cnt; i++) {
        *w++ = '/';
        if (v[i]->key)
            esc_append(&w, v[i]->key, v[i]->len);
        else
            w += sprintf(w, "%zu", v[i]->idx);
    }
    *w = '\0';
    free(v);
    return out;
}

static void emit(vctx_t *c, const js_node_t *n, const char *kw, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void emit(vctx_t *c, const js_node_t *n, const char *kw, const char *fmt, ...)
{
    if (c->quiet)
        return;
    js_errors_t *e = c->errs;
    if (e->count == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 8;
        js_error_t *ni = realloc(e->items, cap * sizeof *ni);
        if (!ni) {
            c->oom = 1;
            return;
        }
        e->items = ni;
        e->cap = cap;
    }
    js_error_t *it = &e->items[e->count];
    const char *doc = n->doc_uri == c->root_doc ? "" : n->doc_uri;
    /* a boolean false schema reports at its own location */
    int own = n->kind == JS_K_FALSE;
    size_t sl = strlen(doc) + strlen(n->ptr) + strlen(kw) + 3;
    it->schema_path = malloc(sl);
    if (it->schema_path)
        snprintf(it->schema_path, sl, "%s#%s%s%s", doc, n->ptr, own ? "" : "/", own ? "" : kw);
    it->instance_path = instance_path(c->path);
    it->keyword = strdup(kw);
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&it->message, fmt, ap) < 0)
        it->message = NULL;
    va_end(ap);
    if (!it->schema_path || !it->instance_path || !it->keyword || !it->message) {
        free(it->schema_path);
        free(it->instance_path);
        free(it->keyword);
        free(it->message);
        c->oom = 1;
        return;
    }
    e->count++;
}

void js_errors_clear(js_errors_t *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->count; i++) {
        free(e->items[i].instance_path);
        free(e->items[i].schema_path);
        free(e->items[i].keyword);
        free(e->items[i].message);
    }
    free(e->items);
    e->items = NULL;
    e->count = e->cap = 0;
}

/* ---------- values -------------------------------------------------------------- */

static unsigned type_of(const json_t *x)
{
    switch (json_typeof(x)) {
    case JSON_OBJECT:
        return JS_T_OBJECT;
    case JSON_ARRAY:
        return JS_T_ARRAY;
    case JSON_STRING:
        return JS_T_STRING;
    case JSON_INTEGER:
        return JS_T_NUMBER | JS_T_INTEGER;
    case JSON_REAL: {
        double d = json_real_value(x);
        return d == floor(d) ? JS_T_NUMBER | JS_T_INTEGER : JS_T_NUMBER;
    }
    case JSON_TRUE:
    case JSON_FALSE:
        return JS_T_BOOLEAN;
    default:
        return JS_T_NULL;
    }
}

static const char *type_name(unsigned t)
{
    if (t & JS_T_INTEGER)
        return "integer";
    if (t & JS_T_NUMBER)
        return "number";
    if (t & JS_T_STRING)
        return "string";
    if (t & JS_T_OBJECT)
        return "object";
    if (t & JS_T_ARRAY)
        return "array";
    if (t & JS_T_BOOLEAN)
        return "boolean";
    return "null";
}

static void type_names(unsigned mask, char *out, size_t len)
{
    static const unsigned order[] = {JS_T_NULL,   JS_T_BOOLEAN, JS_T_OBJECT, JS_T_ARRAY,
                                     JS_T_NUMBER, JS_T_STRING,  JS_T_INTEGER};
    size_t w = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        if (!(mask & order[i]))
            continue;
        const char *nm = order[i] == JS_T_NUMBER ? "number" : type_name(order[i]);
        int k = snprintf(out + w, len - w, "%s%s", w ? " or " : "", nm);
        if (k < 0 || (size_t)k >= len - w)
            return;
        w += (size_t)k;
    }
}

int js_json_equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return js_num_cmp(js_num_of(a), js_num_of(b)) == 0;
    if (json_typeof(a) != json_typeof(b))
        return 0;
    switch (json_typeof(a)) {
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    case JSON_ARRAY: {
        size_t n = json_array_size(a);
        if (n != json_array_size(b))
            return 0;
        for (size_t i = 0; i < n; i++)
            if (!js_json_equal(json_array_get(a, i), json_array_get(b, i)))
                return 0;
        return 1;
    }
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b))
            return 0;
        for (void *it = json_object_iter((json_t *)a); it; it = json_object_iter_next((json_t *)a, it)) {
            const json_t *o = json_object_getn(b, json_object_iter_key(it), json_object_iter_key_len(it));
            if (!o || !js_json_equal(json_object_iter_value(it), o))
                return 0;
        }
        return 1;
    }
    default:
        return 1;
    }
}

static int is_multiple(js_num_t x, js_num_t m)
{
    if (x.is_int && m.is_int)
        return x.i % m.i == 0;
    double q = x.d / m.d;
    if (isinf(q))
        return fmod(x.d, m.d) == 0.0;
    double rq = nearbyint(q);
    /* allow the rounding of the division itself (0.3 / 0.1), nothing more */
    return fabs(q - rq) <= fabs(q) * DBL_EPSILON;
}

static size_t utf8_count(const char *s, size_t n)
{
    size_t cp = 0;
    for (size_t i = 0; i < n; i++)
        cp += ((unsigned char)s[i] & 0xC0) != 0x80;
    return cp;
}

static uint32_t key_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static const js_prop_t *prop_find(const js_node_t *n, const char *k, size_t kl)
{
    uint32_t h = key_hash(k, kl);
    for (uint32_t i = h & n->prop_mask;; i = (i + 1) & n->prop_mask) {
        const js_prop_t *p = n->prop_slots[i];
        if (!p)
            return NULL;
        if (p->hash == h && p->len == kl && memcmp(p->name, k, kl) == 0)
            return p;
    }
}

/* ---------- the evaluator ------------------------------------------------------------ */

static int v_node(vctx_t *c, const js_node_t *n, const json_t *x, ann_t *ann);

static int v_quiet(vctx_t *c, const js_node_t *n, const json_t *x, ann_t *a)
{
    int q = c->quiet;
    c->quiet = 1;
    int r = v_node(c, n, x, a);
    c->quiet = q;
    return r;
}

/* Validates the value of property k (or item idx when k is NULL).  A false
 * subschema under additionalProperties/unevaluated* reads better as "not
 * allowed" reported by its keyword. */
static int v_child(vctx_t *c, const js_node_t *n, const js_node_t *sub, const json_t *v,
                   const char *kw, const char *k, size_t kl, size_t idx)
{
    seg_t sg = {c->path, k, kl, idx};
    c->path = &sg;
    int r;
    if (sub->kind == JS_K_FALSE && kw) {
        r = 0;
        if (k)
            emit(c, n, kw, "property '%.*s' is not allowed", (int)kl, k);
        else
            emit(c, n, kw, "item %zu is not allowed", idx);
    } else {
        r = v_node(c, sub, v, NULL);
    }
    c->path = sg.up;
    return r;
}

static int v_object(vctx_t *c, const js_node_t *n, const json_t *x, ann_t *a)
{
    int ok = 1;
    uint64_t seen_required = 0;
    if (n->flags & JS_F_OBJECT_ITER) {
        size_t i = 0;
        for (void *it = json_object_iter((json_t *)x); it;
             it = json_object_iter_next((json_t *)x, it), i++) {
            const char *k = json_object_iter_key(it);
            size_t kl = json_object_iter_key_len(it);
            const json_t *v = json_object_iter_value(it);
            int matched = 0;
            if (n->n_props) {
                const js_prop_t *p = prop_find(n, k, kl);
                if (p) {
                    matched = 1;
                    if (p->required_idx >= 0)
                        seen_required |= 1ull << p->required_idx;
                    if (a)
                        ann_set(a, i);
                    if (!v_child(c, n, p->schema, v, NULL, k, kl, 0))
                        FAILED();
                }
            }
            for (size_t j = 0; j < n->n_pattern_props; j++) {
                if (re_match(c, n->pattern_props[j].re, k, kl)) {
                    matched = 1;
                    if (a)
                        ann_set(a, i);
                    if (!v_child(c, n, n->pattern_props[j].schema, v, NULL, k, kl, 0))
                        FAILED();
                }
            }
            if (!matched && n->additional_props) {
                if (a)
                    ann_set(a, i);
                if (!v_child(c, n, n->additional_props, v, "additionalProperties", k, kl, 0))
                    FAILED();
            }
            if (n->property_names) {
                json_t *ks = json_stringn(k, kl);
                if (!ks) {
                    c->oom = 1;
                    return 0;
                }
                int r = v_quiet(c, n->property_names, ks, NULL);
                json_decref(ks);
                if (!r) {
                    emit(c, n, "propertyNames", "property name '%.*s' is not valid", (int)kl, k);
                    FAILED();
                }
            }
        }
    }
    if (!(n->flags & JS_F_OBJECT_OTHER))
        return ok;
    size_t size = json_object_size(x);
    if (n->min_props >= 0 && size < (unsigned long long)n->min_props) {
        emit(c, n, "minProperties", "has %zu properties, fewer than %lld", size, n->min_props);
        FAILED();
    }
    if (n->max_props >= 0 && size > (unsigned long long)n->max_props) {
        emit(c, n, "maxProperties", "has %zu properties, more than %lld", size, n->max_props);
        FAILED();
    }
    for (size_t i = 0; i < n->n_required; i++) {
        if (n->required_by_mask ? !((seen_required >> i) & 1)
                                : !json_object_getn(x, n->required[i], n->required_lens[i])) {
            emit(c, n, "required", "required property '%s' is missing", n->required[i]);
            FAILED();
        }
    }
    for (size_t i = 0; i < n->n_dep_required; i++) {
        const js_dep_required_t *d = &n->dep_required[i];
        if (!json_object_getn(x, d->name, d->len))
            continue;
        for (size_t j = 0; j < d->n; j++) {
            if (!json_object_getn(x, d->names[j], d->lens[j])) {
                emit(c, n, "dependentRequired", "property '%s' is required when '%s' is present",
                     d->names[j], d->name);
                FAILED();
            }
        }
    }
    for (size_t i = 0; i < n->n_dep_schemas; i++) {
        const js_dep_schema_t *d = &n->dep_schemas[i];
        if (json_object_getn(x, d->name, d->len) && !v_node(c, d->schema, x, a))
            FAILED();
    }
    return ok;
}

static int v_array(vctx_t *c, const js_node_t *n, const json_t *x, ann_t *a)
{
    int ok = 1;
    size_t len = json_array_size(x);
    if (n->min_items >= 0 && len < (unsigned long long)n->min_items) {
        emit(c, n, "minItems", "has %zu items, fewer than %lld", len, n->min_items);
        FAILED();
    }
    if (n->max_items >= 0 && len > (unsigned long long)n->max_items) {
        emit(c, n, "maxItems", "has %zu items, more than %lld", len, n->max_items);
        FAILED();
    }
    size_t np = n->n_prefix < len ? n->n_prefix : len;
    for (size_t i = 0; i < np; i++) {
        if (a)
            ann_set(a, i);
        if (!v_child(c, n, n->prefix_items[i], json_array_get(x, i), "prefixItems", NULL, 0, i))
            FAILED();
    }
    if (n->items) {
        for (size_t i = n->n_prefix; i < len; i++)
            if (!v_child(c, n, n->items, json_array_get(x, i), "items", NULL, 0, i))
                FAILED();
        if (a)
            a->all = 1;
    }
    if (n->contains) {
        unsigned long long cnt = 0;
        for (size_t i = 0; i < len; i++) {
            seg_t sg = {c->path, NULL, 0, i};
            c->path = &sg;
            int r = v_quiet(c, n->contains, json_array_get(x, i), NULL);
            c->path = sg.up;
            if (r) {
                cnt++;
                if (a)
                    ann_set(a, i);
                else if (n->max_contains < 0 && cnt >= (unsigned long long)n->min_contains)
                    break;
            }
        }
        if (cnt < (unsigned long long)n->min_contains) {
            if (n->min_contains == 1)
                emit(c, n, "contains", "no item matches 'contains'");
            else
                emit(c, n, "minContains", "%llu items match 'contains', fewer than %lld", cnt,
                     n->min_contains);
            FAILED();
        }
        if (n->max_contains >= 0 && cnt > (unsigned long long)n->max_contains) {
            emit(c, n, "maxContains", "%llu items match 'contains', more than %lld", cnt,
                 n->max_contains);
            FAILED();
        }
    }
    if (n->unique_items) {
        for (size_t i = 1; i < len; i++) {
            for (size_t j = 0; j < i; j++) {
                if (js_json_equal(json_array_get(x, i), json_array_get(x, j))) {
                    emit(c, n, "uniqueItems", "items %zu and %zu are equal", j, i);
                    FAILED();
                    i = len;
                    break;
                }
            }
        }
    }
    return ok;
}

static int v_string(vctx_t *c, const js_node_t *n, const json_t *x)
{
    int ok = 1;
    const char *s = json_string_value(x);
    size_t sl = json_string_length(x);
    if (n->min_len >= 0 || n->max_len >= 0) {
        size_t cp = utf8_count(s, sl);
        if (n->min_len >= 0 && cp < (unsigned long long)n->min_len) {
            emit(c, n, "minLength", "is %zu characters long, shorter than %lld", cp, n->min_len);
            FAILED();
        }
        if (n->max_len >= 0 && cp > (unsigned long long)n->max_len) {
            emit(c, n, "maxLength", "is %zu characters long, longer than %lld", cp, n->max_len);
            FAILED();
        }
    }
    if (n->pattern && !re_match(c, n->pattern, s, sl)) {
        emit(c, n, "pattern", "does not match pattern '%s'", n->pattern_src);
        FAILED();
    }
    if (n->format && !n->format(s, sl)) {
        emit(c, n, "format", "is not a valid %s", n->format_name);
        FAILED();
    }
    return ok;
}

static void num_text(js_num_t v, char *buf, size_t len)
{
    if (v.is_int)
        snprintf(buf, len, "%lld", v.i);
    else
        snprintf(buf, len, "%.17g", v.d);
}

static int v_number(vctx_t *c, const js_node_t *n, const json_t *x)
{
    int ok = 1;
    js_num_t v = js_num_of(x);
    char lim[40];
    if (n->has_min && js_num_cmp(v, n->min) < 0) {
        num_text(n->min, lim, sizeof lim);
        emit(c, n, "minimum", "is less than the minimum %s", lim);
        FAILED();
    }
    if (n->has_max && js_num_cmp(v, n->max) > 0) {
        num_text(n->max, lim, sizeof lim);
        emit(c, n, "maximum", "is greater than the maximum %s", lim);
        FAILED();
    }
    if (n->has_xmin && js_num_cmp(v, n->xmin) <= 0) {
        num_text(n->xmin, lim, sizeof lim);
        emit(c, n, "exclusiveMinimum", "must be greater than %s", lim);
        FAILED();
    }
    if (n->has_xmax && js_num_cmp(v, n->xmax) >= 0) {
        num_text(n->xmax, lim, sizeof lim);
        emit(c, n, "exclusiveMaximum", "must be less than %s", lim);
        FAILED();
    }
    if (n->has_mult && !is_multiple(v, n->mult)) {
        num_text(n->mult, lim, sizeof lim);
        emit(c, n, "multipleOf", "is not a multiple of %s", lim);
        FAILED();
    }
    return ok;
}

/* evaluates one in-place subschema whose failure does not fail the node
 * (anyOf/oneOf branches, if): annotations count only when it passes */
static int v_branch(vctx_t *c, const js_node_t *sub, const json_t *x, ann_t *a)
{
    if (!a)
        return v_quiet(c, sub, x, NULL);
    ann_t ca;
    if (ann_init(c, &ca, a->n))
        return 0;
    int r = v_quiet(c, sub, x, &ca);
    if (r)
        ann_merge(a, &ca);
    ann_free(&ca);
    return r;
}

static int v_applicators(vctx_t *c, const js_node_t *n, const json_t *x, ann_t *a)
{
    int ok = 1;
    for (size_t i = 0; i < n->n_all; i++)
        if (!v_node(c, n->all_of[i], x, a))
            FAILED();
    if (n->n_any) {
        int any = 0;
        for (size_t i = 0; i < n->n_any && (!any || a); i++)
            any |= v_branch(c, n->any_of[i], x, a);
        if (!any) {
            emit(c, n, "anyOf", "does not match any schema of anyOf");
            FAILED();
        }
    }
    if (n->n_one) {
        size_t cnt = 0, first = 0, second = 0;
        for (size_t i = 0; i < n->n_one && (cnt < 2 || a); i++) {
            if (v_branch(c, n->one_of[i], x, a)) {
                if (cnt == 0)
                    first = i;
                else if (cnt == 1)
                    second = i;
                cnt++;
            }
        }
        if (cnt == 0) {
            emit(c, n, "oneOf", "does not match any schema of oneOf");
            FAILED();
        } else if (cnt > 1) {
            emit(c, n, "oneOf", "matches oneOf schemas %zu and %zu, only one is allowed", first,
                 second);
            FAILED();
        }
    }
    if (n->not_ && v_quiet(c, n->not_, x, NULL)) {
        emit(c, n, "not", "must not match the 'not' schema");
        FAILED();
    }
    if (n->if_) {
        const js_node_t *br = v_branch(c, n->if_, x, a) ? n->then_ : n->else_;
        if (br && !v_node(c, br, x, a))
            FAILED();
    }
    return ok;
}

static int v_unevaluated(vctx_t *c, const js_node_t *n, const json_t *x, ann_t *a)
{
    int ok = 1;
    if (n->unevaluated_props && json_is_object(x)) {
        size_t i = 0;
        for (void *it = json_object_iter((json_t *)x); it;
             it = json_object_iter_next((json_t *)x, it), i++) {
            if (ann_has(a, i))
                continue;
            if (!v_child(c, n, n->unevaluated_props, json_object_iter_value(it),
                         "unevaluatedProperties", json_object_iter_key(it),
                         json_object_iter_key_len(it), 0))
                FAILED();
            ann_set(a, i);
        }
    }
    if (n->unevaluated_items && json_is_array(x)) {
        for (size_t i = 0; i < json_array_size(x); i++) {
            if (ann_has(a, i))
                continue;
            if (!v_child(c, n, n->unevaluated_items, json_array_get(x, i), "unevaluatedItems",
                         NULL, 0, i))
                FAILED();
        }
        a->all = 1;
    }
    return ok;
}

/* outermost resource in the dynamic scope defining the anchor, else the
 * static target */
static const js_node_t *dynamic_target(const vctx_t *c, const js_node_t *n)
{
    const js_node_t *t = n->dynref;
    for (const scope_t *s = c->scope; s; s = s->up) {
        const js_resource_t *r = s->res;
        for (size_t i = 0; i < r->n_dyn; i++)
            if (!strcmp(r->dyn_names[i], n->dynref_anchor))
                t = r->dyn_nodes[i];
    }
    return t;
}

static int v_body(vctx_t *c, const js_node_t *n, const json_t *x, ann_t *a)
{
    int ok = 1;
    unsigned t = type_of(x);
    if (n->types && !(n->types & t)) {
        char want[80];
        type_names(n->types, want, sizeof want);
        emit(c, n, "type", "expected %s, got %s", want, type_name(t));
        FAILED();
    }
    if (n->const_value && !js_json_equal(x, n->const_value)) {
        emit(c, n, "const", "does not equal the constant");
        FAILED();
    }
    if (n->enum_values) {
        size_t i, cnt = json_array_size(n->enum_values);
        for (i = 0; i < cnt; i++)
            if (js_json_equal(x, json_array_get(n->enum_values, i)))
                break;
        if (i == cnt) {
            emit(c, n, "enum", "is not one of the allowed values");
            FAILED();
        }
    }
    if (n->ref && !v_node(c, n->ref, x, a))
        FAILED();
    if (n->dynref && !v_node(c, n->dynref_anchor ? dynamic_target(c, n) : n->dynref, x, a))
        FAILED();
    if ((t & JS_T_OBJECT) && (n->flags & (JS_F_OBJECT_ITER | JS_F_OBJECT_OTHER)) &&
        !v_object(c, n, x, a))
        FAILED();
    if ((t & JS_T_ARRAY) && (n->flags & JS_F_ARRAY) && !v_array(c, n, x, a))
        FAILED();
    if ((t & JS_T_STRING) && (n->flags & JS_F_STRING) && !v_string(c, n, x))
        FAILED();
    if ((t & JS_T_NUMBER) && (n->flags & JS_F_NUMBER) && !v_number(c, n, x))
        FAILED();
    if ((n->flags & JS_F_APPLICATORS) && !v_applicators(c, n, x, a))
        FAILED();
    if ((n->flags & JS_F_UNEVALUATED) && !v_unevaluated(c, n, x, a))
        FAILED();
    return ok;
}

static int v_node(vctx_t *c, const js_node_t *n, const json_t *x, ann_t *ann)
{
    if (n->kind != JS_K_OBJECT) {
        if (n->kind == JS_K_TRUE)
            return 1;
        emit(c, n, "false", "no value is allowed here (the schema is false)");
        return 0;
    }
    if (c->depth >= JS_MAX_DEPTH) {
        emit(c, n, "$ref", "schema nesting deeper than %d (recursive $ref?)", JS_MAX_DEPTH);
        return 0;
    }
    c->depth++;
    const scope_t *saved = c->scope;
    scope_t sc = {c->scope, n->owner};
    if (!c->scope || c->scope->res != n->owner)
        c->scope = &sc;
    int ok;
    if (n->flags & JS_F_UNEVALUATED) {
        ann_t local;
        size_t size = json_is_object(x) ? json_object_size(x) : json_is_array(x) ? json_array_size(x) : 0;
        ok = ann_init(c, &local, size) == 0 && v_body(c, n, x, &local);
        if (ok && ann)
            ann_merge(ann, &local);
        ann_free(&local);
    } else {
        ok = v_body(c, n, x, ann);
    }
    c->scope = saved;
    c->depth--;
    return ok;
}

int js_validate(const js_schema_t *s, const json_t *instance, js_errors_t *errs, int all)
{
    vctx_t c;
    memset(&c, 0, sizeof c);
    c.errs = errs;
    c.all = errs && all;
    c.quiet = !errs;
    c.root_doc = s->doc_uri;
    int ok = v_node(&c, s->root, instance, NULL);
    return c.oom ? -1 : ok;
}
