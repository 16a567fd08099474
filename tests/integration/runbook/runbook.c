/* runbook — see runbook.h. */
#include "runbook.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* s without leading and trailing blanks, in place. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

char *runbook_normalise(const char *line)
{
    size_t n = strlen(line), o = 0;
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    char quote = 0;
    bool blank = false;
    for (size_t i = 0; i < n; i++) {
        char c = line[i];
        if (quote) {
            out[o++] = c;
            if (c == quote)
                quote = 0;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r') {
            blank = true;
            continue;
        }
        if (c == '#' && (o == 0 || blank))
            break; /* a comment: `#` starting a word */
        if (blank && o > 0)
            out[o++] = ' ';
        blank = false;
        if (c == '\'' || c == '"')
            quote = c;
        out[o++] = c;
    }
    out[o] = '\0';
    return out;
}

static int fail(char *err, size_t errlen, size_t line, const char *why)
{
    snprintf(err, errlen, "docs/operations.md line %zu: %s", line, why);
    return -1;
}

static int add_proc(runbook_t *rb, const char *title)
{
    runbook_proc_t *p = realloc(rb->procs, (rb->n_procs + 1) * sizeof *p);
    if (!p)
        return -1;
    rb->procs = p;
    p += rb->n_procs++;
    memset(p, 0, sizeof *p);
    p->title = strdup(title);
    return p->title ? 0 : -1;
}

static int add_cmd(runbook_proc_t *p, char *cmd)
{
    char **c = realloc(p->cmds, (p->n_cmds + 1) * sizeof *c);
    if (!c)
        return -1;
    p->cmds = c;
    p->cmds[p->n_cmds++] = cmd;
    return 0;
}

/* One line inside a ```sh fence of the runbook. */
static int take_command(runbook_t *rb, char *line, size_t lineno, char *err, size_t errlen)
{
    char *t = trim(line);
    if (!*t)
        return 0;
    if (t[strlen(t) - 1] == '\\')
        return fail(err, errlen, lineno, "a command continued with '\\': keep one per line");
    char *cmd = runbook_normalise(t);
    if (!cmd)
        return fail(err, errlen, lineno, "out of memory");
    if (!*cmd) { /* a comment line */
        free(cmd);
        return 0;
    }
    if (rb->n_procs == 0) {
        free(cmd);
        return fail(err, errlen, lineno, "a command before the first procedure (### heading)");
    }
    if (add_cmd(&rb->procs[rb->n_procs - 1], cmd) != 0) {
        free(cmd);
        return fail(err, errlen, lineno, "out of memory");
    }
    return 0;
}

int runbook_parse(const char *text, runbook_t *rb, char *err, size_t errlen)
{
    memset(rb, 0, sizeof *rb);
    bool in_runbook = false, seen = false, in_fence = false, fence_sh = false;
    size_t lineno = 0, fence_line = 0;
    int rc = 0;
    for (const char *p = text; *p && rc == 0;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char *line = strndup(p, len);
        p += nl ? len + 1 : len;
        lineno++;
        if (!line)
            return fail(err, errlen, lineno, "out of memory");
        if (in_fence) {
            if (starts_with(line, "```"))
                in_fence = false;
            else if (in_runbook && fence_sh)
                rc = take_command(rb, line, lineno, err, errlen);
        } else if (starts_with(line, "```")) {
            in_fence = true;
            fence_line = lineno;
            fence_sh = strcmp(trim(line + 3), "sh") == 0;
            if (in_runbook && !fence_sh)
                rc = fail(err, errlen, lineno, "a fenced block in the runbook that is not "
                                               "```sh: its commands would go untested");
        } else if (starts_with(line, "## ")) {
            in_runbook = strcmp(trim(line + 3), "Runbook") == 0;
            seen = seen || in_runbook;
        } else if (in_runbook && starts_with(line, "### ")) {
            if (add_proc(rb, trim(line + 4)) != 0)
                rc = fail(err, errlen, lineno, "out of memory");
        }
        free(line);
    }
    if (rc == 0 && in_fence)
        rc = fail(err, errlen, fence_line, "this fence is never closed");
    if (rc == 0 && !seen)
        rc = fail(err, errlen, lineno, "no `## Runbook` section");
    if (rc != 0)
        runbook_free(rb);
    return rc;
}

int runbook_load(const char *path, runbook_t *rb, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return -1;
    }
    char *text = NULL;
    size_t cap = 0, len = 0, got;
    do {
        if (len + 4097 > cap) {
            char *t = realloc(text, cap = cap ? cap * 2 : 65536);
            if (!t) {
                free(text);
                fclose(f);
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            text = t;
        }
        got = fread(text + len, 1, cap - len - 1, f);
        len += got;
    } while (got > 0);
    fclose(f);
    text[len] = '\0';
    int rc = runbook_parse(text, rb, err, errlen);
    free(text);
    return rc;
}

void runbook_free(runbook_t *rb)
{
    for (size_t i = 0; i < rb->n_procs; i++) {
        for (size_t k = 0; k < rb->procs[i].n_cmds; k++)
            free(rb->procs[i].cmds[k]);
        free(rb->procs[i].cmds);
        free(rb->procs[i].title);
    }
    free(rb->procs);
    memset(rb, 0, sizeof *rb);
}

const runbook_proc_t *runbook_find(const runbook_t *rb, const char *title)
{
    for (size_t i = 0; i < rb->n_procs; i++)
        if (strcmp(rb->procs[i].title, title) == 0)
            return &rb->procs[i];
    return NULL;
}

void runbook_var_set(runbook_vars_t *v, const char *name, const char *value)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->names[i], name) == 0) {
            free(v->values[i]);
            v->values[i] = strdup(value);
            return;
        }
    if (v->n == sizeof v->names / sizeof v->names[0])
        abort(); /* a test with more placeholders than this is a test bug */
    v->names[v->n] = strdup(name);
    v->values[v->n++] = strdup(value);
}

const char *runbook_var(const runbook_vars_t *v, const char *name)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->names[i], name) == 0)
            return v->values[i];
    return NULL;
}

void runbook_vars_free(runbook_vars_t *v)
{
    for (size_t i = 0; i < v->n; i++) {
        free(v->names[i]);
        free(v->values[i]);
    }
    v->n = 0;
}

/* Length of the placeholder name after the '<' at p (0 when it is none). */
static size_t placeholder_len(const char *p)
{
    if (p[0] != '<' || p[1] < 'A' || p[1] > 'Z')
        return 0;
    size_t n = 1;
    while ((p[1 + n] >= 'A' && p[1 + n] <= 'Z') || (p[1 + n] >= '0' && p[1 + n] <= '9') ||
           p[1 + n] == '_')
        n++;
    return p[1 + n] == '>' ? n : 0;
}

char *runbook_fill(const char *text, const runbook_vars_t *v, char *err, size_t errlen)
{
    size_t cap = strlen(text) + 1, len = 0;
    char *out = malloc(cap);
    for (const char *p = text; out && *p;) {
        size_t n = placeholder_len(p);
        const char *val = p, *name_end = p + 1;
        size_t vlen = 1;
        if (n) {
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)n, p + 1);
            val = runbook_var(v, name);
            if (!val) {
                snprintf(err, errlen, "placeholder <%s> has no value in this incident", name);
                free(out);
                return NULL;
            }
            vlen = strlen(val);
            name_end = p + n + 2;
        }
        if (len + vlen + 1 > cap) {
            char *o = realloc(out, cap = (len + vlen + 1) * 2);
            if (!o)
                free(out);
            out = o;
            if (!out)
                break;
        }
        memcpy(out + len, val, vlen);
        len += vlen;
        p = name_end;
    }
    if (!out) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    out[len] = '\0';
    return out;
}
