/*
 * ffi_handler.c — binding and calling foreign handlers (see ffi_handler.h).
 *
 * JSON Pointers are split into unescaped tokens once, at open time, and
 * constants are converted once, so a call only walks the envelope and
 * converts what the event carries.  Per-call storage lives on the stack
 * (FFIH_MAX_PARAMS bounds it); only `json` parameters allocate.
 */
#include "ffi/ffi_handler.h"

#include <dlfcn.h>
#include <ffi.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef union ffih_value {
    int64_t i64;
    int32_t i32;
    double d;
    uint8_t b; /* C bool, passed as ffi_type_uint8 */
    const char *s;
    const void *p;
} ffih_value_t;

typedef struct ffih_param {
    ffi_type_kind_t type;
    char *from;     /* the pointer as written, for messages; NULL for constants */
    char **tokens;  /* unescaped reference tokens */
    size_t n_tokens;
    bool is_const;
    ffih_value_t cval; /* constant value */
    char *cstr;        /* owns cval.s for string/json constants */
} ffih_param_t;

struct ffih {
    char *name;
    void *dl;
    void (*fn)(void);
    ffi_type_kind_t returns;
    int on_zero, on_positive, on_negative;
    size_t n_params;
    ffih_param_t *params;
    ffi_type **atypes;
    ffi_cif cif;
};

static const char *ffih_type_name(ffi_type_kind_t t)
{
    switch (t) {
    case FFI_T_VOID: return "void";
    case FFI_T_STRING: return "string";
    case FFI_T_INT64: return "int64";
    case FFI_T_INT32: return "int32";
    case FFI_T_DOUBLE: return "double";
    case FFI_T_BOOL: return "bool";
    case FFI_T_JSON: return "json";
    case FFI_T_EVENT: return "event";
    }
    return "unknown";
}

static ffi_type *ffih_ffi_type(ffi_type_kind_t t)
{
    switch (t) {
    case FFI_T_VOID: return &ffi_type_void;
    case FFI_T_INT64: return &ffi_type_sint64;
    case FFI_T_INT32: return &ffi_type_sint32;
    case FFI_T_DOUBLE: return &ffi_type_double;
    case FFI_T_BOOL: return &ffi_type_uint8;
    case FFI_T_STRING:
    case FFI_T_JSON:
    case FFI_T_EVENT: return &ffi_type_pointer;
    }
    return NULL;
}

static const char *ffih_json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "real";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "unknown";
}

/* ---- JSON Pointer (RFC 6901) ------------------------------------------- */

/* Checks syntax and splits into unescaped tokens.  Returns 0 or -1 with why. */
static int ffih_pointer_parse(const char *ptr, ffih_param_t *p, char *why, size_t whylen)
{
    if (ptr[0] != '\0' && ptr[0] != '/') {
        snprintf(why, whylen, "must be empty or start with '/'");
        return -1;
    }
    for (const char *c = ptr; *c; c++) {
        if (*c == '~' && c[1] != '0' && c[1] != '1') {
            snprintf(why, whylen, "'~' at offset %zu must be followed by 0 or 1",
                     (size_t)(c - ptr));
            return -1;
        }
    }
    size_t n = 0;
    for (const char *c = ptr; *c; c++)
        n += *c == '/';
    p->tokens = calloc(n ? n : 1, sizeof *p->tokens);
    if (!p->tokens) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    const char *c = ptr;
    for (size_t i = 0; i < n; i++) {
        const char *start = c + 1, *end = strchr(start, '/');
        size_t len = end ? (size_t)(end - start) : strlen(start);
        char *tok = malloc(len + 1), *o = tok;
        if (!tok) {
            snprintf(why, whylen, "out of memory");
            return -1;
        }
        for (size_t k = 0; k < len; k++) {
            if (start[k] == '~') {
                *o++ = start[k + 1] == '1' ? '/' : '~';
                k++;
            } else {
                *o++ = start[k];
            }
        }
        *o = '\0';
        p->tokens[p->n_tokens++] = tok;
        c = start + len;
    }
    return 0;
}

/* An array index token: "0" or digits without a leading zero. */
static bool ffih_index(const char *tok, size_t *out)
{
    if (!tok[0] || (tok[0] == '0' && tok[1]) || strspn(tok, "0123456789") != strlen(tok) ||
        strlen(tok) > 18)
        return false;
    *out = (size_t)strtoull(tok, NULL, 10);
    return true;
}

static const json_t *ffih_resolve(const json_t *root, const ffih_param_t *p)
{
    const json_t *v = root;
    for (size_t i = 0; v && i < p->n_tokens; i++) {
        size_t idx;
        if (json_is_object(v))
            v = json_object_get(v, p->tokens[i]);
        else if (json_is_array(v) && ffih_index(p->tokens[i], &idx))
            v = json_array_get(v, idx);
        else
            v = NULL;
    }
    return v;
}

/* ---- conversion -------------------------------------------------------- */

/* Converts v to p's type into *out (json allocates *owned).  Returns 0 or
 * -1 with "expected X, got Y" style text in why. */
static int ffih_convert(ffi_type_kind_t type, const json_t *v, ffih_value_t *out, char **owned,
                        char *why, size_t whylen)
{
    switch (type) {
    case FFI_T_STRING:
        if (!json_is_string(v))
            break;
        if (strlen(json_string_value(v)) != json_string_length(v)) {
            snprintf(why, whylen, "string contains a NUL character");
            return -1;
        }
        out->s = json_string_value(v);
        return 0;
    case FFI_T_INT64:
    case FFI_T_INT32: {
        int64_t lo = type == FFI_T_INT32 ? INT32_MIN : INT64_MIN;
        int64_t hi = type == FFI_T_INT32 ? INT32_MAX : INT64_MAX;
        int64_t iv;
        if (json_is_integer(v)) {
            iv = (int64_t)json_integer_value(v);
        } else if (json_is_real(v)) {
            double d = json_real_value(v);
            /* 2^63 is exactly representable; anything at or above it is not an int64. */
            if (!isfinite(d) || d != floor(d) || d < -9223372036854775808.0 ||
                d >= 9223372036854775808.0) {
                snprintf(why, whylen, "expected %s, got real %g", ffih_type_name(type), d);
                return -1;
            }
            iv = (int64_t)d;
        } else {
            break;
        }
        if (iv < lo || iv > hi) {
            snprintf(why, whylen, "%lld is out of range for %s", (long long)iv,
                     ffih_type_name(type));
            return -1;
        }
        if (type == FFI_T_INT32)
            out->i32 = (int32_t)iv;
        else
            out->i64 = iv;
        return 0;
    }
    case FFI_T_DOUBLE:
        if (!json_is_number(v))
            break;
        out->d = json_number_value(v);
        return 0;
    case FFI_T_BOOL:
        if (!json_is_boolean(v))
            break;
        out->b = json_is_true(v) ? 1 : 0;
        return 0;
    case FFI_T_JSON:
        *owned = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!*owned) {
            snprintf(why, whylen, "cannot serialize the value");
            return -1;
        }
        out->s = *owned;
        return 0;
    case FFI_T_VOID:
    case FFI_T_EVENT:
        snprintf(why, whylen, "%s cannot be converted from JSON", ffih_type_name(type));
        return -1;
    }
    snprintf(why, whylen, "expected %s, got %s", ffih_type_name(type), ffih_json_kind(v));
    return -1;
}

/* ---- open / close ------------------------------------------------------ */

static void ffih_free_params(ffih_t *h)
{
    for (size_t i = 0; h->params && i < h->n_params; i++) {
        ffih_param_t *p = &h->params[i];
        for (size_t k = 0; k < p->n_tokens; k++)
            free(p->tokens[k]);
        free(p->tokens);
        free(p->from);
        free(p->cstr);
    }
    free(h->params);
}

void ffih_close(ffih_t *h)
{
    if (!h)
        return;
    ffih_free_params(h);
    free(h->atypes);
    if (h->dl)
        dlclose(h->dl);
    free(h->name);
    free(h);
}

/* Checks and prepares parameter i; reports problems to errs. */
static int ffih_open_param(const cfg_foreign_t *cfg, size_t i, ffih_param_t *p,
                           cfg_errors_t *errs)
{
    const cfg_ffi_param_t *c = &cfg->params[i];
    char why[256];
    p->type = c->type;
    if (c->type == FFI_T_VOID) {
        cfg_errors_add(errs, &c->pos, "foreign '%s': param %zu: void is only a return type",
                       cfg->name, i + 1);
        return -1;
    }
    if (!ffih_ffi_type(c->type)) {
        cfg_errors_add(errs, &c->pos, "foreign '%s': param %zu: unknown type %d", cfg->name,
                       i + 1, (int)c->type);
        return -1;
    }
    if (c->type == FFI_T_EVENT) {
        if (c->from || c->value_json) {
            cfg_errors_add(errs, &c->pos,
                           "foreign '%s': param %zu: an event parameter takes no from or value",
                           cfg->name, i + 1);
            return -1;
        }
        return 0;
    }
    if (c->from && c->value_json) {
        cfg_errors_add(errs, &c->pos, "foreign '%s': param %zu: give either from or value, not both",
                       cfg->name, i + 1);
        return -1;
    }
    if (c->from) {
        if (!(p->from = strdup(c->from)) || ffih_pointer_parse(c->from, p, why, sizeof why) != 0) {
            cfg_errors_add(errs, &c->pos,
                           "foreign '%s': param %zu: from '%s' is not a valid JSON Pointer: %s",
                           cfg->name, i + 1, c->from, p->from ? why : "out of memory");
            return -1;
        }
        return 0;
    }
    if (!c->value_json) {
        cfg_errors_add(errs, &c->pos, "foreign '%s': param %zu (%s): needs from or value",
                       cfg->name, i + 1, ffih_type_name(c->type));
        return -1;
    }
    json_error_t jerr;
    json_t *v = json_loads(c->value_json, JSON_DECODE_ANY, &jerr);
    if (!v) {
        cfg_errors_add(errs, &c->pos, "foreign '%s': param %zu: value is not JSON: %s",
                       cfg->name, i + 1, jerr.text);
        return -1;
    }
    char *owned = NULL;
    int rc = ffih_convert(c->type, v, &p->cval, &owned, why, sizeof why);
    if (rc == 0 && c->type == FFI_T_STRING) {
        /* The string belongs to v, which is freed below: keep a copy. */
        owned = strdup(p->cval.s);
        p->cval.s = owned;
        rc = owned ? 0 : -1;
    }
    json_decref(v);
    if (rc != 0) {
        cfg_errors_add(errs, &c->pos, "foreign '%s': param %zu: value %s: %s", cfg->name, i + 1,
                       c->value_json, why);
        free(owned);
        return -1;
    }
    p->is_const = true;
    p->cstr = owned;
    return 0;
}

static bool ffih_rule_ok(int r)
{
    return r == EVBUS_OK || r == EVBUS_RETRY || r == EVBUS_REJECT;
}

ffih_t *ffih_open(const cfg_foreign_t *cfg, cfg_errors_t *errs)
{
    ffih_t *h = calloc(1, sizeof *h);
    if (!h || !(h->name = strdup(cfg->name))) {
        cfg_errors_add(errs, &cfg->pos, "foreign '%s': out of memory", cfg->name);
        free(h);
        return NULL;
    }
    size_t before = errs->count;
    h->returns = cfg->returns;
    h->on_zero = cfg->on_zero;
    h->on_positive = cfg->on_positive;
    h->on_negative = cfg->on_negative;

    dlerror();
    h->dl = dlopen(cfg->library, RTLD_NOW | RTLD_LOCAL);
    if (!h->dl) {
        const char *msg = dlerror();
        cfg_errors_add(errs, &cfg->library_pos, "foreign '%s': cannot load library %s: %s",
                       cfg->name, cfg->library, msg ? msg : "unknown error");
    } else {
        dlerror();
        void *sym = dlsym(h->dl, cfg->symbol);
        const char *msg = dlerror();
        if (!sym || msg)
            cfg_errors_add(errs, &cfg->symbol_pos, "foreign '%s': missing symbol %s in %s: %s",
                           cfg->name, cfg->symbol, cfg->library, msg ? msg : "symbol is NULL");
        else
            *(void **)&h->fn = sym; /* POSIX: a dlsym'd function converts this way */
    }

    if (cfg->returns != FFI_T_VOID && cfg->returns != FFI_T_INT32 &&
        cfg->returns != FFI_T_INT64 && cfg->returns != FFI_T_BOOL)
        cfg_errors_add(errs, &cfg->pos,
                       "foreign '%s': return type %s is not supported (int32, int64, bool or void)",
                       cfg->name, ffih_type_name(cfg->returns));
    if (!ffih_rule_ok(cfg->on_zero) || !ffih_rule_ok(cfg->on_positive) ||
        !ffih_rule_ok(cfg->on_negative))
        cfg_errors_add(errs, &cfg->pos, "foreign '%s': result mapping must use ok, retry or reject",
                       cfg->name);

    if (cfg->n_params > FFIH_MAX_PARAMS) {
        cfg_errors_add(errs, &cfg->pos, "foreign '%s': %zu parameters, at most %d are supported",
                       cfg->name, cfg->n_params, FFIH_MAX_PARAMS);
    } else {
        h->n_params = cfg->n_params;
        h->params = calloc(cfg->n_params ? cfg->n_params : 1, sizeof *h->params);
        h->atypes = calloc(cfg->n_params ? cfg->n_params : 1, sizeof *h->atypes);
        if (!h->params || !h->atypes) {
            cfg_errors_add(errs, &cfg->pos, "foreign '%s': out of memory", cfg->name);
        } else {
            for (size_t i = 0; i < cfg->n_params; i++) {
                if (ffih_open_param(cfg, i, &h->params[i], errs) == 0)
                    h->atypes[i] = ffih_ffi_type(cfg->params[i].type);
            }
        }
    }

    if (errs->count == before) {
        ffi_status st = ffi_prep_cif(&h->cif, FFI_DEFAULT_ABI, (unsigned)h->n_params,
                                     ffih_ffi_type(h->returns), h->atypes);
        if (st != FFI_OK)
            cfg_errors_add(errs, &cfg->pos, "foreign '%s': ffi_prep_cif failed (status %d)",
                           cfg->name, (int)st);
    }
    if (errs->count != before) {
        ffih_close(h);
        return NULL;
    }
    return h;
}

const char *ffih_name(const ffih_t *h) { return h->name; }

/* ---- call -------------------------------------------------------------- */

static evbus_result_t ffih_map_sign(const ffih_t *h, int64_t r)
{
    return (evbus_result_t)(r == 0 ? h->on_zero : r > 0 ? h->on_positive : h->on_negative);
}

evbus_result_t ffih_call(ffih_t *h, const json_t *envelope, const evbus_event_t *ev,
                         char *reason, size_t reason_len)
{
    ffih_value_t vals[FFIH_MAX_PARAMS];
    void *args[FFIH_MAX_PARAMS];
    char *owned[FFIH_MAX_PARAMS] = {0};
    evbus_result_t result = EVBUS_REJECT;
    reason[0] = '\0';

    for (size_t i = 0; i < h->n_params; i++) {
        const ffih_param_t *p = &h->params[i];
        args[i] = &vals[i];
        if (p->type == FFI_T_EVENT) {
            vals[i].p = ev;
            continue;
        }
        if (p->is_const) {
            vals[i] = p->cval;
            continue;
        }
        const json_t *v = ffih_resolve(envelope, p);
        char why[256];
        if (!v) {
            snprintf(reason, reason_len, "param %zu (%s): not found", i + 1, p->from);
            goto out;
        }
        if (ffih_convert(p->type, v, &vals[i], &owned[i], why, sizeof why) != 0) {
            snprintf(reason, reason_len, "param %zu (%s): %s", i + 1, p->from, why);
            goto out;
        }
    }

    /* libffi widens small integer returns to ffi_arg; int64 may be wider
     * than ffi_arg on 32-bit targets, hence the union. */
    union {
        ffi_arg a;
        int64_t i64;
    } ret = {0};
    ffi_call(&h->cif, h->fn, &ret, args);
    switch (h->returns) {
    case FFI_T_INT32: result = ffih_map_sign(h, (int32_t)ret.a); break;
    case FFI_T_INT64: result = ffih_map_sign(h, ret.i64); break;
    /* true counts as positive and false as zero, so a manifest's result
     * rules apply to bool too (config defaults them to true ok, false retry). */
    case FFI_T_BOOL: result = ffih_map_sign(h, (uint8_t)ret.a ? 1 : 0); break;
    default: result = EVBUS_OK; break;
    }
out:
    for (size_t i = 0; i < h->n_params; i++)
        free(owned[i]);
    return result;
}
