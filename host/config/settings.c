/*
 * settings — the registry of every module's table and the generic
 * operations on a row: value as text, value from text, copy, compare on
 * reload.  The YAML applier (config.c) and this file are the only code
 * that touches a settings field by its offset.
 *
 * Values are compared as text (cfg_value_text) so the same comparison
 * serves a reload (two configs) and --check-config --diff-running (a
 * config against the text the running daemon recorded).
 */
#include "config/settings.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "util/log.h"
#include "util/redact.h"

const cfg_table_t *const cfg_tables[] = {&core_settings_table,  &schema_settings_table,
                                         &retention_settings_table, &store_settings_table,
                                         &admin_settings_table,  &daemon_settings_table, NULL};

size_t cfg_settings_count(void)
{
    size_t n = 0;
    for (size_t t = 0; cfg_tables[t]; t++)
        n += cfg_tables[t]->n_rows;
    return n;
}

const cfg_setting_t *cfg_setting_at(size_t i)
{
    for (size_t t = 0; cfg_tables[t]; t++) {
        if (i < cfg_tables[t]->n_rows)
            return &cfg_tables[t]->rows[i];
        i -= cfg_tables[t]->n_rows;
    }
    return NULL;
}

const cfg_setting_t *cfg_setting_find(const char *key, size_t *index)
{
    size_t i = 0;
    for (size_t t = 0; cfg_tables[t]; t++)
        for (size_t r = 0; r < cfg_tables[t]->n_rows; r++, i++)
            if (strcmp(cfg_tables[t]->rows[r].key, key) == 0) {
                if (index)
                    *index = i;
                return &cfg_tables[t]->rows[r];
            }
    return NULL;
}

/* The field of row s in cfg. */
#define FIELD(cfg, s, T) ((T *)((char *)(cfg) + (s)->offset))

/* The largest unit that divides v exactly: 7d, 90m, 1500ms; "0" for 0. */
static void duration_text(uint64_t ms, char *out, size_t len)
{
    static const struct { const char *u; uint64_t ms; } units[] = {
        {"w", 604800000ull}, {"d", 86400000ull}, {"h", 3600000ull}, {"m", 60000ull},
        {"s", 1000ull}};
    for (size_t k = 0; k < sizeof units / sizeof units[0] && ms; k++)
        if (ms % units[k].ms == 0) {
            snprintf(out, len, "%llu%s", (unsigned long long)(ms / units[k].ms), units[k].u);
            return;
        }
    snprintf(out, len, ms ? "%llums" : "%llu", (unsigned long long)ms);
}

static void size_text(uint64_t b, char *out, size_t len)
{
    static const char *units[] = {"TiB", "GiB", "MiB", "KiB"};
    for (int k = 0; k < 4 && b; k++) {
        uint64_t unit = 1ull << (10 * (4 - k));
        if (b % unit == 0) {
            snprintf(out, len, "%llu%s", (unsigned long long)(b / unit), units[k]);
            return;
        }
    }
    snprintf(out, len, "%llu", (unsigned long long)b);
}

/* "<digits><unit>" with a unit from `units` (NULL-terminated, with its
 * multiplier in mult); a bare number takes bare_mult.  false when malformed
 * or overflowing. */
char *cfg_duration_text(uint64_t ms, char *out, size_t len)
{
    duration_text(ms, out, len);
    return out;
}

static bool parse_scaled(const char *t, const char *const *units, const uint64_t *mult,
                         uint64_t bare_mult, uint64_t *out)
{
    size_t nd = strspn(t, "0123456789");
    if (!nd || nd > 15)
        return false;
    uint64_t v = strtoull(t, NULL, 10), m = 0;
    const char *u = t + nd;
    if (!*u)
        m = bare_mult;
    for (size_t k = 0; !m && units[k]; k++)
        if (!strcmp(u, units[k]))
            m = mult[k];
    if (!m || (v && m > UINT64_MAX / v))
        return false;
    *out = v * m;
    return true;
}

char *cfg_value_text(const evbus_config_t *cfg, size_t i, char *out, size_t len)
{
    const cfg_setting_t *s = cfg_setting_at(i);
    out[0] = '\0';
    if (!s)
        return out;
    switch (s->type) {
    case CFG_U32:
        snprintf(out, len, "%u", *FIELD(cfg, s, const uint32_t));
        break;
    case CFG_BOOL:
        snprintf(out, len, "%s", *FIELD(cfg, s, const bool) ? "true" : "false");
        break;
    case CFG_DOUBLE: {
        double v = *FIELD(cfg, s, const double);
        /* shortest text that reads back as the same double */
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(out, len, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
        if (!strpbrk(out, ".eE") && strlen(out) + 2 < len)
            strcat(out, ".0");
        break;
    }
    case CFG_ENUM: {
        int v = *FIELD(cfg, s, const int);
        for (size_t k = 0; s->names[k]; k++)
            if (s->values[k] == v)
                snprintf(out, len, "%s", s->names[k]);
        break;
    }
    case CFG_DURATION:
        duration_text(*FIELD(cfg, s, const uint64_t), out, len);
        break;
    case CFG_SIZE:
        size_text(*FIELD(cfg, s, const uint64_t), out, len);
        break;
    case CFG_STRING:
    case CFG_PATH:
    case CFG_LISTEN:
    case CFG_STRLIST: {
        const char *v = *FIELD(cfg, s, char *const);
        snprintf(out, len, "%s", v ? v : "");
        break;
    }
    }
    return out;
}

static bool parse_u32(const char *t, double min, double max, uint32_t *out, char *err,
                      size_t errlen)
{
    const char *p = t;
    if (*p == '+')
        p++;
    bool neg = *p == '-';
    if (neg)
        p++;
    if (!*p || strspn(p, "0123456789") != strlen(p) || strlen(p) > 12) {
        snprintf(err, errlen, "expected an integer, got '%s'", t);
        return false;
    }
    double v = strtod(p, NULL) * (neg ? -1 : 1);
    if (v < min || v > max) {
        if (max >= 4294967295.0)
            snprintf(err, errlen, "must be at least %.0f, got %s", min, t);
        else
            snprintf(err, errlen, "must be between %.0f and %.0f, got %s", min, max, t);
        return false;
    }
    *out = (uint32_t)v;
    return true;
}


static bool parse_number(const char *t, double *out)
{
    const char *p = t;
    if (*p == '+' || *p == '-')
        p++;
    size_t digits = strspn(p, "0123456789");
    p += digits;
    if (*p == '.') {
        size_t frac = strspn(p + 1, "0123456789");
        digits += frac;
        p += 1 + frac;
    }
    if (!digits)
        return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        size_t e = strspn(p, "0123456789");
        if (!e)
            return false;
        p += e;
    }
    if (*p)
        return false;
    double v = strtod(t, NULL);
    if (!isfinite(v))
        return false;
    *out = v;
    return true;
}

static bool listen_ok(const char *t)
{
    const char *colon = strrchr(t, ':');
    if (!colon || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
        strlen(colon + 1) > 5)
        return false;
    long port = strtol(colon + 1, NULL, 10);
    return port >= 1 && port <= 65535;
}

int cfg_value_set(evbus_config_t *cfg, size_t i, const char *t, char *err, size_t errlen)
{
    const cfg_setting_t *s = cfg_setting_at(i);
    if (!s) {
        snprintf(err, errlen, "no such setting");
        return -1;
    }
    switch (s->type) {
    case CFG_U32: {
        uint32_t v;
        if (!parse_u32(t, s->min, s->max, &v, err, errlen))
            return -1;
        *FIELD(cfg, s, uint32_t) = v;
        return 0;
    }
    case CFG_BOOL:
        if (!strcmp(t, "true") || !strcmp(t, "True") || !strcmp(t, "TRUE"))
            *FIELD(cfg, s, bool) = true;
        else if (!strcmp(t, "false") || !strcmp(t, "False") || !strcmp(t, "FALSE"))
            *FIELD(cfg, s, bool) = false;
        else {
            snprintf(err, errlen, "expected true or false, got '%s'", t);
            return -1;
        }
        return 0;
    case CFG_DOUBLE: {
        double v;
        if (!parse_number(t, &v)) {
            snprintf(err, errlen, "expected a number, got '%s'", t);
            return -1;
        }
        if (v < s->min || v > s->max) {
            if (s->max >= 1e300)
                snprintf(err, errlen, "must be at least %g, got %g", s->min, v);
            else
                snprintf(err, errlen, "must be between %g and %g, got %g", s->min, s->max, v);
            return -1;
        }
        *FIELD(cfg, s, double) = v;
        return 0;
    }
    case CFG_ENUM:
        for (size_t k = 0; s->names[k]; k++)
            if (!strcmp(s->names[k], t)) {
                *FIELD(cfg, s, int) = s->values[k];
                return 0;
            }
        break;
    case CFG_DURATION:
    case CFG_SIZE: {
        static const char *const dunits[] = {"ms", "s", "m", "h", "d", "w", NULL};
        static const uint64_t dmult[] = {1, 1000, 60000, 3600000, 86400000, 604800000};
        static const char *const sunits[] = {"B",  "KB",  "MB",  "GB",  "TB", "KiB",
                                             "MiB", "GiB", "TiB", NULL};
        static const uint64_t smult[] = {1,        1000,      1000000,  1000000000,
                                         1000000000000ull, 1024ull, 1048576ull,
                                         1073741824ull,    1099511627776ull};
        bool dur = s->type == CFG_DURATION;
        uint64_t v;
        if (!parse_scaled(t, dur ? dunits : sunits, dur ? dmult : smult, dur ? 1000 : 1, &v)) {
            snprintf(err, errlen,
                     dur ? "expected a duration such as 30s, 15m, 12h or 7d, got '%s'"
                         : "expected a size such as 512MiB or 2GiB, got '%s'",
                     t);
            return -1;
        }
        if ((double)v < s->min || (double)v > s->max) {
            char lo[64], hi[64];
            if (dur) {
                duration_text((uint64_t)s->min, lo, sizeof lo);
                duration_text((uint64_t)s->max, hi, sizeof hi);
            } else {
                size_text((uint64_t)s->min, lo, sizeof lo);
                size_text((uint64_t)s->max, hi, sizeof hi);
            }
            snprintf(err, errlen, "must be between %s and %s, got '%s'", lo, hi, t);
            return -1;
        }
        *FIELD(cfg, s, uint64_t) = v;
        return 0;
    }
    case CFG_STRLIST: {
        /* names of [A-Za-z0-9_.:-] (URLs: anything but white space) joined
         * with "," */
        bool urls = s->flags & CFG_F_URLS;
        size_t ok = urls ? strcspn(t, " \t\r\n")
                         : strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                     "_.:-,");
        if (!*t || ok != strlen(t) || strstr(t, ",,") || t[0] == ',' || t[strlen(t) - 1] == ',') {
            snprintf(err, errlen, "expected %s, got '%s'",
                     urls ? "a URL or a list of URLs" : "a name or a list of names", t);
            return -1;
        }
        char **f = FIELD(cfg, s, char *);
        char *v = strdup(t);
        free(*f);
        *f = v;
        return 0;
    }
    case CFG_STRING:
    case CFG_PATH:
    case CFG_LISTEN: {
        if (!*t && !(s->flags & CFG_F_OPTIONAL)) {
            snprintf(err, errlen, "must not be empty");
            return -1;
        }
        if (s->names) {
            bool found = false;
            for (size_t k = 0; s->names[k] && !found; k++)
                found = !strcmp(s->names[k], t);
            if (!found)
                break;
        }
        if (s->type == CFG_LISTEN && *t && !listen_ok(t)) {
            snprintf(err, errlen, "expected host:port such as 127.0.0.1:8089, got '%s'", t);
            return -1;
        }
        char **f = FIELD(cfg, s, char *);
        char *v = *t ? strdup(t) : NULL;
        free(*f);
        *f = v;
        return 0;
    }
    }
    /* an enum, or a string restricted to names */
    char list[256] = "";
    for (size_t k = 0; s->names[k]; k++) {
        if (k)
            strncat(list, "|", sizeof list - strlen(list) - 1);
        strncat(list, s->names[k], sizeof list - strlen(list) - 1);
    }
    snprintf(err, errlen, "expected one of %s, got '%s'", list, t);
    return -1;
}

void cfg_value_copy(evbus_config_t *to, const evbus_config_t *from, size_t i)
{
    const cfg_setting_t *s = cfg_setting_at(i);
    switch (s->type) {
    case CFG_U32:
        *FIELD(to, s, uint32_t) = *FIELD(from, s, const uint32_t);
        break;
    case CFG_BOOL:
        *FIELD(to, s, bool) = *FIELD(from, s, const bool);
        break;
    case CFG_DOUBLE:
        *FIELD(to, s, double) = *FIELD(from, s, const double);
        break;
    case CFG_ENUM:
        *FIELD(to, s, int) = *FIELD(from, s, const int);
        break;
    case CFG_DURATION:
    case CFG_SIZE:
        *FIELD(to, s, uint64_t) = *FIELD(from, s, const uint64_t);
        break;
    case CFG_STRING:
    case CFG_PATH:
    case CFG_LISTEN:
    case CFG_STRLIST: {
        const char *v = *FIELD(from, s, char *const);
        char **f = FIELD(to, s, char *);
        free(*f);
        *f = v ? strdup(v) : NULL;
        break;
    }
    }
    /* the source keeps pointing into `to`'s own file names when it can:
     * a file position of `from` would dangle once `from` is freed */
    cfg_source_t src = from->sources[i];
    if (src.kind == CFG_SRC_FILE) {
        src.pos.file = NULL;
        for (size_t k = 0; k < to->n_files; k++)
            if (!strcmp(to->files[k], from->sources[i].pos.file))
                src.pos.file = to->files[k];
        if (!src.pos.file)
            src.kind = CFG_SRC_DEFAULT;
    }
    to->sources[i] = src;
}

const char *cfg_type_text(const cfg_setting_t *s, char *out, size_t len)
{
    switch (s->type) {
    case CFG_U32:
        if (s->max >= 4294967295.0)
            snprintf(out, len, "int ≥ %.0f", s->min);
        else
            snprintf(out, len, "int %.0f..%.0f", s->min, s->max);
        break;
    case CFG_BOOL:
        snprintf(out, len, "bool");
        break;
    case CFG_DOUBLE:
        if (s->max >= 1e300)
            snprintf(out, len, "number ≥ %g", s->min);
        else
            snprintf(out, len, "number %g..%g", s->min, s->max);
        break;
    case CFG_ENUM:
    case CFG_STRING:
        if (s->names) {
            out[0] = '\0';
            for (size_t k = 0; s->names[k]; k++) {
                if (k)
                    strncat(out, "|", len - strlen(out) - 1);
                strncat(out, s->names[k], len - strlen(out) - 1);
            }
        } else
            snprintf(out, len, "string");
        break;
    case CFG_PATH:
        snprintf(out, len, "path");
        break;
    case CFG_LISTEN:
        snprintf(out, len, "host:port");
        break;
    case CFG_DURATION: {
        char lo[64];
        duration_text((uint64_t)s->min, lo, sizeof lo);
        snprintf(out, len, "duration ≥ %s", lo);
        break;
    }
    case CFG_SIZE: {
        char lo[64];
        size_text((uint64_t)s->min, lo, sizeof lo);
        snprintf(out, len, "size ≥ %s", lo);
        break;
    }
    case CFG_STRLIST:
        snprintf(out, len, "%s", s->flags & CFG_F_URLS ? "URL or list of URLs"
                                                       : "name or list of names");
        break;
    }
    return out;
}

const char *cfg_source_text(const evbus_config_t *cfg, size_t i, char *out, size_t len)
{
    const cfg_source_t *src = &cfg->sources[i];
    if (src->kind == CFG_SRC_FILE)
        snprintf(out, len, "%s:%d:%d", src->pos.file, src->pos.line, src->pos.col);
    else if (src->kind == CFG_SRC_ENV)
        snprintf(out, len, "env %s", src->env);
    else
        snprintf(out, len, "default");
    return out;
}

void cfg_pending_free(cfg_pending_list_t *l)
{
    for (size_t i = 0; i < l->count; i++) {
        free(l->items[i].pos);
        free(l->items[i].old);
        free(l->items[i].now);
    }
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

static void pending_add(cfg_pending_list_t *l, const char *key, const char *pos, const char *old,
                        const char *now)
{
    cfg_pending_t *items = realloc(l->items, (l->count + 1) * sizeof *items);
    if (!items)
        abort();
    l->items = items;
    l->items[l->count++] = (cfg_pending_t){.key = key, .pos = strdup(pos), .old = strdup(old),
                                           .now = strdup(now)};
}

size_t config_reload_merge(const evbus_config_t *prev, evbus_config_t *next,
                           cfg_pending_list_t *pending)
{
    size_t live = 0, n = cfg_settings_count();
    for (size_t i = 0; i < n; i++) {
        const cfg_setting_t *s = cfg_setting_at(i);
        char a[1024], b[1024], where[600];
        cfg_value_text(prev, i, a, sizeof a);
        cfg_value_text(next, i, b, sizeof b);
        if (!strcmp(a, b))
            continue;
        cfg_source_text(next, i, where, sizeof where);
        if (s->reload == CFG_LIVE) {
            live++;
            log_info("reload", "%s: %s -> %s (%s)", s->key, a, b, where);
            continue;
        }
        /* "FILE:LINE:COL: key" when a file set it, else "key (default)" */
        char what[800];
        if (next->sources[i].kind == CFG_SRC_FILE)
            snprintf(what, sizeof what, "%s: %s", where, s->key);
        else
            snprintf(what, sizeof what, "%s (%s)", s->key, where);
        log_warn("reload", "%s: changed from %s to %s but needs a restart (%s); the running "
                 "value %s stays in force", what, a, b, s->why, a);
        pending_add(pending, s->key, where, a, b);
        cfg_value_copy(next, prev, i);
    }
    return live;
}

size_t config_diff_text(const evbus_config_t *next,
                        const char *(*running)(void *arg, const char *key), void *arg,
                        cfg_pending_list_t *pending)
{
    size_t live = 0, n = cfg_settings_count();
    for (size_t i = 0; i < n; i++) {
        const cfg_setting_t *s = cfg_setting_at(i);
        const char *a = running(arg, s->key);
        char b[1024], where[600];
        if (!a)
            continue;
        cfg_value_text(next, i, b, sizeof b);
        if (!strcmp(a, b))
            continue;
        if (s->reload == CFG_LIVE) {
            live++;
            continue;
        }
        pending_add(pending, s->key, cfg_source_text(next, i, where, sizeof where), a, b);
    }
    return live;
}

json_t *config_settings_json(const evbus_config_t *cfg, const cfg_pending_list_t *pending)
{
    json_t *list = json_array();
    for (size_t i = 0, n = cfg_settings_count(); i < n; i++) {
        const cfg_setting_t *s = cfg_setting_at(i);
        char val[1024], src[600], type[256];
        const char *pend = NULL;
        for (size_t k = 0; pending && k < pending->count && !pend; k++)
            if (!strcmp(pending->items[k].key, s->key))
                pend = pending->items[k].now;
        json_t *row = json_pack(
            "{s:s, s:s, s:s, s:s, s:s, s:s}", "key", s->key, "value",
            cfg_value_text(cfg, i, val, sizeof val), "source",
            cfg_source_text(cfg, i, src, sizeof src), "reload",
            s->reload == CFG_LIVE ? "live" : "restart", "type", cfg_type_text(s, type, sizeof type),
            "description", s->desc);
        if (pend)
            json_object_set_new(row, "pending_restart", json_string(pend));
        json_array_append_new(list, row);
    }
    return list;
}

static void redact_member(json_t *row, const char *name)
{
    const char *v = json_string_value(json_object_get(row, name));
    if (!v)
        return;
    size_t n = strlen(v), cap = 2 * n + 16; /* "***" may be longer than a secret */
    char *buf = malloc(cap);
    if (!buf)
        return;
    redact_secrets(v, n, buf, cap);
    if (strcmp(buf, v) != 0)
        json_object_set_new(row, name, json_string(buf));
    free(buf);
}

void config_settings_redact(json_t *settings)
{
    size_t i;
    json_t *row;
    json_array_foreach(settings, i, row) {
        redact_member(row, "value");
        redact_member(row, "pending_restart");
    }
}
