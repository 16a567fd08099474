/*
 * catalog.c — loads a schema directory into an immutable catalog and answers
 * the hot-path questions: which compiled schema belongs to (type, version),
 * and is this event valid.
 *
 * Loading registers every document before compiling any, so schemas may
 * $ref one another; it collects every problem rather than stopping at the
 * first, because an operator fixing a schema tree wants the whole list.
 * Lookups go through an open-addressing hash table keyed by the type name
 * (FNV-1a), so the per-event cost is one hash of the type plus one compare.
 *
 * Not here: stream validation (stream.c) and anything about what to do with
 * an invalid event.
 */
#include "schema/schema.h"
#include "schema/errs.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ENVELOPE_DIR "cloudevents"
#define ENVELOPE_FILE "1.0.json"
/* versions are at most 9 digits, so they always fit an int */
#define VERSION_MAX_DIGITS 9

typedef struct schema_type {
    uint64_t hash;
    char *name;
    int latest;
    const js_schema_t **versions; /* versions[v - 1] */
    char **uris;                  /* registry URI of each version */
} schema_type_t;

struct schema_catalog {
    js_registry_t *reg;
    const js_schema_t *envelope;
    char *envelope_uri;
    schema_type_t *types; /* sorted by name */
    size_t n_types;
    uint32_t *slots; /* index + 1 into types; 0 = empty */
    size_t mask;     /* slot count - 1 (a power of two) */
};

/* ---- errors --------------------------------------------------------- */

static void cat_err(cfg_errors_t *errs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void cat_err(cfg_errors_t *errs, const char *fmt, ...)
{
    if (!errs)
        return;
    if (errs->count == errs->cap) {
        size_t cap = errs->cap ? errs->cap * 2 : 8;
        char **m = realloc(errs->msgs, cap * sizeof *m);
        if (!m)
            return;
        errs->msgs = m;
        errs->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n >= 0)
        errs->msgs[errs->count++] = msg;
}

/* Rewrites errors [from, count): instance paths get ipfx in front, and
 * schema paths relative to the validated document get its URI. */
static void js_err_prefix(js_errors_t *errs, size_t from, const char *ipfx, const char *uri)
{
    for (size_t i = from; errs && i < errs->count; i++) {
        js_error_t *e = &errs->items[i];
        char *s;
        if (ipfx && asprintf(&s, "%s%s", ipfx, e->instance_path) >= 0) {
            free(e->instance_path);
            e->instance_path = s;
        }
        if (e->schema_path[0] == '#' && asprintf(&s, "%s%s", uri, e->schema_path) >= 0) {
            free(e->schema_path);
            e->schema_path = s;
        }
    }
}

/* ---- names and versions ------------------------------------------------ */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static int type_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* lowercase dot-separated segments of [a-z0-9_-]+ */
static int type_name_ok(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    int seg = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (seg == 0)
                return 0;
            seg = 0;
        } else if (type_char(s[i])) {
            seg++;
        } else {
            return 0;
        }
    }
    return seg > 0;
}

/* "N" with 1 <= N, no leading zero, at most VERSION_MAX_DIGITS digits;
 * returns N or -1. */
static int parse_version(const char *s, size_t n)
{
    if (n == 0 || n > VERSION_MAX_DIGITS || s[0] == '0')
        return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* Version named by a dataschema URI ".../<type>/<N>.json", or -1 when the
 * URI has another shape or names another type. */
static int dataschema_version(const char *uri, const char *type)
{
    size_t n = strlen(uri);
    if (!type || !ends_with(uri, n, ".json"))
        return -1;
    n -= 5;
    const char *slash = memrchr(uri, '/', n);
    if (!slash || slash == uri)
        return -1;
    int v = parse_version(slash + 1, (size_t)(uri + n - (slash + 1)));
    if (v < 0)
        return -1;
    const char *tstart = memrchr(uri, '/', (size_t)(slash - uri));
    tstart = tstart ? tstart + 1 : uri;
    size_t tlen = (size_t)(slash - tstart);
    if (tlen != strlen(type) || memcmp(tstart, type, tlen) != 0)
        return -1;
    return v;
}

int schema_event_version(const json_t *envelope)
{
    const json_t *ds = json_object_get(envelope, "dataschema");
    return schema_claimed_version(json_object_get(envelope, "schemaversion"), ds,
                                  ds ? json_string_value(json_object_get(envelope, "type")) : NULL);
}

int schema_claimed_version(const json_t *sv, const json_t *ds, const char *type)
{
    int v_sv = 0, v_ds = 0;

    if (sv) {
        if (json_is_integer(sv)) {
            json_int_t i = json_integer_value(sv);
            v_sv = (i >= 1 && i <= 999999999) ? (int)i : -1;
        } else if (json_is_real(sv)) {
            /* an integral real is an "integer" to the envelope schema */
            double d = json_real_value(sv);
            v_sv = (d >= 1 && d <= 999999999 && d == (double)(int)d) ? (int)d : -1;
        } else if (json_is_string(sv)) {
            v_sv = parse_version(json_string_value(sv), json_string_length(sv));
        } else {
            v_sv = -1;
        }
        if (v_sv < 0)
            return -1;
    }
    if (ds) {
        if (!json_is_string(ds))
            return -1;
        v_ds = dataschema_version(json_string_value(ds), type);
        if (v_ds < 0)
            return -1;
    }
    if (v_sv && v_ds && v_sv != v_ds)
        return -1;
    return v_sv ? v_sv : v_ds;
}

/* ---- lookup -------------------------------------------------------------- */

static const schema_type_t *find_type(const schema_catalog_t *c, const char *type)
{
    if (!c || !type || c->n_types == 0)
        return NULL;
    uint64_t h = fnv1a(type);
    for (size_t i = (size_t)h & c->mask;; i = (i + 1) & c->mask) {
        uint32_t slot = c->slots[i];
        if (slot == 0)
            return NULL;
        const schema_type_t *t = &c->types[slot - 1];
        if (t->hash == h && strcmp(t->name, type) == 0)
            return t;
    }
}

const js_schema_t *schema_catalog_envelope(const schema_catalog_t *c)
{
    return c->envelope;
}

int schema_catalog_latest(const schema_catalog_t *c, const char *type)
{
    const schema_type_t *t = find_type(c, type);
    return t ? t->latest : 0;
}

const js_schema_t *schema_catalog_get(const schema_catalog_t *c, const char *type, int version)
{
    const schema_type_t *t = find_type(c, type);
    if (!t || version < 1 || version > t->latest)
        return NULL;
    return t->versions[version - 1];
}

int schema_catalog_find(const schema_catalog_t *c, const char *type, int version,
                        const js_schema_t **schema)
{
    const schema_type_t *t = find_type(c, type);
    *schema = NULL;
    if (!t)
        return 0;
    if (version == 0)
        version = t->latest;
    if (version >= 1 && version <= t->latest)
        *schema = t->versions[version - 1];
    return t->latest;
}

size_t schema_catalog_count(const schema_catalog_t *c)
{
    return c->n_types;
}

const char *schema_catalog_type_at(const schema_catalog_t *c, size_t i)
{
    return i < c->n_types ? c->types[i].name : NULL;
}

int schema_catalog_validate_event(const schema_catalog_t *c, const json_t *envelope,
                                  js_errors_t *errs, int all)
{
    size_t base = errs ? errs->count : 0;
    int env_ok = js_validate(c->envelope, envelope, errs, all) == 1;
    js_err_prefix(errs, base, NULL, c->envelope_uri);
    if (!env_ok && !(errs && all))
        return 0;

    const char *type = json_string_value(json_object_get(envelope, "type"));
    if (!type)
        return 0; /* the envelope schema has said why */

    int version = schema_event_version(envelope);
    if (version < 0) {
        schema__err_push(errs, json_object_get(envelope, "dataschema") ? "/dataschema" : "/schemaversion",
                    "", SCHEMA_KW_VERSION,
                    "dataschema must end in /<type>/<N>.json naming this event's type, "
                    "schemaversion must be a positive integer, and the two must agree");
        return 0;
    }

    const schema_type_t *t = find_type(c, type);
    char msg[512];
    if (!t) {
        if (!env_ok)
            return 0;
        snprintf(msg, sizeof msg, "no schema for event type '%s'", type);
        schema__err_push(errs, "/type", "", SCHEMA_KW_UNKNOWN_TYPE, msg);
        return -1;
    }
    if (version == 0)
        version = t->latest;
    if (version > t->latest) {
        if (!env_ok)
            return 0;
        snprintf(msg, sizeof msg, "event type '%s' has no schema version %d (latest is %d)", type,
                 version, t->latest);
        schema__err_push(errs, json_object_get(envelope, "dataschema") ? "/dataschema" : "/schemaversion",
                    "", SCHEMA_KW_UNKNOWN_VERSION, msg);
        return -1;
    }

    const json_t *data = json_object_get(envelope, "data");
    if (!data)
        data = json_null();
    base = errs ? errs->count : 0;
    int data_ok = js_validate(t->versions[version - 1], data, errs, all) == 1;
    js_err_prefix(errs, base, "/data", t->uris[version - 1]);
    return env_ok && data_ok;
}

/* ---- loading ------------------------------------------------------------- */

void schema_catalog_free(schema_catalog_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_types; i++) {
        schema_type_t *t = &c->types[i];
        for (int v = 0; v < t->latest; v++)
            free(t->uris[v]);
        free(t->uris);
        free(t->versions);
        free(t->name);
    }
    free(c->types);
    free(c->slots);
    free(c->envelope_uri);
    js_registry_free(c->reg);
    free(c);
}

/*
 * Reads path, checks it is a schema object whose $id (if any) ends in
 * want_suffix, and adds it to reg.  Returns the URI it is known under
 * (malloc'd), or NULL after reporting to errs.
 */
static char *add_document(js_registry_t *reg, const char *path, const char *want_suffix,
                          cfg_errors_t *errs)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!doc) {
        if (jerr.line > 0)
            cat_err(errs, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        else
            cat_err(errs, "%s: %s", path, jerr.text);
        return NULL;
    }
    char *uri = NULL;
    char err[512];
    const json_t *id = json_object_get(doc, "$id");
    if (!json_is_object(doc)) {
        cat_err(errs, "%s: a schema file must hold a JSON object", path);
    } else if (id && !json_is_string(id)) {
        cat_err(errs, "%s: $id must be a string", path);
    } else if (id && !ends_with(json_string_value(id), json_string_length(id), want_suffix)) {
        cat_err(errs, "%s: $id \"%s\" does not match the file's place (it must end in \"%s\")",
                path, json_string_value(id), want_suffix);
    } else {
        uri = id ? strdup(json_string_value(id)) : NULL;
        if (!id && asprintf(&uri, "%s%s", SCHEMA_URI_BASE, want_suffix) < 0)
            uri = NULL;
        if (!uri) {
            cat_err(errs, "%s: out of memory", path);
        } else if (js_registry_add(reg, id ? NULL : uri, doc, err, sizeof err) != 0) {
            cat_err(errs, "%s: %s", path, err);
            free(uri);
            uri = NULL;
        }
    }
    json_decref(doc);
    return uri;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Sorted names of dir's entries that do not start with '.'; NULL + errs on
 * failure (an empty list is a non-NULL array with *n == 0). */
static char **list_dir(const char *dir, size_t *n, cfg_errors_t *errs)
{
    DIR *d = opendir(dir);
    if (!d) {
        cat_err(errs, "%s: cannot open directory: %s", dir, strerror(errno));
        return NULL;
    }
    size_t cap = 16;
    char **names = malloc(cap * sizeof *names);
    *n = 0;
    struct dirent *de;
    while (names && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (*n == cap) {
            char **g = realloc(names, (cap *= 2) * sizeof *names);
            if (!g) {
                for (size_t i = 0; i < *n; i++)
                    free(names[i]);
                free(names);
                names = NULL;
                break;
            }
            names = g;
        }
        /* cppcheck-suppress nullPointerRedundantCheck ; NULL only after the break above */
        names[*n] = strdup(de->d_name);
        /* cppcheck-suppress nullPointerRedundantCheck ; as above */
        if (names[*n])
            (*n)++;
    }
    closedir(d);
    if (!names) {
        cat_err(errs, "%s: out of memory", dir);
        return NULL;
    }
    qsort(names, *n, sizeof *names, cmp_str);
    return names;
}

static void free_list(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

/* Registers <dir>/<t->name>/<N>.json for N = 1..latest into t->uris; 0 or
 * -1 (errors reported). */
static int load_type(schema_catalog_t *c, const char *dir, schema_type_t *t, cfg_errors_t *errs)
{
    char *tdir = NULL;
    if (asprintf(&tdir, "%s/%s", dir, t->name) < 0)
        return -1;
    size_t n;
    char **names = list_dir(tdir, &n, errs);
    if (!names) {
        free(tdir);
        return -1;
    }
    int rc = 0;
    int *vers = calloc(n + 1, sizeof *vers);
    size_t nv = 0;
    for (size_t i = 0; vers && i < n; i++) {
        size_t len = strlen(names[i]);
        if (!ends_with(names[i], len, ".json"))
            continue; /* examples/, README.md and the like */
        int v = parse_version(names[i], len - 5);
        if (v < 0) {
            cat_err(errs, "%s/%s: a schema file must be named <N>.json (N = 1, 2, ...)", tdir,
                    names[i]);
            rc = -1;
        } else {
            vers[nv++] = v;
        }
    }
    if (!vers) {
        cat_err(errs, "%s: out of memory", tdir);
        rc = -1;
    } else if (nv == 0) {
        cat_err(errs, "%s: no schema files (<N>.json)", tdir);
        rc = -1;
    }
    if (rc == 0) {
        qsort(vers, nv, sizeof *vers, cmp_int);
        for (size_t i = 0; i < nv; i++) {
            if (vers[i] != (int)i + 1) {
                cat_err(errs, "%s: versions must run 1..N without gaps, but %zu.json is missing",
                        tdir, i + 1);
                rc = -1;
                break;
            }
        }
    }
    if (rc == 0) {
        t->latest = (int)nv;
        t->versions = calloc(nv, sizeof *t->versions);
        t->uris = calloc(nv, sizeof *t->uris);
        if (!t->versions || !t->uris) {
            cat_err(errs, "%s: out of memory", tdir);
            rc = -1;
        }
        for (int v = 1; rc == 0 && v <= t->latest; v++) {
            char *path = NULL, *suffix = NULL;
            if (asprintf(&path, "%s/%d.json", tdir, v) < 0 ||
                asprintf(&suffix, "/%s/%d.json", t->name, v) < 0) {
                free(path);
                cat_err(errs, "%s: out of memory", tdir);
                rc = -1;
                break;
            }
            t->uris[v - 1] = add_document(c->reg, path, suffix, errs);
            if (!t->uris[v - 1])
                rc = -1;
            free(path);
            free(suffix);
        }
    }
    free(vers);
    free_list(names, n);
    free(tdir);
    return rc;
}

static int build_index(schema_catalog_t *c)
{
    size_t cap = 8;
    while (cap < c->n_types * 2)
        cap *= 2;
    c->slots = calloc(cap, sizeof *c->slots);
    if (!c->slots)
        return -1;
    c->mask = cap - 1;
    for (size_t k = 0; k < c->n_types; k++) {
        size_t i = (size_t)c->types[k].hash & c->mask;
        while (c->slots[i])
            i = (i + 1) & c->mask;
        c->slots[i] = (uint32_t)k + 1;
    }
    return 0;
}

/* Compiles uri; reports compile errors against the file they came from. */
static const js_schema_t *compile(schema_catalog_t *c, const char *path, const char *uri,
                                  cfg_errors_t *errs)
{
    char err[512];
    const js_schema_t *s = js_compile(c->reg, uri, err, sizeof err);
    if (!s)
        cat_err(errs, "%s: %s", path, err);
    return s;
}

schema_catalog_t *schema_catalog_load(const char *dir, int format_assert, cfg_errors_t *errs)
{
    schema_catalog_t *c = calloc(1, sizeof *c);
    js_options_t opts = {.format_assert = format_assert};
    if (!c || !(c->reg = js_registry_new(&opts))) {
        free(c);
        cat_err(errs, "%s: out of memory", dir);
        return NULL;
    }
    size_t n;
    char **names = list_dir(dir, &n, errs);
    if (!names) {
        schema_catalog_free(c);
        return NULL;
    }
    int rc = 0;
    c->types = calloc(n ? n : 1, sizeof *c->types);
    if (!c->types) {
        cat_err(errs, "%s: out of memory", dir);
        rc = -1;
    }

    char *env_path = NULL;
    if (asprintf(&env_path, "%s/%s/%s", dir, ENVELOPE_DIR, ENVELOPE_FILE) < 0)
        env_path = NULL;
    if (!env_path) {
        cat_err(errs, "%s: out of memory", dir);
        rc = -1;
    } else if (access(env_path, F_OK) != 0) {
        cat_err(errs, "%s: missing: every schema directory needs the envelope schema", env_path);
        rc = -1;
    } else if (!(c->envelope_uri = add_document(c->reg, env_path, "/" ENVELOPE_DIR "/" ENVELOPE_FILE,
                                                errs))) {
        rc = -1;
    }

    /* Register every type's documents, then compile: $refs may cross files. */
    for (size_t i = 0; c->types && i < n; i++) {
        char *path = NULL;
        if (strcmp(names[i], ENVELOPE_DIR) == 0 || asprintf(&path, "%s/%s", dir, names[i]) < 0)
            continue;
        int dir_entry = is_dir(path);
        free(path);
        if (!dir_entry)
            continue; /* meson.build, README.md, ... */
        if (!type_name_ok(names[i], strlen(names[i]))) {
            cat_err(errs, "%s/%s: not an event type name (lowercase dot-separated segments of "
                    "[a-z0-9_-])", dir, names[i]);
            rc = -1;
            continue;
        }
        schema_type_t *t = &c->types[c->n_types++];
        t->name = names[i];
        names[i] = NULL;
        t->hash = fnv1a(t->name);
        if (load_type(c, dir, t, errs) != 0)
            rc = -1;
    }

    /* Compile only a fully registered tree: a missing document would make
     * every $ref to it fail too and bury the real error. */
    if (rc == 0 && !(c->envelope = compile(c, env_path, c->envelope_uri, errs)))
        rc = -1;
    for (size_t i = 0; c->envelope && i < c->n_types; i++) {
        schema_type_t *t = &c->types[i];
        for (int v = 1; v <= t->latest; v++) {
            char *path = NULL;
            if (asprintf(&path, "%s/%s/%d.json", dir, t->name, v) < 0)
                path = NULL;
            t->versions[v - 1] = compile(c, path ? path : t->name, t->uris[v - 1], errs);
            if (!t->versions[v - 1])
                rc = -1;
            free(path);
        }
    }
    if (rc == 0 && build_index(c) != 0) {
        cat_err(errs, "%s: out of memory", dir);
        rc = -1;
    }

    free(env_path);
    free_list(names, n);
    if (rc != 0) {
        schema_catalog_free(c);
        return NULL;
    }
    return c;
}

/* Where a standalone schema's $refs to other documents are looked for. */
typedef struct file_refs {
    char root[PATH_MAX]; /* the tree the file would sit in as <root>/<type>/<N>.json */
} file_refs_t;

/*
 * A document a standalone schema refers to: file://<path> is that file
 * (relative $refs of a schema without $id resolve to those), and
 * SCHEMA_URI_BASE/<type>/<N>.json is <root>/<type>/<N>.json, as the
 * daemon's catalog would have it.  NULL for anything else.
 */
static json_t *file_refs_resolve(const char *uri, void *ud)
{
    const file_refs_t *fr = ud;
    char path[PATH_MAX + 64];
    static const char base[] = SCHEMA_URI_BASE "/";
    if (strncmp(uri, "file://", 7) == 0)
        snprintf(path, sizeof path, "%s", uri + 7);
    else if (strncmp(uri, base, sizeof base - 1) == 0 && fr->root[0] &&
             !strstr(uri + sizeof base - 1, ".."))
        snprintf(path, sizeof path, "%s/%s", fr->root, uri + sizeof base - 1);
    else
        return NULL;
    return json_load_file(path, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
}

js_registry_t *schema_load_file(const char *path, int format_assert, const js_schema_t **out,
                                cfg_errors_t *errs)
{
    /* <root>/<type>/<N>.json: the grandparent of the file */
    file_refs_t fr = {{0}};
    char *real = realpath(path, NULL);
    if (real) {
        char *slash = strrchr(real, '/');
        if (slash) {
            *slash = '\0';
            slash = strrchr(real, '/');
            if (slash && slash != real) {
                *slash = '\0';
                snprintf(fr.root, sizeof fr.root, "%s", real);
            }
        }
        free(real);
    }
    /* fr lives until the return: the registry resolves only while this
     * function compiles the schema */
    js_options_t opts = {.format_assert = format_assert, .resolve = file_refs_resolve,
                         .resolve_ud = &fr};
    js_registry_t *reg = js_registry_new(&opts);
    if (!reg) {
        cat_err(errs, "%s: out of memory", path);
        return NULL;
    }
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    char err[512];
    char *uri = NULL;
    const js_schema_t *s = NULL;
    if (!doc) {
        if (jerr.line > 0)
            cat_err(errs, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        else
            cat_err(errs, "%s: %s", path, jerr.text);
    } else {
        const json_t *id = json_object_get(doc, "$id");
        char *abs = NULL;
        if (json_is_string(id))
            uri = strdup(json_string_value(id));
        else if ((abs = realpath(path, NULL)) && asprintf(&uri, "file://%s", abs) < 0)
            uri = NULL;
        free(abs);
        if (!uri)
            cat_err(errs, "%s: cannot name the schema: %s", path, strerror(errno));
        else if (js_registry_add(reg, json_is_string(id) ? NULL : uri, doc, err, sizeof err) != 0)
            cat_err(errs, "%s: %s", path, err);
        else if (!(s = js_compile(reg, uri, err, sizeof err)))
            cat_err(errs, "%s: %s", path, err);
        json_decref(doc);
    }
    free(uri);
    if (!s) {
        js_registry_free(reg);
        return NULL;
    }
    *out = s;
    return reg;
}

void schema__err_push(js_errors_t *errs, const char *ipath, const char *spath, const char *kw,
                      const char *msg)
{
    if (!errs)
        return;
    if (errs->count == errs->cap) {
        size_t cap = errs->cap ? errs->cap * 2 : 4;
        js_error_t *it = realloc(errs->items, cap * sizeof *it);
        if (!it)
            return;
        errs->items = it;
        errs->cap = cap;
    }
    js_error_t *e = &errs->items[errs->count];
    e->instance_path = strdup(ipath);
    e->schema_path = strdup(spath);
    e->keyword = strdup(kw);
    e->message = strdup(msg);
    if (!e->instance_path || !e->schema_path || !e->keyword || !e->message) {
        free(e->instance_path);
        free(e->schema_path);
        free(e->keyword);
        free(e->message);
        return;
    }
    errs->count++;
}
