/*
 * evbus-settings-doc — docs/configuration.md's settings table, generated
 * from the modules' rows so the documentation cannot drift from the code.
 *
 *   evbus-settings-doc                 print the table (markdown)
 *   evbus-settings-doc --check FILE    exit 1 (with a hint) when FILE's table
 *                                      between the markers differs
 *   evbus-settings-doc --update FILE   rewrite FILE's table in place
 *
 * The build runs it (a custom target) and the unit suite runs --check on
 * the committed docs/configuration.md.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/settings.h"

#define BEGIN "<!-- settings table: generated from the modules' settings rows by " \
              "evbus-settings-doc; do not edit by hand -->\n"
#define END "<!-- end of settings table -->\n"

static void append(char **s, size_t *len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void append(char **s, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *piece = NULL;
    int n = vasprintf(&piece, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    *s = realloc(*s, *len + (size_t)n + 1);
    memcpy(*s + *len, piece, (size_t)n + 1);
    *len += (size_t)n;
    free(piece);
}

static char *table(void)
{
    char *s = NULL;
    size_t len = 0;
    append(&s, &len, "%s", BEGIN);
    append(&s, &len, "| Key | Type | Default | Reload | Meaning |\n|---|---|---|---|---|\n");
    for (size_t i = 0, n = cfg_settings_count(); i < n; i++) {
        const cfg_setting_t *r = cfg_setting_at(i);
        char type[256], def[512];
        cfg_type_text(r, type, sizeof type);
        if (r->def_doc)
            snprintf(def, sizeof def, "%s", r->def_doc);
        else if (r->def && (r->type == CFG_U32 || r->type == CFG_DOUBLE || r->type == CFG_BOOL))
            snprintf(def, sizeof def, "%s", r->def);
        else
            snprintf(def, sizeof def, "`%s`", r->def ? r->def : "");
        /* a | inside a cell would end it */
        char tcell[600];
        size_t tl = 0;
        for (const char *p = type; *p && tl + 3 < sizeof tcell; p++) {
            if (*p == '|')
                tcell[tl++] = '\\';
            tcell[tl++] = *p;
        }
        tcell[tl] = '\0';
        char env[128] = "";
        if (r->env)
            snprintf(env, sizeof env, "; overridden by `%s`", r->env);
        append(&s, &len, "| `%s` | %s | %s | %s | %s%s |\n", r->key, tcell, def,
               r->reload == CFG_LIVE ? "live" : "**restart**", r->desc, env);
    }
    append(&s, &len, "\n");
    append(&s, &len, "When each setting takes effect on reload (live), or why it needs a "
                     "restart:\n\n");
    for (size_t i = 0, n = cfg_settings_count(); i < n; i++) {
        const cfg_setting_t *r = cfg_setting_at(i);
        append(&s, &len, "- `%s` — %s: %s\n", r->key, r->reload == CFG_LIVE ? "live" : "restart",
               r->why ? r->why : "");
    }
    append(&s, &len, "%s", END);
    return s;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    return buf;
}

int main(int argc, char **argv)
{
    char *t = table();
    if (argc == 1) {
        fputs(t, stdout);
        free(t);
        return 0;
    }
    if (argc != 3 || (strcmp(argv[1], "--check") && strcmp(argv[1], "--update"))) {
        fprintf(stderr, "usage: evbus-settings-doc [--check FILE | --update FILE]\n");
        return 2;
    }
    char *doc = slurp(argv[2]);
    char *b = doc ? strstr(doc, BEGIN) : NULL;
    char *e = b ? strstr(b, END) : NULL;
    if (!e) {
        fprintf(stderr, "evbus-settings-doc: %s: no settings table markers (%s)\n", argv[2],
                doc ? "add the BEGIN and END comments" : "cannot read it");
        free(doc);
        free(t);
        return 2;
    }
    e += strlen(END);
    size_t have = (size_t)(e - b);
    int rc = 0;
    if (!strcmp(argv[1], "--check")) {
        if (have != strlen(t) || memcmp(b, t, have) != 0) {
            fprintf(stderr, "evbus-settings-doc: the settings table in %s is out of date with "
                    "the settings rows; run: evbus-settings-doc --update %s\n", argv[2],
                    argv[2]);
            rc = 1;
        }
    } else {
        FILE *f = fopen(argv[2], "wb");
        if (!f || fwrite(doc, 1, (size_t)(b - doc), f) != (size_t)(b - doc) ||
            fputs(t, f) < 0 || fputs(e, f) < 0 || fclose(f) != 0) {
            fprintf(stderr, "evbus-settings-doc: cannot write %s\n", argv[2]);
            rc = 1;
        }
    }
    free(doc);
    free(t);
    return rc;
}
