/*
 * config — the conf.d directory (*.yaml) into one evbus_config_t, with every error located.
 *
 * Two stages, as in Fluent Bit: each file is first parsed with libyaml's
 * event API into a neutral tree (ynode_t) whose nodes keep their
 * file:line:column and whose scalars have had ${VAR} references expanded;
 * the trees are then applied to the config in lexical file order.  Errors
 * never stop loading: each one is appended to the caller's cfg_errors_t so
 * an operator sees all of them at once, and the config is only returned
 * when there were none (config_load_partial returns it anyway, marking the
 * settings it could not settle, for evbusctl).  Defaults that depend on
 * other keys (dlq stream, archive path, metadata switch, plugin paths) are
 * settled after the last file, because a later file may change what they
 * depend on.
 *
 * This file does not open plugins or libraries (it only checks that the
 * files exist), compile schemas, or connect anywhere.  Out of memory aborts:
 * there is nothing useful a daemon can do without its configuration.
 */
#include "config/config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <evbus/plugin.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "evbus_build_config.h"
#include "router/router.h"
#include "util/log.h"

/* ---- memory and strings ---------------------------------------------- */

static void oom(void)
{
    fputs("config: out of memory\n", stderr);
    abort();
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom();
    return q;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        oom();
    return d;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        oom();
    va_end(ap);
    return s;
}

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = v ? xstrdup(v) : NULL;
}

/* A growable byte buffer for env expansion. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf_t;

static void sbuf_add(sbuf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* ---- errors ---------------------------------------------------------- */

void cfg_errors_add(cfg_errors_t *errs, const cfg_pos_t *pos, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char *line = pos && pos->file ? xasprintf("%s:%d:%d: %s", pos->file, pos->line, pos->col, msg)
                                  : xstrdup(msg);
    if (errs->count == errs->cap) {
        errs->cap = errs->cap ? errs->cap * 2 : 8;
        errs->msgs = xrealloc(errs->msgs, errs->cap * sizeof *errs->msgs);
    }
    errs->msgs[errs->count++] = line;
}

void cfg_errors_free(cfg_errors_t *errs)
{
    if (!errs)
        return;
    for (size_t i = 0; i < errs->count; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->count = errs->cap = 0;
}

/* ---- ${VAR} expansion ------------------------------------------------ */

static bool var_start(char c)
{
    return isalpha((unsigned char)c) || c == '_';
}

static bool var_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* Expands in[0..len) into out; base is the offset of in within the
 * original string so that messages point at the right place. */
static int expand_range(const char *in, size_t len, size_t base, sbuf_t *out, char *err, size_t errlen)
{
    size_t i = 0;
    while (i < len) {
        if (in[i] != '$' || i + 1 >= len || in[i + 1] != '{') {
            sbuf_add(out, in + i, 1);
            i++;
            continue;
        }
        size_t ref = i, name = i + 2, k = name;
        if (k < len && var_start(in[k]))
            for (k++; k < len && var_char(in[k]); k++)
                ;
        if (k == name || k >= len || (in[k] != '}' && !(in[k] == ':' && k + 1 < len && in[k + 1] == '-'))) {
            bool closed = memchr(in + ref, '}', len - ref) != NULL;
            snprintf(err, errlen,
                     closed ? "invalid variable reference at offset %zu (expected ${NAME} or ${NAME:-default})"
                            : "unterminated '${' at offset %zu",
                     base + ref);
            return -1;
        }
        char vname[256];
        size_t nlen = k - name < sizeof vname - 1 ? k - name : sizeof vname - 1;
        memcpy(vname, in + name, nlen);
        vname[nlen] = '\0';
        const char *val = getenv(vname);
        if (in[k] == '}') {
            if (!val) {
                snprintf(err, errlen,
                         "environment variable '%s' is not set (write ${%s:-default} to give a default)",
                         vname, vname);
                return -1;
            }
            sbuf_add(out, val, strlen(val));
            i = k + 1;
            continue;
        }
        /* ${NAME:-default}: the default runs to the matching brace and may
         * itself hold references. */
        size_t d = k + 2, e = d;
        int depth = 0;
        for (; e < len; e++) {
            if (in[e] == '$' && e + 1 < len && in[e + 1] == '{') {
                depth++;
                e++;
            } else if (in[e] == '}') {
                if (depth == 0)
                    break;
                depth--;
            }
        }
        if (e >= len) {
            snprintf(err, errlen, "unterminated '${' at offset %zu", base + ref);
            return -1;
        }
        if (val && *val)
            sbuf_add(out, val, strlen(val));
        else if (expand_range(in + d, e - d, base + d, out, err, errlen) != 0)
            return -1;
        i = e + 1;
    }
    return 0;
}

char *config_expand_env(const char *in, char *err, size_t errlen)
{
    sbuf_t out = {0};
    sbuf_add(&out, "", 0);
    if (expand_range(in, strlen(in), 0, &out, err, errlen) != 0) {
        free(out.p);
        return NULL;
    }
    return out.p;
}

int config_log_level(const char *s)
{
    if (!s)
        return -1;
    if (strcmp(s, "debug") == 0)
        return LOG_DEBUG;
    if (strcmp(s, "info") == 0)
        return LOG_INFO;
    if (strcmp(s, "warn") == 0)
        return LOG_WARN;
    if (strcmp(s, "error") == 0)
        return LOG_ERROR;
    return -1;
}

/* ---- the neutral YAML tree ------------------------------------------- */

typedef enum yn_kind { YN_SCALAR, YN_MAP, YN_SEQ } yn_kind_t;

typedef struct ynode {
    yn_kind_t kind;
    cfg_pos_t pos;
    char *text;          /* scalar value, ${} already expanded */
    bool plain;          /* unquoted, untagged: may read as number/bool/null */
    bool bad;            /* its expansion failed and was reported */
    struct ynode **kids; /* map: key, value, key, value...; seq: items */
    size_t n, cap;
} ynode_t;

static void ynode_free(ynode_t *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++)
        ynode_free(n->kids[i]);
    free(n->kids);
    free(n->text);
    free(n);
}

static void ynode_push(ynode_t *parent, ynode_t *kid)
{
    if (parent->n == parent->cap) {
        parent->cap = parent->cap ? parent->cap * 2 : 8;
        parent->kids = xrealloc(parent->kids, parent->cap * sizeof *parent->kids);
    }
    parent->kids[parent->n++] = kid;
}

static ynode_t *ynode_new(yn_kind_t kind, const char *file, yaml_mark_t mark)
{
    ynode_t *n = calloc(1, sizeof *n);
    if (!n)
        oom();
    n->kind = kind;
    n->pos = (cfg_pos_t){.file = file, .line = (int)mark.line + 1, .col = (int)mark.column + 1};
    return n;
}

static bool ynode_is_null(const ynode_t *n)
{
    return n->kind == YN_SCALAR && n->plain &&
           (!*n->text || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0 ||
            strcmp(n->text, "Null") == 0 || strcmp(n->text, "NULL") == 0);
}

/* How a node is named in "expected X, got Y" messages. */
static const char *ynode_describe(const ynode_t *n, char *buf, size_t len)
{
    if (n->kind == YN_MAP)
        return "a mapping";
    if (n->kind == YN_SEQ)
        return "a sequence";
    if (ynode_is_null(n))
        return "null";
    snprintf(buf, len, "'%.200s'", n->text);
    return buf;
}

typedef struct yreader {
    yaml_parser_t parser;
    const char *file;
    cfg_errors_t *errs;
    bool failed;
} yreader_t;

static bool yread_event(yreader_t *y, yaml_event_t *ev)
{
    /* after an error libyaml "succeeds" with empty events forever */
    if (y->failed)
        return false;
    if (yaml_parser_parse(&y->parser, ev))
        return true;
    yaml_parser_t *p = &y->parser;
    yaml_mark_t m = p->error == YAML_READER_ERROR ? p->mark : p->problem_mark;
    cfg_pos_t pos = {.file = y->file, .line = (int)m.line + 1, .col = (int)m.column + 1};
    if (p->context)
        cfg_errors_add(y->errs, &pos, "YAML syntax error: %s (%s at line %d, column %d)",
                       p->problem ? p->problem : "unknown problem", p->context,
                       (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
    else
        cfg_errors_add(y->errs, &pos, "YAML syntax error: %s", p->problem ? p->problem : "unknown problem");
    y->failed = true;
    return false;
}

static ynode_t *yread_node(yreader_t *y, yaml_event_t *ev, bool is_key);

static ynode_t *yread_scalar(yreader_t *y, yaml_event_t *ev, bool is_key)
{
    ynode_t *n = ynode_new(YN_SCALAR, y->file, ev->start_mark);
    const char *raw = (const char *)ev->data.scalar.value;
    const char *tag = (const char *)ev->data.scalar.tag;
    n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !tag;
    if (is_key) {
        n->text = xstrdup(raw);
        return n;
    }
    char err[256];
    n->text = config_expand_env(raw, err, sizeof err);
    if (!n->text) {
        cfg_errors_add(y->errs, &n->pos, "%s", err);
        n->text = xstrdup(raw);
        n->bad = true;
    }
    return n;
}

static ynode_t *yread_seq(yreader_t *y, yaml_event_t *start)
{
    ynode_t *n = ynode_new(YN_SEQ, y->file, start->start_mark);
    for (;;) {
        yaml_event_t ev;
        if (!yread_event(y, &ev))
            break;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        ynode_t *kid = yread_node(y, &ev, false);
        yaml_event_delete(&ev);
        if (!kid)
            break;
        ynode_push(n, kid);
    }
    return n;
}

static ynode_t *yread_map(yreader_t *y, yaml_event_t *start)
{
    ynode_t *n = ynode_new(YN_MAP, y->file, start->start_mark);
    for (;;) {
        yaml_event_t ev;
        if (!yread_event(y, &ev))
            break;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        ynode_t *key = yread_node(y, &ev, true);
        yaml_event_delete(&ev);
        if (!key)
            break;
        if (!yread_event(y, &ev)) {
            ynode_free(key);
            break;
        }
        ynode_t *val = yread_node(y, &ev, false);
        yaml_event_delete(&ev);
        if (!val) {
            ynode_free(key);
            break;
        }
        if (key->kind != YN_SCALAR) {
            cfg_errors_add(y->errs, &key->pos, "mapping keys must be scalars");
            ynode_free(key);
            ynode_free(val);
            continue;
        }
        const ynode_t *first = NULL;
        for (size_t i = 0; i < n->n && !first; i += 2)
            if (strcmp(n->kids[i]->text, key->text) == 0)
                first = n->kids[i];
        if (first) {
            cfg_errors_add(y->errs, &key->pos, "duplicate key '%s' (first at line %d, column %d)",
                           key->text, first->pos.line, first->pos.col);
            ynode_free(key);
            ynode_free(val);
            continue;
        }
        ynode_push(n, key);
        ynode_push(n, val);
    }
    return n;
}

/* Builds the node that starts with ev; NULL after a syntax error. */
static ynode_t *yread_node(yreader_t *y, yaml_event_t *ev, bool is_key)
{
    ynode_t *n = NULL;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        return yread_scalar(y, ev, is_key);
    case YAML_SEQUENCE_START_EVENT:
        n = yread_seq(y, ev);
        break;
    case YAML_MAPPING_START_EVENT:
        n = yread_map(y, ev);
        break;
    case YAML_ALIAS_EVENT:
        n = ynode_new(YN_SCALAR, y->file, ev->start_mark);
        n->text = xstrdup("");
        n->bad = true;
        cfg_errors_add(y->errs, &n->pos, "YAML aliases (*%s) are not supported; repeat the value",
                       (const char *)ev->data.alias.anchor);
        return n;
    default:
        return NULL;
    }
    if (y->failed) {
        ynode_free(n);
        return NULL;
    }
    return n;
}

/* Parses one file.  *root is NULL for an empty file.  Returns -1 when the
 * file could not be read or had a syntax error (already reported). */
static int yread_file(const char *path, const char *file, cfg_errors_t *errs, ynode_t **root)
{
    *root = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        cfg_errors_add(errs, NULL, "%s: cannot open: %s", file, strerror(errno));
        return -1;
    }
    yreader_t y = {.file = file, .errs = errs};
    if (!yaml_parser_initialize(&y.parser))
        oom();
    yaml_parser_set_input_file(&y.parser, f);

    yaml_event_t ev;
    bool in_doc = false, done = false;
    int docs = 0;
    while (!done && yread_event(&y, &ev)) {
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            in_doc = true;
            if (++docs == 2) {
                cfg_pos_t pos = {.file = file, .line = (int)ev.start_mark.line + 1,
                                 .col = (int)ev.start_mark.column + 1};
                cfg_errors_add(errs, &pos, "only one YAML document per file is read; split it into files");
            }
            break;
        case YAML_DOCUMENT_END_EVENT:
            in_doc = false;
            break;
        default:
            if (in_doc) {
                ynode_t *n = yread_node(&y, &ev, false);
                if (docs == 1 && n)
                    *root = n;
                else
                    ynode_free(n);
            }
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&y.parser);
    fclose(f);
    if (y.failed) {
        ynode_free(*root);
        *root = NULL;
        return -1;
    }
    return 0;
}

/* ---- YAML scalars as typed values ------------------------------------ */

static bool parse_i64(const char *s, long long *out)
{
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    if (!*p)
        return false;
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q))
            return false;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE)
        return false;
    *out = v;
    return true;
}

/* YAML 1.2 core-schema floats, minus .inf/.nan which JSON cannot carry. */
static bool parse_double(const char *s, double *out)
{
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    bool digits = false;
    while (isdigit((unsigned char)*p)) {
        p++;
        digits = true;
    }
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p)) {
            p++;
            digits = true;
        }
    }
    if (!digits)
        return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p)
        return false;
    double v = strtod(s, NULL);
    if (!isfinite(v))
        return false;
    *out = v;
    return true;
}

static int parse_bool(const char *s)
{
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        return 1;
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return 0;
    return -1;
}

/* YAML → JSON for plugin `config:` and foreign constants.  Only plain
 * scalars are typed; quoting keeps a string a string. */
static json_t *ynode_to_json(const ynode_t *n, cfg_errors_t *errs)
{
    switch (n->kind) {
    case YN_MAP: {
        json_t *o = json_object();
        for (size_t i = 0; i + 1 < n->n; i += 2) {
            json_t *v = ynode_to_json(n->kids[i + 1], errs);
            if (!v || json_object_set_new(o, n->kids[i]->text, v) != 0) {
                if (v)
                    cfg_errors_add(errs, &n->kids[i]->pos, "key '%s' is not valid UTF-8", n->kids[i]->text);
                json_decref(o);
                return NULL;
            }
        }
        return o;
    }
    case YN_SEQ: {
        json_t *a = json_array();
        for (size_t i = 0; i < n->n; i++) {
            json_t *v = ynode_to_json(n->kids[i], errs);
            if (!v) {
                json_decref(a);
                return NULL;
            }
            json_array_append_new(a, v);
        }
        return a;
    }
    case YN_SCALAR:
        break;
    }
    if (n->bad)
        return NULL;
    if (n->plain) {
        long long i;
        double d;
        int b;
        if (ynode_is_null(n))
            return json_null();
        if ((b = parse_bool(n->text)) >= 0)
            return json_boolean(b);
        if (parse_i64(n->text, &i))
            return json_integer(i);
        if (parse_double(n->text, &d))
            return json_real(d);
    }
    json_t *s = json_string(n->text);
    if (!s)
        cfg_errors_add(errs, &n->pos, "value is not valid UTF-8");
    return s;
}

/* ---- applying trees to the config ------------------------------------ */

/* A subscription `retry:` block: merged over the global policy once the
 * last file has set it. */
typedef struct pending_retry {
    retry_policy_t *dst;
    unsigned set; /* RETRY_SET_* bits */
} pending_retry_t;

enum {
    RETRY_SET_BASE = 1u << 0,
    RETRY_SET_FACTOR = 1u << 1,
    RETRY_SET_MAX = 1u << 2,
    RETRY_SET_ATTEMPTS = 1u << 3,
    RETRY_SET_JITTER = 1u << 4,
};

typedef struct loader {
    evbus_config_t *cfg;
    cfg_errors_t *errs;
    const char *mdir; /* absolute directory of the manifest being applied */
    pending_retry_t *pend;
    size_t n_pend, cap_pend;
    /* config_load_partial only (NULL otherwise): per row, whether the last
     * file that wrote it wrote a refused value */
    bool *refused;
    bool lost; /* a file wrote something that could not be read as settings */
} loader_t;

#define ERR(L, node, ...) cfg_errors_add((L)->errs, &(node)->pos, __VA_ARGS__)

/* Index of key k in keys (NULL-terminated), or -1 after reporting it. */
static int key_index(loader_t *L, const ynode_t *k, const char *const *keys, const char *where)
{
    for (int i = 0; keys[i]; i++)
        if (strcmp(keys[i], k->text) == 0)
            return i;
    char valid[512] = "";
    for (int i = 0; keys[i]; i++) {
        if (i)
            strncat(valid, ", ", sizeof valid - strlen(valid) - 1);
        strncat(valid, keys[i], sizeof valid - strlen(valid) - 1);
    }
    if (where)
        ERR(L, k, "unknown key '%s' in %s (valid: %s)", k->text, where, valid);
    else
        ERR(L, k, "unknown top-level key '%s' (valid: %s)", k->text, valid);
    return -1;
}

static bool want_map(loader_t *L, const ynode_t *n, const char *key)
{
    if (n->kind == YN_MAP)
        return true;
    char buf[256];
    ERR(L, n, "%s: expected a mapping, got %s", key, ynode_describe(n, buf, sizeof buf));
    return false;
}

/* A sequence, or null meaning empty. */
static bool want_seq(loader_t *L, const ynode_t *n, const char *key)
{
    if (n->kind == YN_SEQ || ynode_is_null(n))
        return true;
    char buf[256];
    ERR(L, n, "%s: expected a sequence, got %s", key, ynode_describe(n, buf, sizeof buf));
    return false;
}

static const char *scalar_of(loader_t *L, const ynode_t *n, const char *key, const char *what)
{
    if (n->kind == YN_SCALAR && n->bad)
        return NULL;
    if (n->kind == YN_SCALAR && !ynode_is_null(n))
        return n->text;
    char buf[256];
    ERR(L, n, "%s: expected %s, got %s", key, what, ynode_describe(n, buf, sizeof buf));
    return NULL;
}

static bool get_str(loader_t *L, const ynode_t *n, const char *key, char **dst)
{
    const char *s = scalar_of(L, n, key, "a string");
    if (!s)
        return false;
    if (!*s) {
        ERR(L, n, "%s: must not be empty", key);
        return false;
    }
    set_str(dst, s);
    return true;
}

static bool get_i64(loader_t *L, const ynode_t *n, const char *key, long long min, long long max,
                    long long *out)
{
    const char *s = scalar_of(L, n, key, "an integer");
    if (!s)
        return false;
    long long v;
    if (!parse_i64(s, &v)) {
        ERR(L, n, "%s: expected an integer, got '%s'", key, s);
        return false;
    }
    if (v < min || v > max) {
        if (max == UINT32_MAX || max == INT_MAX)
            ERR(L, n, "%s: must be at least %lld, got %lld", key, min, v);
        else
            ERR(L, n, "%s: must be between %lld and %lld, got %lld", key, min, max, v);
        return false;
    }
    *out = v;
    return true;
}

static bool get_u32(loader_t *L, const ynode_t *n, const char *key, uint32_t min, uint32_t max,
                    uint32_t *dst)
{
    long long v;
    if (!get_i64(L, n, key, min, max, &v))
        return false;
    *dst = (uint32_t)v;
    return true;
}

static bool get_double(loader_t *L, const ynode_t *n, const char *key, double min, double max,
                       double *dst)
{
    const char *s = scalar_of(L, n, key, "a number");
    if (!s)
        return false;
    double v;
    if (!parse_double(s, &v)) {
        ERR(L, n, "%s: expected a number, got '%s'", key, s);
        return false;
    }
    if (v < min || v > max) {
        if (isinf(max))
            ERR(L, n, "%s: must be at least %g, got %g", key, min, v);
        else
            ERR(L, n, "%s: must be between %g and %g, got %g", key, min, max, v);
        return false;
    }
    *dst = v;
    return true;
}

/* One of names[] (NULL-terminated), stored as values[i]. */
static bool get_enum(loader_t *L, const ynode_t *n, const char *key, const char *const *names,
                     const int *values, int *dst)
{
    char list[256] = "";
    for (int i = 0; names[i]; i++) {
        if (i)
            strncat(list, "|", sizeof list - strlen(list) - 1);
        strncat(list, names[i], sizeof list - strlen(list) - 1);
    }
    const char *s = scalar_of(L, n, key, list);
    if (!s)
        return false;
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], s) == 0) {
            *dst = values[i];
            return true;
        }
    ERR(L, n, "%s: expected one of %s, got '%s'", key, list, s);
    return false;
}

/* Relative paths are relative to the manifest that wrote them. */
static char *resolve_path(loader_t *L, const char *p)
{
    if (p[0] == '/')
        return xstrdup(p);
    while (p[0] == '.' && p[1] == '/')
        p += 2;
    return xasprintf("%s/%s", L->mdir, p);
}

/* Iterate over a mapping's pairs. */
#define FOR_PAIRS(m, k, v)                                                                        \
    for (size_t _i = 0; _i + 1 < (m)->n; _i += 2)                                                 \
        for (const ynode_t *k = (m)->kids[_i], *v = (m)->kids[_i + 1]; k; k = NULL, (void)v)

static const char *const retry_keys[] = {"base_ms", "factor", "max_ms", "max_attempts", "jitter", NULL};

static void apply_retry(loader_t *L, const ynode_t *m, const char *where, retry_policy_t *dst,
                        unsigned *set)
{
    if (!want_map(L, m, where))
        return;
    char key[96];
    FOR_PAIRS(m, k, v)
    {
        int idx = key_index(L, k, retry_keys, where);
        if (idx >= 0)
            snprintf(key, sizeof key, "%s.%s", where, retry_keys[idx]);
        switch (idx) {
        case 0:
            if (get_u32(L, v, key, 0, UINT32_MAX, &dst->base_ms))
                *set |= RETRY_SET_BASE;
            break;
        case 1:
            if (get_double(L, v, key, 1.0, INFINITY, &dst->factor))
                *set |= RETRY_SET_FACTOR;
            break;
        case 2:
            if (get_u32(L, v, key, 0, UINT32_MAX, &dst->max_ms))
                *set |= RETRY_SET_MAX;
            break;
        case 3:
            if (get_u32(L, v, key, 1, UINT32_MAX, &dst->max_attempts))
                *set |= RETRY_SET_ATTEMPTS;
            break;
        case 4:
            if (get_double(L, v, key, 0.0, 1.0, &dst->jitter))
                *set |= RETRY_SET_JITTER;
            break;
        default:
            break;
        }
    }
}


static void apply_subscription(loader_t *L, const ynode_t *n, bool foreign, cfg_subscription_t *sub)
{
    static const char *const plugin_keys[] = {"pattern", "handler", "priority", "schema_mode",
                                              "versions", "retry", "timeout_ms", "dedup_ttl_s",
                                              "ordering", NULL};
    /* a foreign handler is one function: there is no handler to choose */
    static const char *const foreign_keys[] = {"pattern", "priority", "schema_mode", "versions",
                                               "retry", "timeout_ms", "dedup_ttl_s", "ordering",
                                               NULL};
    const char *const *keys = foreign ? foreign_keys : plugin_keys;
    sub->pos = n->pos;
    if (n->kind == YN_SCALAR) { /* shorthand: "- approval.**" */
        sub->pattern_pos = n->pos;
        if (!get_str(L, n, "subscription", &sub->pattern))
            return;
    } else {
        if (!want_map(L, n, "subscription"))
            return;
        FOR_PAIRS(n, k, v)
        {
            int idx = key_index(L, k, keys, "subscription");
            const char *name = idx >= 0 ? keys[idx] : "";
            if (idx < 0)
                continue;
            if (!strcmp(name, "pattern")) {
                sub->pattern_pos = v->pos;
                get_str(L, v, "pattern", &sub->pattern);
            } else if (!strcmp(name, "handler")) {
                get_str(L, v, "handler", &sub->handler);
            } else if (!strcmp(name, "priority")) {
                long long p;
                if (get_i64(L, v, "priority", INT_MIN, INT_MAX, &p)) {
                    sub->priority = (int)p;
                    sub->has_priority = true;
                }
            } else if (!strcmp(name, "schema_mode")) {
                int mode;
                if (get_enum(L, v, "schema_mode", schema_mode_names, schema_mode_values, &mode)) {
                    sub->schema_mode = (schema_mode_t)mode;
                    sub->has_schema_mode = true;
                }
            } else if (!strcmp(name, "versions")) {
                const ynode_t *const *items = (const ynode_t *const *)&v;
                size_t count = 1;
                if (v->kind == YN_SEQ) {
                    items = (const ynode_t *const *)v->kids;
                    count = v->n;
                }
                free(sub->versions);
                sub->versions = xrealloc(NULL, count * sizeof *sub->versions);
                sub->n_versions = 0;
                for (size_t i = 0; i < count; i++) {
                    long long ver;
                    if (get_i64(L, items[i], "versions", 1, INT_MAX, &ver))
                        sub->versions[sub->n_versions++] = (int)ver;
                }
                if (count == 0) {
                    ERR(L, v, "versions: must list at least one version (leave it out to accept any)");
                }
            } else if (!strcmp(name, "retry")) {
                unsigned set = 0;
                apply_retry(L, v, "retry", &sub->retry, &set);
                sub->has_retry = true;
                if (L->n_pend == L->cap_pend) {
                    L->cap_pend = L->cap_pend ? L->cap_pend * 2 : 8;
                    L->pend = xrealloc(L->pend, L->cap_pend * sizeof *L->pend);
                }
                L->pend[L->n_pend++] = (pending_retry_t){.dst = &sub->retry, .set = set};
            } else if (!strcmp(name, "timeout_ms")) {
                get_u32(L, v, "timeout_ms", 0, UINT32_MAX, &sub->timeout_ms);
            } else if (!strcmp(name, "dedup_ttl_s")) {
                get_u32(L, v, "dedup_ttl_s", 0, UINT32_MAX, &sub->dedup_ttl_s);
            } else if (!strcmp(name, "ordering")) {
                static const char *const names[] = {"none", "per_key", NULL};
                static const int values[] = {CFG_ORDERING_NONE, CFG_ORDERING_PER_KEY};
                int o;
                if (get_enum(L, v, "ordering", names, values, &o))
                    sub->ordering = (cfg_ordering_t)o;
            }
        }
        if (!sub->pattern) {
            bool given = false;
            FOR_PAIRS(n, k, v)
            given |= !strcmp(k->text, "pattern");
            if (!given)
                ERR(L, n, "subscription is missing required key 'pattern'");
            return;
        }
    }
    char perr[160];
    if (router_pattern_check(sub->pattern, perr, sizeof perr) != 0)
        cfg_errors_add(L->errs, &sub->pattern_pos, "invalid pattern '%s': %s", sub->pattern, perr);
}

static void apply_subscriptions(loader_t *L, const ynode_t *v, bool foreign, cfg_subscription_t **subs,
                                size_t *n_subs)
{
    if (!want_seq(L, v, "subscriptions") || v->kind != YN_SEQ)
        return;
    if (v->n == 0)
        return;
    *subs = xrealloc(NULL, v->n * sizeof **subs);
    memset(*subs, 0, v->n * sizeof **subs);
    *n_subs = v->n;
    for (size_t i = 0; i < v->n; i++)
        apply_subscription(L, v->kids[i], foreign, &(*subs)[i]);
}

static bool name_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 64)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
            return false;
    return true;
}

static void get_name(loader_t *L, const ynode_t *v, char **dst)
{
    if (!get_str(L, v, "name", dst))
        return;
    if (!name_ok(*dst)) {
        ERR(L, v, "name: must be 1 to 64 characters of a-z A-Z 0-9 _ - ., got '%s'", *dst);
        free(*dst);
        *dst = NULL;
    }
}

/* One `admin.tokens` entry: { name, hash: "sha256:<64 hex>", roles: [..],
 * tenant: T | "*" }.  Entries of every file append; names are unique. */
static void apply_token(loader_t *L, const ynode_t *n)
{
    static const char *const keys[] = {"name", "hash", "roles", "tenant", NULL};
    if (!want_map(L, n, "admin.tokens entry"))
        return;
    cfg_token_t t = {.pos = n->pos};
    bool has_hash = false, has_roles = false, has_tenant = false, ok = true;
    FOR_PAIRS(n, k, v)
    {
        switch (key_index(L, k, keys, "an admin.tokens entry")) {
        case 0:
            get_name(L, v, &t.name);
            ok = ok && t.name;
            break;
        case 1: {
            const char *h = scalar_of(L, v, "hash", "\"sha256:<64 hex digits>\"");
            has_hash = true;
            if (!h || cfg_token_hash_parse(h, t.hash) != 0) {
                if (h)
                    ERR(L, v, "hash: expected \"sha256:<64 hex digits>\" (evbusctl token create "
                              "prints it), got a %zu-character value", strlen(h));
                ok = false;
            }
            break;
        }
        case 2:
            has_roles = true;
            if (!want_seq(L, v, "roles") || v->kind != YN_SEQ || v->n == 0) {
                if (v->kind == YN_SEQ || ynode_is_null(v))
                    ERR(L, v, "roles: expected at least one of viewer, operator, admin, "
                              "publisher");
                ok = false;
                break;
            }
            for (size_t i = 0; i < v->n; i++) {
                const char *r = scalar_of(L, v->kids[i], "roles", "a role name");
                int bit = r ? cfg_role_parse(r) : -1;
                if (bit < 0) {
                    if (r)
                        ERR(L, v->kids[i], "roles: unknown role '%s' (valid: viewer, operator, "
                                           "admin, publisher)", r);
                    ok = false;
                } else {
                    t.roles |= (unsigned)bit;
                }
            }
            break;
        case 3: {
            const char *te = scalar_of(L, v, "tenant", "a tenant id or \"*\"");
            has_tenant = true;
            if (!te) {
                ok = false;
            } else if (strcmp(te, "*") != 0) {
                if (!name_ok(te)) {
                    ERR(L, v, "tenant: must be \"*\" or 1 to 64 characters of a-z A-Z 0-9 _ - ., "
                              "got '%s'", te);
                    ok = false;
                } else {
                    set_str(&t.tenant, te);
                }
            }
            break;
        }
        default:
            ok = false;
        }
    }
    if (!t.name && ok) {
        ERR(L, n, "admin.tokens entry: missing 'name'");
        ok = false;
    }
    if (!has_hash || !has_roles || !has_tenant) {
        ERR(L, n, "admin.tokens entry%s%s: missing '%s'", t.name ? " " : "", t.name ? t.name : "",
            !has_hash ? "hash" : !has_roles ? "roles" : "tenant");
        ok = false;
    }
    for (size_t i = 0; ok && i < L->cfg->n_tokens; i++) {
        if (!strcmp(L->cfg->tokens[i].name, t.name)) {
            ERR(L, n, "admin.tokens: the name '%s' is already used at %s:%d:%d", t.name,
                L->cfg->tokens[i].pos.file, L->cfg->tokens[i].pos.line,
                L->cfg->tokens[i].pos.col);
            ok = false;
        } else if (!memcmp(L->cfg->tokens[i].hash, t.hash, sizeof t.hash)) {
            ERR(L, n, "admin.tokens: token '%s' has the same hash as '%s' (one secret, two "
                      "names)", t.name, L->cfg->tokens[i].name);
            ok = false;
        }
    }
    if (!ok) {
        free(t.name);
        free(t.tenant);
        L->lost = true;
        return;
    }
    L->cfg->tokens = xrealloc(L->cfg->tokens, (L->cfg->n_tokens + 1) * sizeof *L->cfg->tokens);
    L->cfg->tokens[L->cfg->n_tokens++] = t;
}

static void apply_instance(loader_t *L, const ynode_t *n)
{
    static const char *const keys[] = {"name", "plugin", "config", "subscriptions", "isolation",
                                       NULL};
    static const char *const isolation_names[] = {"in-process", "process", NULL};
    static const int isolation_values[] = {CFG_ISOLATION_IN_PROCESS, CFG_ISOLATION_PROCESS};
    if (!want_map(L, n, "plugins entry"))
        return;
    evbus_config_t *cfg = L->cfg;
    cfg->instances = xrealloc(cfg->instances, (cfg->n_instances + 1) * sizeof *cfg->instances);
    cfg_instance_t *inst = &cfg->instances[cfg->n_instances++];
    memset(inst, 0, sizeof *inst);
    inst->pos = n->pos;
    bool has_name = false, has_plugin = false;
    FOR_PAIRS(n, k, v)
    {
        switch (key_index(L, k, keys, "plugin instance")) {
        case 0:
            has_name = true;
            get_name(L, v, &inst->name);
            break;
        case 1:
            has_plugin = true;
            inst->plugin_pos = v->pos;
            if (get_str(L, v, "plugin", &inst->plugin) && strchr(inst->plugin, '/'))
                inst->plugin_path = resolve_path(L, inst->plugin);
            break;
        case 2: {
            inst->config_pos = v->pos;
            if (ynode_is_null(v))
                break;
            if (!want_map(L, v, "config"))
                break;
            /* positions for the plugin's config map (checked when it loads) */
            inst->config_keys = xrealloc(NULL, (v->n / 2 + 1) * sizeof *inst->config_keys);
            FOR_PAIRS(v, ck, cv)
            {
                inst->config_keys[inst->n_config_keys++] = (cfg_config_key_t){
                    .key = xstrdup(ck->text), .key_pos = ck->pos, .value_pos = cv->pos};
            }
            json_t *j = ynode_to_json(v, L->errs);
            if (j) {
                free(inst->config_json);
                inst->config_json = json_dumps(j, JSON_COMPACT);
                if (!inst->config_json)
                    oom();
                json_decref(j);
            }
            break;
        }
        case 3:
            apply_subscriptions(L, v, false, &inst->subs, &inst->n_subs);
            break;
        case 4: {
            int mode;
            inst->isolation_pos = v->pos;
            if (get_enum(L, v, "isolation", isolation_names, isolation_values, &mode))
                inst->isolation = (cfg_isolation_t)mode;
            break;
        }
        default:
            break;
        }
    }
    if (!has_name)
        ERR(L, n, "plugin instance is missing required key 'name'");
    if (!has_plugin)
        ERR(L, n, "plugin instance is missing required key 'plugin'");
    if (!inst->config_json)
        inst->config_json = xstrdup("{}");
}

static const char *const ffi_type_names[] = {"string", "int64", "int32", "double", "bool", "json", "event", NULL};
static const int ffi_type_values[] = {FFI_T_STRING, FFI_T_INT64, FFI_T_INT32, FFI_T_DOUBLE,
                                      FFI_T_BOOL,   FFI_T_JSON,  FFI_T_EVENT};

static bool json_pointer_ok(const char *p)
{
    if (*p && *p != '/')
        return false;
    for (; *p; p++)
        if (*p == '~' && p[1] != '0' && p[1] != '1')
            return false;
    return true;
}

/* A constant parameter as JSON text, checked against its declared type. */
static char *ffi_constant(loader_t *L, const ynode_t *v, ffi_type_kind_t type)
{
    json_t *j = NULL;
    const char *want = NULL;
    if (v->kind == YN_SCALAR && v->bad)
        return NULL;
    switch (type) {
    case FFI_T_STRING:
        if (v->kind == YN_SCALAR && !v->bad && !ynode_is_null(v))
            j = json_string(v->text);
        want = "a string";
        break;
    case FFI_T_JSON:
        j = ynode_to_json(v, L->errs);
        if (!j)
            return NULL;
        break;
    case FFI_T_INT64:
    case FFI_T_INT32: {
        long long i;
        long long lo = type == FFI_T_INT32 ? INT32_MIN : LLONG_MIN;
        long long hi = type == FFI_T_INT32 ? INT32_MAX : LLONG_MAX;
        want = type == FFI_T_INT32 ? "a 32-bit integer" : "an integer";
        if (v->kind == YN_SCALAR && parse_i64(v->text, &i) && i >= lo && i <= hi)
            j = json_integer(i);
        break;
    }
    case FFI_T_DOUBLE: {
        double d;
        want = "a number";
        if (v->kind == YN_SCALAR && parse_double(v->text, &d))
            j = json_real(d);
        break;
    }
    case FFI_T_BOOL: {
        want = "true or false";
        int b = v->kind == YN_SCALAR ? parse_bool(v->text) : -1;
        if (b >= 0)
            j = json_boolean(b);
        break;
    }
    default:
        return NULL;
    }
    if (!j) {
        char buf[256];
        ERR(L, v, "value: expected %s for a %s parameter, got %s", want, ffi_type_names[type - 1],
            ynode_describe(v, buf, sizeof buf));
        return NULL;
    }
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    if (!s)
        oom();
    return s;
}

static void apply_param(loader_t *L, const ynode_t *n, cfg_ffi_param_t *par)
{
    static const char *const keys[] = {"type", "from", "value", NULL};
    par->pos = n->pos;
    if (!want_map(L, n, "params entry"))
        return;
    const ynode_t *type_n = NULL, *from_n = NULL, *value_n = NULL;
    FOR_PAIRS(n, k, v)
    {
        switch (key_index(L, k, keys, "parameter")) {
        case 0:
            type_n = v;
            break;
        case 1:
            from_n = v;
            break;
        case 2:
            value_n = v;
            break;
        default:
            break;
        }
    }
    int type;
    if (!type_n) {
        ERR(L, n, "parameter is missing required key 'type'");
        return;
    }
    if (!get_enum(L, type_n, "type", ffi_type_names, ffi_type_values, &type))
        return;
    par->type = (ffi_type_kind_t)type;
    if (type == FFI_T_EVENT) {
        if (from_n || value_n)
            ERR(L, n, "an event parameter takes neither 'from' nor 'value'");
        return;
    }
    if (from_n && value_n) {
        ERR(L, n, "parameter has both 'from' and 'value'; use one");
        return;
    }
    if (!from_n && !value_n) {
        ERR(L, n, "parameter needs 'from' (a JSON Pointer into the event) or 'value' (a constant)");
        return;
    }
    if (from_n) {
        const char *s = scalar_of(L, from_n, "from", "a JSON Pointer");
        if (!s)
            return;
        if (!json_pointer_ok(s)) {
            ERR(L, from_n, "from: expected a JSON Pointer such as '/data/id', got '%s'", s);
            return;
        }
        par->from = xstrdup(s);
        return;
    }
    par->value_json = ffi_constant(L, value_n, par->type);
}

static const char *const result_names[] = {"ok", "retry", "reject", NULL};
static const int result_values[] = {EVBUS_OK, EVBUS_RETRY, EVBUS_REJECT};

static void apply_foreign(loader_t *L, const ynode_t *n)
{
    static const char *const keys[] = {"name",   "library", "symbol",        "returns",
                                       "params", "result",  "subscriptions", NULL};
    static const char *const result_keys[] = {"zero", "positive", "negative", NULL};
    static const char *const ret_names[] = {"int32", "int64", "bool", "void", NULL};
    static const int ret_values[] = {FFI_T_INT32, FFI_T_INT64, FFI_T_BOOL, FFI_T_VOID};
    if (!want_map(L, n, "foreign entry"))
        return;
    evbus_config_t *cfg = L->cfg;
    cfg->foreign = xrealloc(cfg->foreign, (cfg->n_foreign + 1) * sizeof *cfg->foreign);
    cfg_foreign_t *f = &cfg->foreign[cfg->n_foreign++];
    memset(f, 0, sizeof *f);
    f->pos = n->pos;
    f->returns = FFI_T_INT32;
    bool has[7] = {0};
    bool set_rule[3] = {0};
    int rule[3] = {EVBUS_OK, EVBUS_RETRY, EVBUS_REJECT};
    const ynode_t *result_n = NULL, *subs_n = NULL;
    FOR_PAIRS(n, k, v)
    {
        int idx = key_index(L, k, keys, "foreign handler");
        if (idx >= 0)
            has[idx] = true;
        switch (idx) {
        case 0:
            get_name(L, v, &f->name);
            break;
        case 1:
            f->library_pos = v->pos;
            if (get_str(L, v, "library", &f->library) && strchr(f->library, '/')) {
                char *p = resolve_path(L, f->library);
                free(f->library);
                f->library = p;
            }
            break;
        case 2:
            f->symbol_pos = v->pos;
            get_str(L, v, "symbol", &f->symbol);
            break;
        case 3: {
            int r;
            if (get_enum(L, v, "returns", ret_names, ret_values, &r))
                f->returns = (ffi_type_kind_t)r;
            break;
        }
        case 4:
            if (!want_seq(L, v, "params") || v->kind != YN_SEQ || v->n == 0)
                break;
            f->params = xrealloc(NULL, v->n * sizeof *f->params);
            memset(f->params, 0, v->n * sizeof *f->params);
            f->n_params = v->n;
            for (size_t i = 0; i < v->n; i++)
                apply_param(L, v->kids[i], &f->params[i]);
            break;
        case 5:
            result_n = v;
            if (!want_map(L, v, "result"))
                break;
            FOR_PAIRS(v, rk, rv)
            {
                int ri = key_index(L, rk, result_keys, "result");
                char key[32];
                if (ri < 0)
                    continue;
                snprintf(key, sizeof key, "result.%s", result_keys[ri]);
                if (get_enum(L, rv, key, result_names, result_values, &rule[ri]))
                    set_rule[ri] = true;
            }
            break;
        case 6:
            subs_n = v;
            apply_subscriptions(L, v, true, &f->subs, &f->n_subs);
            break;
        default:
            break;
        }
    }
    static const char *const required[] = {"name", "library", "symbol"};
    for (int i = 0; i < 3; i++)
        if (!has[i])
            ERR(L, n, "foreign handler is missing required key '%s'", required[i]);
    /* a subscriptions value of the wrong kind has been reported already */
    if (f->n_subs == 0 && (!subs_n || subs_n->kind == YN_SEQ || ynode_is_null(subs_n)))
        ERR(L, subs_n ? subs_n : n, "foreign handler needs at least one subscription");
    if (f->returns == FFI_T_VOID && result_n)
        ERR(L, result_n, "result: a function that returns void always means ok; remove 'result'");
    /* bool: true is 1 (positive), false is 0 (zero) */
    if (f->returns == FFI_T_BOOL) {
        if (!set_rule[0])
            rule[0] = EVBUS_RETRY;
        if (!set_rule[1])
            rule[1] = EVBUS_OK;
    }
    f->on_zero = rule[0];
    f->on_positive = rule[1];
    f->on_negative = rule[2];
}

/* ---- settings: one generic applier over the modules' tables ---------- */

/* How row s is described in "expected X, got Y". */
static const char *setting_expects(const cfg_setting_t *s, char *buf, size_t len)
{
    switch (s->type) {
    case CFG_U32:
        return "an integer";
    case CFG_DOUBLE:
        return "a number";
    case CFG_BOOL:
        return "true or false";
    case CFG_ENUM:
        return cfg_type_text(s, buf, len);
    case CFG_DURATION:
        return "a duration";
    case CFG_SIZE:
        return "a size";
    case CFG_STRLIST:
        return s->flags & CFG_F_URLS ? "a URL or a list of URLs" : "a name or a list of names";
    default:
        return s->names ? cfg_type_text(s, buf, len) : "a string";
    }
}

/* Set row idx from a computed or built-in default. */
static void set_default(loader_t *L, size_t idx, const char *text)
{
    char err[300];
    if (cfg_value_set(L->cfg, idx, text, err, sizeof err) != 0)
        cfg_errors_add(L->errs, NULL, "%s: default '%s' is invalid: %s", cfg_setting_at(idx)->key,
                       text, err);
    L->cfg->sources[idx] = (cfg_source_t){.kind = CFG_SRC_DEFAULT};
}

static void reset_to_default(loader_t *L, size_t idx)
{
    const cfg_setting_t *s = cfg_setting_at(idx);
    if (s->def) {
        set_default(L, idx, s->def);
    } else if (s->compute) {
        char *v = s->compute(L->cfg);
        set_default(L, idx, v ? v : "");
        free(v);
    } else {
        set_default(L, idx, "");
    }
}

static void apply_setting(loader_t *L, size_t idx, const cfg_setting_t *s, const ynode_t *v)
{
    char buf[256], err[512];
    if (v->kind == YN_SCALAR && v->bad)
        return;
    if (s->type == CFG_STRLIST && v->kind == YN_SEQ && v->n == 0 && (s->flags & CFG_F_OPTIONAL)) {
        /* [] on an optional list: none */
        char **f = (char **)((char *)L->cfg + s->offset);
        free(*f);
        *f = NULL;
        L->cfg->sources[idx] = (cfg_source_t){.kind = CFG_SRC_FILE, .pos = v->pos};
        return;
    }
    if (s->type == CFG_STRLIST && v->kind == YN_SEQ) {
        /* [a, b] is "a,b": one text form for the value, its diff and docs */
        sbuf_t joined = {0};
        sbuf_add(&joined, "", 0);
        for (size_t k = 0; k < v->n; k++) {
            const ynode_t *it = v->kids[k];
            if (it->kind != YN_SCALAR || it->bad || ynode_is_null(it) || strchr(it->text, ',')) {
                char got[256];
                ERR(L, it, "%s: expected %s, got %s", s->key,
                    s->flags & CFG_F_URLS ? "a URL" : "a name", ynode_describe(it, got, sizeof got));
                free(joined.p);
                return;
            }
            if (k)
                sbuf_add(&joined, ",", 1);
            sbuf_add(&joined, it->text, strlen(it->text));
        }
        if (cfg_value_set(L->cfg, idx, joined.p, err, sizeof err) != 0)
            ERR(L, v, "%s: %s", s->key,
                v->n ? err : s->flags & CFG_F_URLS ? "expected at least one URL"
                                                   : "expected at least one name");
        else
            L->cfg->sources[idx] = (cfg_source_t){.kind = CFG_SRC_FILE, .pos = v->pos};
        free(joined.p);
        return;
    }
    if (v->kind != YN_SCALAR || ynode_is_null(v)) {
        char got[256];
        ERR(L, v, "%s: expected %s, got %s", s->key, setting_expects(s, buf, sizeof buf),
            ynode_describe(v, got, sizeof got));
        return;
    }
    const char *text = v->text;
    if (!*text && (s->flags & CFG_F_EMPTY_DEFAULT)) {
        reset_to_default(L, idx);
        L->cfg->sources[idx] = (cfg_source_t){.kind = CFG_SRC_FILE, .pos = v->pos};
        return;
    }
    char *path = NULL;
    if (s->type == CFG_PATH && *text)
        text = path = resolve_path(L, text);
    if (cfg_value_set(L->cfg, idx, text, err, sizeof err) != 0)
        ERR(L, v, "%s: %s", s->key, err);
    else
        L->cfg->sources[idx] = (cfg_source_t){.kind = CFG_SRC_FILE, .pos = v->pos};
    free(path);
}

/* apply_setting, noting for a tolerant load whether the value was refused. */
static void apply_row(loader_t *L, size_t idx, const ynode_t *v)
{
    size_t before = L->errs->count;
    apply_setting(L, idx, cfg_setting_at(idx), v);
    if (L->refused)
        L->refused[idx] = L->errs->count > before || (v->kind == YN_SCALAR && v->bad);
}

/* Is `key` (dotted) a row, a section holding rows, or neither?  A row
 * returns its index; a section returns -2; neither returns -1. */
static long classify(const char *key)
{
    size_t idx, klen = strlen(key);
    if (cfg_setting_find(key, &idx))
        return (long)idx;
    for (size_t i = 0, n = cfg_settings_count(); i < n; i++) {
        const char *rk = cfg_setting_at(i)->key;
        if (!strncmp(rk, key, klen) && rk[klen] == '.')
            return -2;
    }
    return -1;
}

/* The keys valid directly under `prefix` ("" = the top level), in table
 * order, comma-separated. */
static void valid_keys(const char *prefix, char *out, size_t len)
{
    size_t plen = strlen(prefix);
    out[0] = '\0';
    for (size_t i = 0, n = cfg_settings_count(); i < n; i++) {
        const char *rk = cfg_setting_at(i)->key;
        if (plen && (strncmp(rk, prefix, plen) != 0 || rk[plen] != '.'))
            continue;
        const char *seg = plen ? rk + plen + 1 : rk;
        size_t sl = strcspn(seg, ".");
        /* already listed? */
        bool seen = false;
        for (const char *p = out; *p && !seen; p += strcspn(p, ",") + (p[strcspn(p, ",")] ? 2 : 0))
            seen = strncmp(p, seg, sl) == 0 && (p[sl] == ',' || p[sl] == '\0');
        if (seen)
            continue;
        if (out[0])
            strncat(out, ", ", len - strlen(out) - 1);
        size_t room = len - strlen(out) - 1;
        strncat(out, seg, sl < room ? sl : room);
    }
    if (!plen)
        strncat(out, ", plugins, foreign", len - strlen(out) - 1);
    else if (!strcmp(prefix, "admin"))
        strncat(out, ", tokens", len - strlen(out) - 1);
}

static void apply_section(loader_t *L, const ynode_t *m, const char *prefix)
{
    if (!want_map(L, m, prefix)) {
        L->lost = true;
        return;
    }
    FOR_PAIRS(m, k, v)
    {
        char key[256];
        snprintf(key, sizeof key, "%s.%s", prefix, k->text);
        if (!strcmp(key, "admin.tokens")) {
            if (want_seq(L, v, key) && v->kind == YN_SEQ)
                for (size_t i = 0; i < v->n; i++)
                    apply_token(L, v->kids[i]);
            continue;
        }
        long idx = classify(key);
        if (idx >= 0) {
            apply_row(L, (size_t)idx, v);
        } else if (idx == -2) {
            apply_section(L, v, key);
        } else {
            char valid[1024];
            valid_keys(prefix, valid, sizeof valid);
            ERR(L, k, "unknown key '%s' in %s (valid: %s)", k->text, prefix, valid);
            L->lost = true;
        }
    }
}

static void apply_root(loader_t *L, const ynode_t *root)
{
    if (ynode_is_null(root)) /* "---" and nothing else */
        return;
    if (root->kind != YN_MAP) {
        char buf[256];
        ERR(L, root, "the top level of a manifest must be a mapping, got %s",
            ynode_describe(root, buf, sizeof buf));
        L->lost = true;
        return;
    }
    FOR_PAIRS(root, k, v)
    {
        if (!strcmp(k->text, "plugins") || !strcmp(k->text, "foreign")) {
            if (!want_seq(L, v, k->text) || v->kind != YN_SEQ)
                continue;
            for (size_t i = 0; i < v->n; i++) {
                if (k->text[0] == 'p')
                    apply_instance(L, v->kids[i]);
                else
                    apply_foreign(L, v->kids[i]);
            }
            continue;
        }
        if (!strcmp(k->text, "publish_maxlen")) {
            /* publishers trimmed blindly and lost unread events */
            ERR(L, k, "publish_maxlen was removed: publishers no longer trim the stream (that "
                      "lost unread events); set retention: { max_entries: N } (or max_age, "
                      "max_bytes) instead, which never trims an entry a consumer group still "
                      "owes (docs/operations.md, Retention)");
            continue;
        }
        long idx = classify(k->text);
        if (idx >= 0) {
            apply_row(L, (size_t)idx, v);
        } else if (idx == -2) {
            apply_section(L, v, k->text);
        } else {
            char valid[1024];
            valid_keys("", valid, sizeof valid);
            ERR(L, k, "unknown top-level key '%s' (valid: %s)", k->text, valid);
            L->lost = true;
        }
    }
}

/* ---- after the last file --------------------------------------------- */

/* Every row's built-in default, before the first file. */
static void set_defaults(loader_t *L)
{
    for (size_t i = 0, n = cfg_settings_count(); i < n; i++)
        if (cfg_setting_at(i)->def)
            set_default(L, i, cfg_setting_at(i)->def);
}

/* *path must be a regular file; it becomes its real path.  `also` (may be
 * NULL) is another place that was looked at, named when neither exists. */
static void check_file(loader_t *L, const cfg_pos_t *pos, const char *what, const char *as_written,
                       char **path, const char *also)
{
    struct stat st;
    char label[512];
    if (strcmp(as_written, *path) == 0)
        snprintf(label, sizeof label, "%s", what);
    else
        snprintf(label, sizeof label, "%s '%s'", what, as_written);
    if (stat(*path, &st) != 0) {
        cfg_errors_add(L->errs, pos, "%s: no such file %s%s%s%s", label, *path,
                       also ? " (nor " : "", also ? also : "", also ? ")" : "");
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        cfg_errors_add(L->errs, pos, "%s: %s is not a regular file", label, *path);
        return;
    }
    char *real = realpath(*path, NULL);
    if (real) {
        free(*path);
        *path = real;
    }
}

static void finish(loader_t *L)
{
    evbus_config_t *c = L->cfg;
    size_t n_rows = cfg_settings_count();
    /* the environment overrides the files */
    for (size_t i = 0; i < n_rows; i++) {
        const cfg_setting_t *s = cfg_setting_at(i);
        const char *env = s->env ? getenv(s->env) : NULL;
        char err[300];
        if (!env || !*env)
            continue;
        if (cfg_value_set(c, i, env, err, sizeof err) != 0)
            cfg_errors_add(L->errs, NULL, "%s (from %s): %s", s->key, s->env, err);
        else
            c->sources[i] = (cfg_source_t){.kind = CFG_SRC_ENV, .env = s->env};
    }
    /* defaults that depend on other settings, once every file has spoken */
    for (size_t i = 0; i < n_rows; i++)
        if (cfg_setting_at(i)->compute && c->sources[i].kind == CFG_SRC_DEFAULT)
            reset_to_default(L, i);
    for (size_t t = 0; cfg_tables[t]; t++)
        if (cfg_tables[t]->check)
            cfg_tables[t]->check(c, L->errs);

    for (size_t i = 0; i < L->n_pend; i++) {
        retry_policy_t *r = L->pend[i].dst;
        unsigned set = L->pend[i].set;
        if (!(set & RETRY_SET_BASE))
            r->base_ms = c->core.retry.base_ms;
        if (!(set & RETRY_SET_FACTOR))
            r->factor = c->core.retry.factor;
        if (!(set & RETRY_SET_MAX))
            r->max_ms = c->core.retry.max_ms;
        if (!(set & RETRY_SET_ATTEMPTS))
            r->max_attempts = c->core.retry.max_attempts;
        if (!(set & RETRY_SET_JITTER))
            r->jitter = c->core.retry.jitter;
    }

    for (size_t i = 0; i < c->n_instances; i++) {
        cfg_instance_t *in = &c->instances[i];
        if (!in->plugin)
            continue;
        char *nested = NULL;
        if (!in->plugin_path) {
            /* <dir>/NAME.so as installed, else <dir>/NAME/NAME.so as a build
             * tree's plugins/ folder holds it */
            size_t len = strlen(in->plugin);
            int base = (int)(len > 3 && strcmp(in->plugin + len - 3, ".so") == 0 ? len - 3 : len);
            const char *dir = c->daemon.plugin_dir;
            struct stat st;
            in->plugin_path = xasprintf("%s/%.*s.so", dir, base, in->plugin);
            nested = xasprintf("%s/%.*s/%.*s.so", dir, base, in->plugin, base, in->plugin);
            if (stat(in->plugin_path, &st) != 0 && stat(nested, &st) == 0) {
                char *t = in->plugin_path;
                in->plugin_path = nested;
                nested = t;
            }
        }
        check_file(L, &in->plugin_pos, "plugin", in->plugin, &in->plugin_path, nested);
        free(nested);
    }
    for (size_t i = 0; i < c->n_foreign; i++) {
        cfg_foreign_t *f = &c->foreign[i];
        /* a bare soname is left to the dynamic linker's search path */
        if (f->library && f->library[0] == '/')
            check_file(L, &f->library_pos, "library", f->library, &f->library, NULL);
    }

    /* names are unique across plugin instances and foreign handlers */
    size_t total = c->n_instances + c->n_foreign;
    for (size_t i = 0; i < total; i++) {
        const char *ni = i < c->n_instances ? c->instances[i].name : c->foreign[i - c->n_instances].name;
        const cfg_pos_t *pi = i < c->n_instances ? &c->instances[i].pos : &c->foreign[i - c->n_instances].pos;
        if (!ni)
            continue;
        for (size_t j = 0; j < i; j++) {
            const char *nj = j < c->n_instances ? c->instances[j].name : c->foreign[j - c->n_instances].name;
            const cfg_pos_t *pj =
                j < c->n_instances ? &c->instances[j].pos : &c->foreign[j - c->n_instances].pos;
            if (nj && strcmp(ni, nj) == 0) {
                cfg_errors_add(L->errs, pi, "duplicate instance name '%s' (first defined at %s:%d:%d)", ni,
                               pj->file, pj->line, pj->col);
                break;
            }
        }
    }
}

/* ---- directory ------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_manifest_name(const char *n)
{
    size_t len = strlen(n);
    if (n[0] == '.')
        return false;
    return (len > 5 && strcmp(n + len - 5, ".yaml") == 0) || (len > 4 && strcmp(n + len - 4, ".yml") == 0);
}

/* config_load, or with doubtful config_load_partial. */
static evbus_config_t *load(const char *dir, cfg_errors_t *errs, bool **doubtful)
{
    size_t errs_before = errs->count;
    if (doubtful)
        *doubtful = NULL;
    char *absdir = realpath(dir, NULL);
    DIR *d = absdir ? opendir(absdir) : NULL;
    if (!d) {
        cfg_errors_add(errs, NULL, "%s: cannot open configuration directory: %s", dir, strerror(errno));
        free(absdir);
        return NULL;
    }
    evbus_config_t *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        oom();
    cfg->dir = absdir;
    cfg->sources = calloc(cfg_settings_count(), sizeof *cfg->sources);
    if (!cfg->sources)
        oom();

    char **names = NULL;
    size_t n_names = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!is_manifest_name(de->d_name))
            continue;
        char *full = xasprintf("%s/%s", absdir, de->d_name);
        struct stat st;
        bool regular = stat(full, &st) == 0 && S_ISREG(st.st_mode);
        free(full);
        if (!regular)
            continue;
        names = xrealloc(names, (n_names + 1) * sizeof *names);
        names[n_names++] = xstrdup(de->d_name);
    }
    closedir(d);
    if (n_names == 0) {
        cfg_errors_add(errs, NULL, "%s: no configuration files (*.yaml or *.yml) in this directory", dir);
        config_free(cfg);
        return NULL;
    }
    qsort(names, n_names, sizeof *names, cmp_str);

    size_t dlen = strlen(dir);
    bool slash = dlen > 0 && dir[dlen - 1] == '/';
    cfg->files = xrealloc(NULL, n_names * sizeof *cfg->files);
    cfg->n_files = n_names;
    for (size_t i = 0; i < n_names; i++)
        cfg->files[i] = xasprintf("%s%s%s", dir, slash ? "" : "/", names[i]);

    size_t n_rows = cfg_settings_count();
    loader_t L = {.cfg = cfg, .errs = errs, .mdir = absdir};
    if (doubtful && !(L.refused = calloc(n_rows, sizeof *L.refused)))
        oom();
    set_defaults(&L);
    for (size_t i = 0; i < n_names; i++) {
        char *path = xasprintf("%s/%s", absdir, names[i]);
        ynode_t *root;
        if (yread_file(path, cfg->files[i], errs, &root) != 0)
            L.lost = true;
        else if (root)
            apply_root(&L, root);
        ynode_free(root);
        free(path);
        free(names[i]);
    }
    free(names);
    finish(&L);
    free(L.pend);
    if (doubtful) {
        for (size_t i = 0; i < n_rows; i++) {
            cfg_source_kind_t k = cfg->sources[i].kind;
            L.refused[i] = k != CFG_SRC_ENV && (L.refused[i] || (L.lost && k == CFG_SRC_DEFAULT));
        }
        *doubtful = L.refused;
        return cfg;
    }
    if (errs->count > errs_before) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

evbus_config_t *config_load(const char *dir, cfg_errors_t *errs)
{
    return load(dir, errs, NULL);
}

evbus_config_t *config_load_partial(const char *dir, cfg_errors_t *errs, bool **doubtful)
{
    return load(dir, errs, doubtful);
}

/* ---- freeing --------------------------------------------------------- */

static void free_subs(cfg_subscription_t *subs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(subs[i].pattern);
        free(subs[i].handler);
        free(subs[i].versions);
    }
    free(subs);
}

void config_free(evbus_config_t *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_files; i++)
        free(cfg->files[i]);
    free(cfg->files);
    free(cfg->dir);
    /* every string-valued setting, found through the tables */
    for (size_t i = 0, n = cfg_settings_count(); i < n; i++) {
        const cfg_setting_t *s = cfg_setting_at(i);
        if (s->type == CFG_STRING || s->type == CFG_PATH || s->type == CFG_LISTEN ||
            s->type == CFG_STRLIST)
            free(*(char **)((char *)cfg + s->offset));
    }
    free(cfg->sources);
    for (size_t i = 0; i < cfg->n_instances; i++) {
        cfg_instance_t *in = &cfg->instances[i];
        free(in->name);
        free(in->plugin);
        free(in->plugin_path);
        free(in->config_json);
        for (size_t k = 0; k < in->n_config_keys; k++)
            free(in->config_keys[k].key);
        free(in->config_keys);
        free_subs(in->subs, in->n_subs);
    }
    free(cfg->instances);
    for (size_t i = 0; i < cfg->n_foreign; i++) {
        cfg_foreign_t *f = &cfg->foreign[i];
        free(f->name);
        free(f->library);
        free(f->symbol);
        for (size_t k = 0; k < f->n_params; k++) {
            free(f->params[k].from);
            free(f->params[k].value_json);
        }
        free(f->params);
        free_subs(f->subs, f->n_subs);
    }
    free(cfg->foreign);
    for (size_t i = 0; i < cfg->n_tokens; i++) {
        free(cfg->tokens[i].name);
        free(cfg->tokens[i].tenant);
    }
    free(cfg->tokens);
    free(cfg);
}

/* Index i names the role bit 1 << i (CFG_ROLE_*). */
static const char *const role_names[] = {"viewer", "operator", "admin", "publisher"};

int cfg_role_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, role_names[i]))
            return 1 << i;
    return -1;
}

const char *cfg_role_name(unsigned bit)
{
    for (int i = 0; i < 4; i++)
        if (bit == 1u << i)
            return role_names[i];
    return NULL;
}

int cfg_token_hash_parse(const char *text, unsigned char out[32])
{
    if (strncmp(text, "sha256:", 7) != 0 || strlen(text) != 7 + 64)
        return -1;
    for (int i = 0; i < 32; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = text[7 + 2 * i + k];
            int d = c >= '0' && c <= '9' ? c - '0'
                  : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0)
                return -1;
            v = v * 16 + (unsigned)d;
        }
        out[i] = (unsigned char)v;
    }
    return 0;
}
