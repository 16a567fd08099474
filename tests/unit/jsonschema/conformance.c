/* conformance.c - runs the official JSON-Schema-Test-Suite against evbus's
 * validator.
 *
 * Usage: jsonschema-conformance JSTS_DIR KNOWN_FAILURES [-v]
 * Runs every JSTS_DIR/draft2020-12/<name>.json and the optional format files evbus
 * asserts (with format assertion on), serving http://localhost:1234/ from
 * JSTS_DIR/remotes.  Prints passed/failed per file and in total.  Fails when
 * a test outside KNOWN_FAILURES fails, or when a listed test passes (the list
 * may only shrink).  Every test is run twice: boolean path and all-errors
 * path, which must agree.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonschema/jsonschema.h"

static const char *const format_files[] = {
    "date-time", "date", "time", "duration", "uuid", "email", "hostname", "idn-hostname",
    "ipv4", "ipv6", "uri", "uri-reference", "json-pointer", "regex", NULL};

static const char *g_jsts;
static char **g_known;
static size_t g_nknown;
static int *g_known_seen;

static json_t *load_json(const char *path, json_error_t *je)
{
    json_t *j = json_load_file(path, JSON_DECODE_ANY | JSON_ALLOW_NUL, je);
    if (!j && strstr(je->text, "too big"))
        j = json_load_file(path, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, je);
    return j;
}

static json_t *resolve_remote(const char *uri, void *ud)
{
    (void)ud;
    const char *pfx = "http://localhost:1234/";
    if (strncmp(uri, pfx, strlen(pfx)) != 0)
        return NULL;
    char path[4096];
    json_error_t je;
    snprintf(path, sizeof path, "%s/remotes/%s", g_jsts, uri + strlen(pfx));
    return load_json(path, &je);
}

static void load_known(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open known-failures list %s\n", path);
        exit(2);
    }
    char line[2048];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0] || line[0] == '#')
            continue;
        g_known = realloc(g_known, (g_nknown + 1) * sizeof *g_known);
        g_known[g_nknown++] = strdup(line);
    }
    fclose(f);
    g_known_seen = calloc(g_nknown + 1, sizeof *g_known_seen);
}

static int known_index(const char *key)
{
    for (size_t i = 0; i < g_nknown; i++) {
        /* a known-failure line may end in "# reason" */
        const char *hash = strstr(g_known[i], " # ");
        size_t n = hash ? (size_t)(hash - g_known[i]) : strlen(g_known[i]);
        if (strlen(key) == n && !strncmp(g_known[i], key, n))
            return (int)i;
    }
    return -1;
}

typedef struct totals {
    int passed, failed, known, unexpected;
} totals_t;

static void run_file(const char *rel, int format_assert, int verbose, totals_t *tot)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", g_jsts, rel);
    json_error_t je;
    json_t *cases = load_json(path, &je);
    if (!cases) {
        printf("%s: cannot load: %s:%d:%d %s\n", rel, je.source, je.line, je.column, je.text);
        tot->unexpected++;
        return;
    }
    totals_t ft = {0, 0, 0, 0};
    size_t ci;
    json_t *cs;
    json_array_foreach(cases, ci, cs)
    {
        js_options_t opts = {format_assert, resolve_remote, NULL};
        js_registry_t *reg = js_registry_new(&opts);
        char err[512] = "";
        const char *uri = "http://evbus.invalid/jsts/root.json";
        const js_schema_t *s = NULL;
        if (js_registry_add(reg, uri, json_object_get(cs, "schema"), err, sizeof err) == 0)
            s = js_compile(reg, uri, err, sizeof err);
        const char *cdesc = json_string_value(json_object_get(cs, "description"));
        size_t ti;
        json_t *t;
        json_array_foreach(json_object_get(cs, "tests"), ti, t)
        {
            const char *tdesc = json_string_value(json_object_get(t, "description"));
            int want = json_is_true(json_object_get(t, "valid"));
            int pass = 0;
            const char *why = err;
            char buf[600];
            if (s) {
                js_errors_t errs = {0};
                int fast = js_validate(s, json_object_get(t, "data"), NULL, 0);
                int slow = js_validate(s, json_object_get(t, "data"), &errs, 1);
                pass = fast == want && slow == want && (want ? errs.count == 0 : errs.count > 0);
                snprintf(buf, sizeof buf, "expected %s, got %d/%d with %zu errors%s%s",
                         want ? "valid" : "invalid", fast, slow, errs.count,
                         errs.count ? ": " : "", errs.count ? errs.items[0].message : "");
                why = buf;
                js_errors_clear(&errs);
            }
            char key[2048];
            snprintf(key, sizeof key, "%s :: %s :: %s", rel, cdesc, tdesc);
            int k = known_index(key);
            if (k >= 0)
                g_known_seen[k] = 1;
            if (pass && k < 0) {
                ft.passed++;
            } else if (pass) {
                ft.passed++;
                ft.unexpected++;
                printf("UNEXPECTED PASS (remove from known failures): %s\n", key);
            } else if (k >= 0) {
                ft.failed++;
                ft.known++;
                if (verbose)
                    printf("known failure: %s (%s)\n", key, why);
            } else {
                ft.failed++;
                ft.unexpected++;
                printf("FAIL: %s (%s)\n", key, why);
            }
        }
        js_registry_free(reg);
    }
    json_decref(cases);
    printf("%-58s passed %4d  failed %3d  (known %d)\n", rel, ft.passed, ft.failed, ft.known);
    tot->passed += ft.passed;
    tot->failed += ft.failed;
    tot->known += ft.known;
    tot->unexpected += ft.unexpected;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s JSTS_DIR KNOWN_FAILURES [-v]\n", argv[0]);
        return 2;
    }
    g_jsts = argv[1];
    int verbose = argc > 3 && !strcmp(argv[3], "-v");
    load_known(argv[2]);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/draft2020-12", g_jsts);
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "no test suite at %s (set jsts_dir)\n", dir);
        return 2;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l > 5 && !strcmp(de->d_name + l - 5, ".json")) {
            names = realloc(names, (n + 1) * sizeof *names);
            names[n++] = strdup(de->d_name);
        }
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    totals_t tot = {0, 0, 0, 0};
    char rel[512];
    for (size_t i = 0; i < n; i++) {
        snprintf(rel, sizeof rel, "draft2020-12/%s", names[i]);
        run_file(rel, 0, verbose, &tot);
        free(names[i]);
    }
    free(names);
    for (size_t i = 0; format_files[i]; i++) {
        snprintf(rel, sizeof rel, "draft2020-12/optional/format/%s.json", format_files[i]);
        run_file(rel, 1, verbose, &tot);
    }
    for (size_t i = 0; i < g_nknown; i++) {
        if (!g_known_seen[i]) {
            printf("STALE known-failure line (no such test): %s\n", g_known[i]);
            tot.unexpected++;
        }
        free(g_known[i]);
    }
    free(g_known);
    free(g_known_seen);
    printf("TOTAL passed %d failed %d (known %d); unexpected %d\n", tot.passed, tot.failed,
           tot.known, tot.unexpected);
    return tot.unexpected ? 1 : 0;
}
