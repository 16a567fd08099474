/*
 * test_schema.c — the schema catalog and the shipped schemas as a
 * specification: every example of every type-version behaves as its name
 * says, lookups and version claims resolve as docs/schemas.md describes,
 * broken schema trees are reported with positions, and `evbusctl validate`
 * reports and exits as documented.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdarg.h>
#include <time.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "schema/schema.h"

/* ---- helpers ------------------------------------------------------------ */

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    cr_assert_geq(vasprintf(&s, fmt, ap), 0);
    va_end(ap);
    return s;
}

static char *schemas_dir(void)
{
    const char *root = getenv("EVBUS_SOURCE_ROOT");
    cr_assert_not_null(root, "EVBUS_SOURCE_ROOT must be set (meson test does)");
    return xasprintf("%s/schemas", root);
}

static void errs_free(cfg_errors_t *e)
{
    for (size_t i = 0; i < e->count; i++)
        free(e->msgs[i]);
    free(e->msgs);
    memset(e, 0, sizeof *e);
}

static char *errs_join(const cfg_errors_t *e)
{
    size_t n = 1;
    for (size_t i = 0; i < e->count; i++)
        n += strlen(e->msgs[i]) + 1;
    char *s = calloc(1, n);
    for (size_t i = 0; i < e->count; i++) {
        strcat(s, e->msgs[i]);
        strcat(s, "\n");
    }
    return s;
}

static schema_catalog_t *load_shipped(int format_assert)
{
    char *dir = schemas_dir();
    cfg_errors_t errs = {0};
    schema_catalog_t *c = schema_catalog_load(dir, format_assert, &errs);
    char *msg = errs_join(&errs);
    cr_assert_not_null(c, "loading %s failed:\n%s", dir, msg);
    cr_assert_eq(errs.count, 0);
    free(msg);
    free(dir);
    return c;
}

static json_t *load_json(const char *path)
{
    json_error_t jerr;
    json_t *v = json_load_file(path, JSON_DECODE_ANY, &jerr);
    cr_assert_not_null(v, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
    return v;
}

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, 0, &jerr);
    cr_assert_not_null(v, "test JSON does not parse: %s: %s", text, jerr.text);
    return v;
}

static int has_error(const js_errors_t *e, const char *ipath, const char *kw)
{
    for (size_t i = 0; i < e->count; i++)
        if ((!ipath || strcmp(e->items[i].instance_path, ipath) == 0) &&
            (!kw || strcmp(e->items[i].keyword, kw) == 0))
            return 1;
    return 0;
}

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static char *read_all(FILE *f)
{
    fflush(f);
    rewind(f);
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    size_t k;
    while ((k = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (n + 1 == cap)
            s = realloc(s, cap *= 2);
    }
    s[n] = '\0';
    return s;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rm_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A scratch schema tree holding a copy of the shipped envelope. */
static char *scratch_tree(void)
{
    char *dir = strdup("/tmp/evbus-schema-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char *ce = xasprintf("%s/cloudevents", dir);
    cr_assert_eq(mkdir(ce, 0755), 0);
    char *src_dir = schemas_dir();
    char *src = xasprintf("%s/cloudevents/1.0.json", src_dir);
    json_t *env = load_json(src);
    char *dst = xasprintf("%s/1.0.json", ce);
    cr_assert_eq(json_dump_file(env, dst, JSON_INDENT(2)), 0);
    json_decref(env);
    free(dst);
    free(src);
    free(src_dir);
    free(ce);
    return dir;
}

static void scratch_schema(const char *dir, const char *type, const char *file, const char *text)
{
    char *tdir = xasprintf("%s/%s", dir, type);
    mkdir(tdir, 0755);
    char *path = xasprintf("%s/%s", tdir, file);
    write_file(path, text);
    free(path);
    free(tdir);
}

/* Loads dir, which must fail; returns the joined messages. */
static char *load_must_fail(const char *dir)
{
    cfg_errors_t errs = {0};
    schema_catalog_t *c = schema_catalog_load(dir, 1, &errs);
    cr_assert_null(c, "loading %s should have failed", dir);
    cr_assert_gt(errs.count, 0, "a failed load must say why");
    char *msg = errs_join(&errs);
    errs_free(&errs);
    return msg;
}

/* ---- the shipped schemas ------------------------------------------------ */

Test(shipped, every_example_of_every_type_version_matches_its_name)
{
    schema_catalog_t *c = load_shipped(1);
    char *dir = schemas_dir();
    size_t checked = 0;
    for (size_t i = 0; i < schema_catalog_count(c); i++) {
        const char *type = schema_catalog_type_at(c, i);
        for (int v = 1; v <= schema_catalog_latest(c, type); v++) {
            const js_schema_t *s = schema_catalog_get(c, type, v);
            cr_assert_not_null(s);
            char *exdir = xasprintf("%s/%s/examples", dir, type);
            DIR *d = opendir(exdir);
            cr_assert_not_null(d, "%s: missing examples directory", exdir);
            char *valid_pfx = xasprintf("%d-valid-", v), *invalid_pfx = xasprintf("%d-invalid-", v);
            int n_valid = 0, n_invalid = 0;
            struct dirent *de;
            while ((de = readdir(d)) != NULL) {
                int want;
                if (strncmp(de->d_name, valid_pfx, strlen(valid_pfx)) == 0)
                    want = 1;
                else if (strncmp(de->d_name, invalid_pfx, strlen(invalid_pfx)) == 0)
                    want = 0;
                else
                    continue;
                char *path = xasprintf("%s/%s", exdir, de->d_name);
                json_t *inst = load_json(path);
                js_errors_t errs = {0};
                int got = js_validate(s, inst, &errs, 1);
                cr_expect_eq(got, want, "%s: expected %s, got %s%s%s", path,
                             want ? "valid" : "invalid", got ? "valid" : "invalid",
                             errs.count ? ": " : "", errs.count ? errs.items[0].message : "");
                if (!want)
                    cr_expect_gt(errs.count, 0, "%s: invalid without an error", path);
                want ? n_valid++ : n_invalid++;
                checked++;
                js_errors_clear(&errs);
                json_decref(inst);
                free(path);
            }
            closedir(d);
            cr_expect_geq(n_valid, 1, "%s v%d has no valid example", type, v);
            cr_expect_geq(n_invalid, 1, "%s v%d has no invalid example", type, v);
            free(valid_pfx);
            free(invalid_pfx);
            free(exdir);
        }
    }
    cr_expect_geq(checked, 50);
    free(dir);
    schema_catalog_free(c);
}

Test(shipped, the_examples_inside_every_schema_are_valid_and_every_property_is_described)
{
    schema_catalog_t *c = load_shipped(1);
    char *dir = schemas_dir();
    for (size_t i = 0; i < schema_catalog_count(c); i++) {
        const char *type = schema_catalog_type_at(c, i);
        for (int v = 1; v <= schema_catalog_latest(c, type); v++) {
            char *path = xasprintf("%s/%s/%d.json", dir, type, v);
            json_t *doc = load_json(path);
            char *id = xasprintf(SCHEMA_URI_BASE "/%s/%d.json", type, v);
            cr_expect_str_eq(json_string_value(json_object_get(doc, "$id")), id, "%s", path);
            cr_expect_str_eq(json_string_value(json_object_get(doc, "$schema")),
                             "https://json-schema.org/draft/2020-12/schema", "%s", path);
            cr_expect(json_is_string(json_object_get(doc, "title")), "%s: no title", path);
            cr_expect(json_is_string(json_object_get(doc, "description")), "%s: no description",
                      path);
            json_t *props = json_object_get(doc, "properties");
            const char *k;
            json_t *p;
            json_object_foreach(props, k, p)
                cr_expect(json_is_string(json_object_get(p, "description")),
                          "%s: property %s has no description", path, k);
            cr_expect_gt(json_array_size(json_object_get(doc, "required")), 0, "%s", path);
            json_t *examples = json_object_get(doc, "examples");
            cr_expect_geq(json_array_size(examples), 1, "%s: no examples", path);
            size_t j;
            json_t *ex;
            json_array_foreach(examples, j, ex)
                cr_expect_eq(js_validate(schema_catalog_get(c, type, v), ex, NULL, 0), 1,
                             "%s: examples[%zu] is invalid", path, j);
            json_decref(doc);
            free(id);
            free(path);
        }
    }
    free(dir);
    schema_catalog_free(c);
}

Test(shipped, envelope_examples_match_their_names)
{
    schema_catalog_t *c = load_shipped(1);
    char *dir = schemas_dir();
    char *exdir = xasprintf("%s/cloudevents/examples", dir);
    DIR *d = opendir(exdir);
    cr_assert_not_null(d);
    int n_valid = 0, n_invalid = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int want;
        if (strncmp(de->d_name, "1.0-valid-", 10) == 0)
            want = 1;
        else if (strncmp(de->d_name, "1.0-invalid-", 12) == 0)
            want = 0;
        else
            continue;
        char *path = xasprintf("%s/%s", exdir, de->d_name);
        json_t *ev = load_json(path);
        cr_expect_eq(js_validate(schema_catalog_envelope(c), ev, NULL, 0), want, "%s", path);
        want ? n_valid++ : n_invalid++;
        json_decref(ev);
        free(path);
    }
    closedir(d);
    cr_expect_geq(n_valid, 3);
    cr_expect_geq(n_invalid, 10);
    free(exdir);
    free(dir);
    schema_catalog_free(c);
}

Test(shipped, format_assertion_can_be_switched_off)
{
    char *dir = schemas_dir();
    char *path = xasprintf("%s/approval.item.approved/examples/1-invalid-bad-format-approverId.json",
                           dir);
    json_t *inst = load_json(path);
    schema_catalog_t *on = load_shipped(1), *off = load_shipped(0);
    cr_expect_eq(js_validate(schema_catalog_get(on, "approval.item.approved", 1), inst, NULL, 0), 0);
    cr_expect_eq(js_validate(schema_catalog_get(off, "approval.item.approved", 1), inst, NULL, 0), 1);
    schema_catalog_free(on);
    schema_catalog_free(off);
    json_decref(inst);
    free(path);
    free(dir);
}

/* ---- lookups ------------------------------------------------------------ */

Test(catalog, knows_at_least_twenty_types_in_lexical_order)
{
    schema_catalog_t *c = load_shipped(1);
    cr_expect_geq(schema_catalog_count(c), 20);
    for (size_t i = 1; i < schema_catalog_count(c); i++)
        cr_expect_lt(strcmp(schema_catalog_type_at(c, i - 1), schema_catalog_type_at(c, i)), 0);
    cr_expect_null(schema_catalog_type_at(c, schema_catalog_count(c)));
    schema_catalog_free(c);
}

Test(catalog, latest_is_the_highest_version_and_zero_for_unknown_types)
{
    schema_catalog_t *c = load_shipped(1);
    cr_expect_eq(schema_catalog_latest(c, "approval.item.approved"), 2);
    cr_expect_eq(schema_catalog_latest(c, "approval.item.requested"), 1);
    cr_expect_eq(schema_catalog_latest(c, "approval.item"), 0);
    cr_expect_eq(schema_catalog_latest(c, "approval.item.approved.x"), 0);
    cr_expect_eq(schema_catalog_latest(c, ""), 0);
    cr_expect_eq(schema_catalog_latest(c, "cloudevents"), 0, "the envelope is not an event type");
    schema_catalog_free(c);
}

Test(catalog, find_answers_latest_and_get_in_one_lookup)
{
    schema_catalog_t *c = load_shipped(1);
    for (size_t i = 0; i < schema_catalog_count(c); i++) {
        const char *type = schema_catalog_type_at(c, i);
        int latest = schema_catalog_latest(c, type);
        for (int v = -1; v <= latest + 1; v++) {
            const js_schema_t *s = (const js_schema_t *)1;
            cr_expect_eq(schema_catalog_find(c, type, v, &s), latest, "%s", type);
            const js_schema_t *want = schema_catalog_get(c, type, v == 0 ? latest : v);
            cr_expect_eq(s, want, "%s version %d", type, v);
        }
    }
    const js_schema_t *s = (const js_schema_t *)1;
    cr_expect_eq(schema_catalog_find(c, "no.such.type", 0, &s), 0);
    cr_expect_null(s);
    schema_catalog_free(c);
}

Test(catalog, get_returns_each_version_and_null_outside_one_to_latest)
{
    schema_catalog_t *c = load_shipped(1);
    const js_schema_t *v1 = schema_catalog_get(c, "approval.item.approved", 1);
    const js_schema_t *v2 = schema_catalog_get(c, "approval.item.approved", 2);
    cr_expect_not_null(v1);
    cr_expect_not_null(v2);
    cr_expect_neq(v1, v2);
    cr_expect_null(schema_catalog_get(c, "approval.item.approved", 0));
    cr_expect_null(schema_catalog_get(c, "approval.item.approved", 3));
    cr_expect_null(schema_catalog_get(c, "approval.item.approved", -1));
    cr_expect_null(schema_catalog_get(c, "no.such.type", 1));
    cr_expect_not_null(schema_catalog_envelope(c));

    json_t *v2_payload = parse("{\"approvalId\":\"3f2b7c1e-8a4d-4c55-9e21-0b6f5d7a9c10\","
                               "\"spaceId\":\"9b1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f\","
                               "\"decidedBy\":{\"id\":\"5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9\","
                               "\"kind\":\"user\"},\"decisionAt\":\"2025-03-14T09:26:53Z\"}");
    cr_expect_eq(js_validate(v2, v2_payload, NULL, 0), 1);
    cr_expect_eq(js_validate(v1, v2_payload, NULL, 0), 0, "v1 knows no decidedBy");
    json_decref(v2_payload);
    schema_catalog_free(c);
}

Test(catalog, lookup_is_fast_enough_for_the_hot_path)
{
    schema_catalog_t *c = load_shipped(1);
    struct timespec a, b;
    const int n = 1000000;
    size_t hits = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++)
        hits += schema_catalog_get(c, (i & 1) ? "workspace.member.role-changed" : "agent.run.failed",
                                   1) != NULL;
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / n;
    cr_expect_eq(hits, (size_t)n);
    /* ~20 ns in an optimised build; the bound leaves room for sanitizers.
     * EVBUS_TEST_TIME_FACTOR scales it for slower runs: tests/valgrind/run
     * sets 50 (memcheck measured 5 us on a busy machine). */
    const char *factor = getenv("EVBUS_TEST_TIME_FACTOR");
    double bound = 1000.0 * (factor && atof(factor) > 1 ? atof(factor) : 1);
    cr_expect_lt(ns, bound, "lookup took %.1f ns", ns);
    schema_catalog_free(c);
}

/* ---- version claims ------------------------------------------------------ */

static int version_of(const char *text)
{
    json_t *ev = parse(text);
    int v = schema_event_version(ev);
    json_decref(ev);
    return v;
}

#define T_APPROVED "\"type\":\"approval.item.approved\""
#define DS(v) "\"dataschema\":\"https://schemas.evbus.dev/approval.item.approved/" v "\""

Test(version, is_zero_when_the_event_names_none)
{
    cr_expect_eq(version_of("{" T_APPROVED "}"), 0);
}

Test(version, comes_from_schemaversion_as_integer_or_decimal_string)
{
    cr_expect_eq(version_of("{" T_APPROVED ",\"schemaversion\":2}"), 2);
    cr_expect_eq(version_of("{" T_APPROVED ",\"schemaversion\":\"2\"}"), 2);
    cr_expect_eq(version_of("{" T_APPROVED ",\"schemaversion\":\"12\"}"), 12);
    cr_expect_eq(version_of("{" T_APPROVED ",\"schemaversion\":2.0}"), 2);
}

Test(version, comes_from_a_dataschema_ending_in_type_and_version)
{
    cr_expect_eq(version_of("{" T_APPROVED "," DS("2.json") "}"), 2);
    cr_expect_eq(version_of("{" T_APPROVED ",\"dataschema\":\"/approval.item.approved/1.json\"}"), 1);
    cr_expect_eq(version_of("{" T_APPROVED ",\"dataschema\":"
                            "\"https://example.com/s/approval.item.approved/3.json\"}"),
                 3);
}

Test(version, agrees_when_both_attributes_name_the_same_version)
{
    cr_expect_eq(version_of("{" T_APPROVED "," DS("2.json") ",\"schemaversion\":\"2\"}"), 2);
}

Test(version, is_malformed_when_schemaversion_is_not_a_positive_integer)
{
    cr_expect_eq(version_of("{" T_APPROVED ",\"schemaversion\":0}"), -1);
    cr_expect_eq(version_of("{" T_APPROVED ",\"schemaversion\":-2}"), -1);
    cr_expect_eq(version_of("{" T_APPROVED ",\"schemaversion\":\"02\"}"), -1);
    cr_expect_eq(version_of("{" T_APPROVED ",\"schemaversion\":\"v2\"}"), -1);
    cr_expect_eq(version_of("{" T_APPROVED ",\"schemaversion\":\"\"}"), -1);
    cr_expect_eq(version_of("{" T_APPROVED ",\"schemaversion\":2.5}"), -1);
    cr_expect_eq(version_of("{" T_APPROVED ",\"schemaversion\":true}"), -1);
    cr_expect_eq(version_of("{" T_APPROVED ",\"schemaversion\":\"1234567890\"}"), -1);
}

Test(version, is_malformed_when_dataschema_has_another_shape_or_type)
{
    cr_expect_eq(version_of("{" T_APPROVED "," DS("latest") "}"), -1);
    cr_expect_eq(version_of("{" T_APPROVED "," DS("0.json") "}"), -1);
    cr_expect_eq(version_of("{" T_APPROVED "," DS("v2.json") "}"), -1);
    cr_expect_eq(version_of("{" T_APPROVED ",\"dataschema\":"
                            "\"https://schemas.evbus.dev/approval.item.rejected/1.json\"}"),
                 -1);
    cr_expect_eq(version_of("{" T_APPROVED ",\"dataschema\":\"2.json\"}"), -1);
    cr_expect_eq(version_of("{" T_APPROVED ",\"dataschema\":7}"), -1);
    cr_expect_eq(version_of("{" DS("2.json") "}"), -1, "no type to compare with");
}

Test(version, is_malformed_when_the_two_attributes_disagree)
{
    cr_expect_eq(version_of("{" T_APPROVED "," DS("2.json") ",\"schemaversion\":1}"), -1);
}

/* ---- whole events --------------------------------------------------------- */

#define ENV_HEAD                                                                          \
    "{\"specversion\":\"1.0\",\"id\":\"e1\",\"source\":\"/tenants/acme/approvals\","      \
    "\"time\":\"2025-03-14T09:26:53Z\",\"tenantid\":\"acme\","
#define V1_DATA                                                                           \
    "\"data\":{\"approvalId\":\"3f2b7c1e-8a4d-4c55-9e21-0b6f5d7a9c10\","                  \
    "\"spaceId\":\"9b1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f\","                               \
    "\"approverId\":\"5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9\"}"
#define V2_DATA                                                                           \
    "\"data\":{\"approvalId\":\"3f2b7c1e-8a4d-4c55-9e21-0b6f5d7a9c10\","                  \
    "\"spaceId\":\"9b1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f\","                               \
    "\"decidedBy\":{\"id\":\"5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9\",\"kind\":\"agent\"}," \
    "\"decisionAt\":\"2025-03-14T09:26:53Z\"}"

static int validate_event(const schema_catalog_t *c, const char *text, js_errors_t *errs)
{
    json_t *ev = parse(text);
    int fast = schema_catalog_validate_event(c, ev, NULL, 0);
    int r = schema_catalog_validate_event(c, ev, errs, 1);
    cr_expect_eq(fast, r, "the boolean fast path and the reporting path must agree");
    json_decref(ev);
    return r;
}

Test(event, without_a_version_claim_data_is_checked_against_the_latest)
{
    schema_catalog_t *c = load_shipped(1);
    js_errors_t errs = {0};
    cr_expect_eq(validate_event(c, ENV_HEAD T_APPROVED "," V2_DATA "}", &errs), 1);
    cr_expect_eq(errs.count, 0);
    cr_expect_eq(validate_event(c, ENV_HEAD T_APPROVED "," V1_DATA "}", &errs), 0);
    cr_expect(has_error(&errs, "/data", "required"), "v1 data lacks v2's decidedBy/decisionAt");
    cr_expect(has_error(&errs, "/data/approverId", NULL), "v1's approverId is unknown to v2");
    js_errors_clear(&errs);
    schema_catalog_free(c);
}

Test(event, an_older_version_named_by_schemaversion_or_dataschema_is_used)
{
    schema_catalog_t *c = load_shipped(1);
    js_errors_t errs = {0};
    cr_expect_eq(validate_event(c, ENV_HEAD T_APPROVED ",\"schemaversion\":\"1\"," V1_DATA "}", &errs), 1);
    cr_expect_eq(validate_event(c, ENV_HEAD T_APPROVED "," DS("1.json") "," V1_DATA "}", &errs), 1);
    cr_expect_eq(validate_event(c, ENV_HEAD T_APPROVED "," DS("1.json") "," V2_DATA "}", &errs), 0);
    cr_expect(has_error(&errs, "/data/decidedBy", NULL));
    js_errors_clear(&errs);
    schema_catalog_free(c);
}

Test(event, payload_errors_carry_data_paths_and_the_schema_uri)
{
    schema_catalog_t *c = load_shipped(1);
    js_errors_t errs = {0};
    const char *ev = ENV_HEAD T_APPROVED ",\"schemaversion\":2,"
                     "\"data\":{\"approvalId\":\"3f2b7c1e-8a4d-4c55-9e21-0b6f5d7a9c10\","
                     "\"spaceId\":\"9b1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f\","
                     "\"decidedBy\":{\"id\":\"5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9\","
                     "\"kind\":\"robot\"},\"decisionAt\":\"2025-03-14T09:26:53Z\"}}";
    cr_expect_eq(validate_event(c, ev, &errs), 0);
    cr_assert(has_error(&errs, "/data/decidedBy/kind", "enum"));
    for (size_t i = 0; i < errs.count; i++)
        cr_expect(starts_with(errs.items[i].schema_path,
                              SCHEMA_URI_BASE "/approval.item.approved/2.json#"),
                  "schema path %s", errs.items[i].schema_path);
    js_errors_clear(&errs);
    schema_catalog_free(c);
}

Test(event, an_invalid_envelope_is_invalid_and_reports_envelope_paths)
{
    schema_catalog_t *c = load_shipped(1);
    js_errors_t errs = {0};
    cr_expect_eq(validate_event(c, "{\"specversion\":\"1.0\",\"id\":\"e1\",\"source\":\"/x\","
                                   "\"time\":\"2025-03-14T09:26:53Z\"," T_APPROVED "," V2_DATA "}",
                                &errs),
                 0);
    cr_expect(has_error(&errs, "", "required"), "tenantid is required");
    cr_expect(starts_with(errs.items[0].schema_path, SCHEMA_URI_BASE "/cloudevents/1.0.json#"),
              "schema path %s", errs.items[0].schema_path);
    js_errors_clear(&errs);
    cr_expect_eq(validate_event(c, "[1,2]", &errs), 0);
    js_errors_clear(&errs);
    schema_catalog_free(c);
}

Test(event, all_errors_include_data_errors_even_when_the_envelope_is_invalid)
{
    schema_catalog_t *c = load_shipped(1);
    js_errors_t errs = {0};
    cr_expect_eq(validate_event(c, "{\"specversion\":\"1.0\",\"id\":\"\",\"source\":\"/x\","
                                   "\"time\":\"2025-03-14T09:26:53Z\",\"tenantid\":\"t\","
                                   T_APPROVED ",\"data\":{}}",
                                &errs),
                 0);
    cr_expect(has_error(&errs, "/id", NULL));
    cr_expect(has_error(&errs, "/data", "required"));
    js_errors_clear(&errs);
    schema_catalog_free(c);
}

Test(event, an_unknown_type_or_version_is_minus_one_with_a_message)
{
    schema_catalog_t *c = load_shipped(1);
    js_errors_t errs = {0};
    cr_expect_eq(validate_event(c, ENV_HEAD "\"type\":\"approval.item.unheard-of\",\"data\":{}}",
                                &errs),
                 -1);
    cr_expect(has_error(&errs, "/type", SCHEMA_KW_UNKNOWN_TYPE));
    js_errors_clear(&errs);
    cr_expect_eq(validate_event(c, ENV_HEAD T_APPROVED ",\"schemaversion\":3," V2_DATA "}", &errs),
                 -1);
    cr_expect(has_error(&errs, "/schemaversion", SCHEMA_KW_UNKNOWN_VERSION));
    js_errors_clear(&errs);
    schema_catalog_free(c);
}

Test(event, a_malformed_version_claim_is_invalid)
{
    schema_catalog_t *c = load_shipped(1);
    js_errors_t errs = {0};
    cr_expect_eq(validate_event(c, ENV_HEAD T_APPROVED ","
                                "\"dataschema\":\"https://schemas.evbus.dev/agent.run.failed/1.json\","
                                V2_DATA "}",
                                &errs),
                 0);
    cr_expect(has_error(&errs, "/dataschema", SCHEMA_KW_VERSION));
    js_errors_clear(&errs);
    schema_catalog_free(c);
}

Test(event, missing_data_is_checked_as_null)
{
    schema_catalog_t *c = load_shipped(1);
    js_errors_t errs = {0};
    cr_expect_eq(validate_event(c, ENV_HEAD T_APPROVED "}", &errs), 0);
    cr_expect(has_error(&errs, "/data", "type"));
    js_errors_clear(&errs);
    schema_catalog_free(c);
}

/* ---- broken schema trees ------------------------------------------------- */

Test(load, a_json_syntax_error_is_reported_with_file_line_and_column)
{
    char *dir = scratch_tree();
    scratch_schema(dir, "demo.thing.happened", "1.json",
                   "{\n  \"type\": \"object\",\n  \"required\": [\"a\",]\n}\n");
    char *msg = load_must_fail(dir);
    char *want = xasprintf("%s/demo.thing.happened/1.json:3:", dir);
    cr_expect(strstr(msg, want) != NULL, "got: %s", msg);
    free(want);
    free(msg);
    rm_tree(dir);
    free(dir);
}

Test(load, a_schema_that_does_not_compile_is_reported_with_its_file)
{
    char *dir = scratch_tree();
    scratch_schema(dir, "demo.thing.happened", "1.json",
                   "{\"type\": \"object\", \"properties\": {\"a\": {\"pattern\": \"(\"}}}");
    char *msg = load_must_fail(dir);
    char *want = xasprintf("%s/demo.thing.happened/1.json: ", dir);
    cr_expect(strstr(msg, want) != NULL, "got: %s", msg);
    free(want);
    free(msg);
    rm_tree(dir);
    free(dir);
}

Test(load, every_broken_file_is_reported_not_only_the_first)
{
    char *dir = scratch_tree();
    scratch_schema(dir, "demo.a", "1.json", "{");
    scratch_schema(dir, "demo.b", "1.json", "[}");
    char *msg = load_must_fail(dir);
    cr_expect(strstr(msg, "demo.a/1.json:") && strstr(msg, "demo.b/1.json:"), "got: %s", msg);
    free(msg);
    rm_tree(dir);
    free(dir);
}

Test(load, versions_must_have_no_gaps)
{
    char *dir = scratch_tree();
    scratch_schema(dir, "demo.thing.happened", "1.json", "{\"type\": \"object\"}");
    scratch_schema(dir, "demo.thing.happened", "3.json", "{\"type\": \"object\"}");
    char *msg = load_must_fail(dir);
    cr_expect(strstr(msg, "2.json is missing") != NULL, "got: %s", msg);
    free(msg);
    rm_tree(dir);
    free(dir);
}

Test(load, a_mismatched_id_is_refused)
{
    char *dir = scratch_tree();
    scratch_schema(dir, "demo.thing.happened", "1.json",
                   "{\"$id\": \"https://schemas.evbus.dev/demo.other/1.json\"}");
    char *msg = load_must_fail(dir);
    cr_expect(strstr(msg, "does not match") != NULL, "got: %s", msg);
    free(msg);
    rm_tree(dir);
    free(dir);
}

Test(load, bad_file_and_directory_names_are_refused)
{
    char *dir = scratch_tree();
    scratch_schema(dir, "Demo.Thing", "1.json", "{}");
    scratch_schema(dir, "demo.ok", "v1.json", "{}");
    char *msg = load_must_fail(dir);
    cr_expect(strstr(msg, "Demo.Thing: not an event type name") != NULL, "got: %s", msg);
    cr_expect(strstr(msg, "v1.json: a schema file must be named") != NULL, "got: %s", msg);
    free(msg);
    rm_tree(dir);
    free(dir);
}

Test(load, the_envelope_is_required)
{
    char *dir = strdup("/tmp/evbus-schema-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char *msg = load_must_fail(dir);
    cr_expect(strstr(msg, "cloudevents/1.0.json: missing") != NULL, "got: %s", msg);
    free(msg);
    rm_tree(dir);
    free(dir);
    cfg_errors_t errs = {0};
    cr_expect_null(schema_catalog_load("/nonexistent/evbus-schemas", 1, &errs));
    cr_expect_eq(errs.count, 1);
    errs_free(&errs);
}

Test(load, schemas_may_ref_each_other_and_examples_and_other_files_are_ignored)
{
    char *dir = scratch_tree();
    scratch_schema(dir, "demo.common", "1.json",
                   "{\"$defs\": {\"id\": {\"type\": \"string\", \"minLength\": 3}}}");
    scratch_schema(dir, "demo.thing.happened", "1.json",
                   "{\"$id\": \"https://schemas.evbus.dev/demo.thing.happened/1.json\","
                   " \"properties\": {\"id\": {\"$ref\": \"/demo.common/1.json#/$defs/id\"}}}");
    scratch_schema(dir, "demo.thing.happened", "README.md", "not JSON");
    char *ex = xasprintf("%s/demo.thing.happened/examples", dir);
    mkdir(ex, 0755);
    scratch_schema(dir, "demo.thing.happened/examples", "1-valid-x.json", "{");
    cfg_errors_t errs = {0};
    schema_catalog_t *c = schema_catalog_load(dir, 1, &errs);
    char *msg = errs_join(&errs);
    cr_assert_not_null(c, "%s", msg);
    json_t *ok = parse("{\"id\":\"abc\"}"), *bad = parse("{\"id\":\"ab\"}");
    cr_expect_eq(js_validate(schema_catalog_get(c, "demo.thing.happened", 1), ok, NULL, 0), 1);
    cr_expect_eq(js_validate(schema_catalog_get(c, "demo.thing.happened", 1), bad, NULL, 0), 0);
    json_decref(ok);
    json_decref(bad);
    schema_catalog_free(c);
    free(msg);
    free(ex);
    rm_tree(dir);
    free(dir);
}

/* ---- streams --------------------------------------------------------------- */

static const char *stream_input =
    ENV_HEAD T_APPROVED "," V2_DATA "}\n"
    "\n"
    ENV_HEAD T_APPROVED ",\"schemaversion\":2," V1_DATA "}\n"
    "{\"specversion\":\n"
    ENV_HEAD "\"type\":\"approval.item.unheard-of\"}\n";

static FILE *input_file(const char *text)
{
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    fputs(text, f);
    rewind(f);
    return f;
}

Test(stream, text_mode_prints_one_line_per_error_and_a_summary)
{
    schema_catalog_t *c = load_shipped(1);
    FILE *in = input_file(stream_input), *out = tmpfile();
    schema_stream_t st;
    schema_stream_init(&st, c, NULL, 0, out);
    char err[256];
    cr_assert_eq(schema_stream_run(&st, in, "ev.ndjson", err, sizeof err), 0);
    schema_stream_summary(&st);
    cr_expect_eq(st.valid, 1);
    cr_expect_eq(st.invalid, 3);
    char *text = read_all(out);
    cr_expect(strstr(text, "ev.ndjson:1:") == NULL, "valid lines print nothing: %s", text);
    cr_expect(strstr(text, "ev.ndjson:3: /data: ") != NULL, "%s", text);
    cr_expect(strstr(text, "ev.ndjson:4: (root): invalid JSON") != NULL, "%s", text);
    cr_expect(strstr(text, "ev.ndjson:5: /type: no schema for event type") != NULL, "%s", text);
    cr_expect(strstr(text, "\n1 valid, 3 invalid\n") != NULL, "%s", text);
    free(text);
    schema_stream_release(&st);
    fclose(in);
    fclose(out);
    schema_catalog_free(c);
}

Test(stream, json_mode_prints_one_object_per_instance_and_a_summary)
{
    schema_catalog_t *c = load_shipped(1);
    FILE *in = input_file(stream_input), *out = tmpfile();
    schema_stream_t st;
    schema_stream_init(&st, c, NULL, 1, out);
    char err[256];
    cr_assert_eq(schema_stream_run(&st, in, "a \"quoted\" name", err, sizeof err), 0);
    schema_stream_summary(&st);
    char *text = read_all(out);
    char *save = NULL;
    int n = 0;
    const int lines[] = {1, 3, 4, 5};
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save), n++) {
        json_error_t jerr;
        json_t *o = json_loads(l, 0, &jerr);
        cr_assert_not_null(o, "output line is not JSON: %s", l);
        if (n < 4) {
            cr_expect_eq(json_integer_value(json_object_get(o, "line")), lines[n]);
            cr_expect_str_eq(json_string_value(json_object_get(o, "file")), "a \"quoted\" name");
            json_t *errors = json_object_get(o, "errors");
            cr_expect_eq(json_is_true(json_object_get(o, "valid")), n == 0);
            cr_expect_eq(json_array_size(errors) == 0, n == 0, "%s", l);
            size_t i;
            json_t *e;
            json_array_foreach(errors, i, e)
                cr_expect(json_is_string(json_object_get(e, "instancePath")) &&
                          json_is_string(json_object_get(e, "schemaPath")) &&
                          json_is_string(json_object_get(e, "keyword")) &&
                          json_is_string(json_object_get(e, "message")), "%s", l);
        } else {
            json_t *sum = json_object_get(o, "summary");
            cr_expect_eq(json_integer_value(json_object_get(sum, "valid")), 1);
            cr_expect_eq(json_integer_value(json_object_get(sum, "invalid")), 3);
        }
        json_decref(o);
    }
    cr_expect_eq(n, 5);
    free(text);
    schema_stream_release(&st);
    fclose(in);
    fclose(out);
    schema_catalog_free(c);
}

Test(stream, schema_mode_checks_each_line_against_one_file)
{
    char *dir = strdup("/tmp/evbus-schema-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char *path = xasprintf("%s/positive.json", dir);
    write_file(path, "{\"type\": \"integer\", \"minimum\": 1}");
    cfg_errors_t errs = {0};
    const js_schema_t *s = NULL;
    js_registry_t *reg = schema_load_file(path, 1, &s, &errs);
    cr_assert_not_null(reg);
    FILE *in = input_file("1\n0\n\"x\"\n42\n"), *out = tmpfile();
    schema_stream_t st;
    schema_stream_init(&st, NULL, s, 0, out);
    char err[256];
    cr_assert_eq(schema_stream_run(&st, in, "n", err, sizeof err), 0);
    cr_expect_eq(st.valid, 2);
    cr_expect_eq(st.invalid, 2);
    char *text = read_all(out);
    cr_expect(strstr(text, "n:2: (root): ") && strstr(text, "n:3: (root): "), "%s", text);
    free(text);
    schema_stream_release(&st);
    fclose(in);
    fclose(out);
    js_registry_free(reg);

    write_file(path, "{\n\"type\": }");
    cr_expect_null(schema_load_file(path, 1, &s, &errs));
    char *want = xasprintf("%s:2:", path);
    cr_expect(errs.count == 1 && strncmp(errs.msgs[0], want, strlen(want)) == 0);
    errs_free(&errs);
    free(want);
    rm_tree(dir);
    free(path);
    free(dir);
}

/* Counts the lines of `input` that pass s. */
static size_t valid_lines(const js_schema_t *s, const char *input);

/* RFC 8259 allows U+0000 in strings: the JSON Schema Test Suite's const
 * and enum cases with it are readable schemas and instances. */
Test(stream, nul_characters_in_schemas_and_instances_are_json)
{
    char *dir = strdup("/tmp/evbus-schema-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char *path = xasprintf("%s/nul.json", dir);
    write_file(path, "{\"enum\": [\"hello\\u0000there\"]}");
    cfg_errors_t errs = {0};
    const js_schema_t *s = NULL;
    js_registry_t *reg = schema_load_file(path, 1, &s, &errs);
    cr_assert_not_null(reg, "%s", errs.count ? errs.msgs[0] : "");
    cr_expect_eq(valid_lines(s, "\"hello\\u0000there\"\n\"hellothere\"\n\"hello\"\n"), 1);
    js_registry_free(reg);
    rm_tree(dir);
    free(path);
    free(dir);
}

static size_t valid_lines(const js_schema_t *s, const char *input)
{
    FILE *in = input_file(input), *out = tmpfile();
    schema_stream_t st;
    schema_stream_init(&st, NULL, s, 0, out);
    char err[256];
    cr_assert_eq(schema_stream_run(&st, in, "n", err, sizeof err), 0, "%s", err);
    size_t valid = st.valid;
    schema_stream_release(&st);
    fclose(in);
    fclose(out);
    return valid;
}

/* A standalone schema follows its $refs to files: relative ones (no $id:
 * file://) and the catalog's own URIs, looked up in the tree the file sits
 * in, as the daemon would; an unknown document still fails by name. */
Test(stream, schema_mode_follows_refs_to_other_files)
{
    char *dir = strdup("/tmp/evbus-schema-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char *sub_dir = xasprintf("%s/defs", dir);
    cr_assert_eq(mkdir(sub_dir, 0755), 0);
    char *defs = xasprintf("%s/defs/positive.json", dir);
    write_file(defs, "{\"$defs\": {\"pos\": {\"type\": \"integer\", \"minimum\": 1}}}");
    char *rel = xasprintf("%s/rel.json", dir);
    write_file(rel, "{\"type\": \"object\", \"properties\": {\"n\": "
                    "{\"$ref\": \"defs/positive.json#/$defs/pos\"}}}");
    cfg_errors_t errs = {0};
    const js_schema_t *s = NULL;
    js_registry_t *reg = schema_load_file(rel, 1, &s, &errs);
    cr_assert_not_null(reg, "%s", errs.count ? errs.msgs[0] : "");
    cr_expect_eq(valid_lines(s, "{\"n\": 3}\n{\"n\": 0}\n{\"n\": \"x\"}\n"), 1);
    js_registry_free(reg);

    /* <root>/a.type/1.json refers to /b.type/1.json by the catalog's URIs */
    char *a_dir = xasprintf("%s/a.type", dir), *b_dir = xasprintf("%s/b.type", dir);
    cr_assert_eq(mkdir(a_dir, 0755), 0);
    cr_assert_eq(mkdir(b_dir, 0755), 0);
    char *a = xasprintf("%s/1.json", a_dir), *b = xasprintf("%s/1.json", b_dir);
    write_file(b, "{\"$id\": \"" SCHEMA_URI_BASE "/b.type/1.json\", "
                  "\"$defs\": {\"kind\": {\"enum\": [\"user\", \"bot\"]}}}");
    write_file(a, "{\"$id\": \"" SCHEMA_URI_BASE "/a.type/1.json\", \"type\": \"object\", "
                  "\"properties\": {\"k\": {\"$ref\": \"/b.type/1.json#/$defs/kind\"}}}");
    reg = schema_load_file(a, 1, &s, &errs);
    cr_assert_not_null(reg, "%s", errs.count ? errs.msgs[0] : "");
    cr_expect_eq(valid_lines(s, "{\"k\": \"user\"}\n{\"k\": \"cat\"}\n"), 1);
    js_registry_free(reg);

    write_file(a, "{\"$id\": \"" SCHEMA_URI_BASE "/a.type/1.json\", "
                  "\"$ref\": \"/c.type/1.json\"}");
    cr_expect_null(schema_load_file(a, 1, &s, &errs));
    cr_expect(errs.count == 1 && strstr(errs.msgs[0], "c.type/1.json"), "%s",
              errs.count ? errs.msgs[0] : "(no error)");
    errs_free(&errs);
    rm_tree(dir);
    free(a), free(b), free(a_dir), free(b_dir), free(defs), free(rel), free(sub_dir), free(dir);
}

/* ---- the real evbusctl ------------------------------------------------------ */

static char *evbusctl_path(void)
{
    const char *b = getenv("EVBUS_BUILD_ROOT");
    char *p = xasprintf("%s/host/ctl/evbusctl", b ? b : ".");
    if (access(p, X_OK) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

/* Runs `evbusctl validate ARGS` with stdin from in_text; returns the exit
 * status and the stdout text in *out. */
static int run_ctl(const char *args, const char *in_text, char **out)
{
    char *ctl = evbusctl_path();
    if (!ctl)
        cr_skip_test("evbusctl is not built in EVBUS_BUILD_ROOT");
    char *dir = strdup("/tmp/evbus-schema-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char *in = xasprintf("%s/in", dir), *o = xasprintf("%s/out", dir);
    write_file(in, in_text);
    char *cmd = xasprintf("'%s' validate %s <'%s' >'%s' 2>&1", ctl, args, in, o);
    int st = system(cmd);
    FILE *f = fopen(o, "r");
    *out = read_all(f);
    fclose(f);
    rm_tree(dir);
    free(cmd);
    free(o);
    free(in);
    free(dir);
    free(ctl);
    cr_assert(WIFEXITED(st));
    return WEXITSTATUS(st);
}

Test(evbusctl, exits_zero_when_all_events_are_valid)
{
    char *dir = schemas_dir(), *out;
    char *args = xasprintf("--schemas '%s'", dir);
    cr_expect_eq(run_ctl(args, ENV_HEAD T_APPROVED "," V2_DATA "}\n", &out), 0, "%s", out);
    cr_expect_str_eq(out, "1 valid, 0 invalid\n");
    free(out);
    free(args);
    free(dir);
}

Test(evbusctl, exits_one_and_names_file_and_line_when_some_are_invalid)
{
    char *dir = schemas_dir(), *out;
    char *args = xasprintf("--schemas='%s' --json -", dir);
    cr_expect_eq(run_ctl(args, stream_input, &out), 1, "%s", out);
    cr_expect(strstr(out, "{\"line\":3,\"file\":\"<stdin>\",\"valid\":false,") != NULL, "%s", out);
    cr_expect(strstr(out, "{\"summary\":{\"valid\":1,\"invalid\":3}}\n") != NULL, "%s", out);
    free(out);
    free(args);
    free(dir);
}

Test(evbusctl, exits_two_on_usage_and_schema_errors_and_zero_on_help)
{
    char *out;
    cr_expect_eq(run_ctl("--bogus", "", &out), 2);
    free(out);
    cr_expect_eq(run_ctl("--schema", "", &out), 2);
    free(out);
    cr_expect_eq(run_ctl("--schemas /nonexistent/evbus", "", &out), 2);
    cr_expect(strstr(out, "/nonexistent/evbus") != NULL, "%s", out);
    free(out);
    cr_expect_eq(run_ctl("--help", "", &out), 0);
    cr_expect(strstr(out, "usage: evbusctl validate") != NULL, "%s", out);
    free(out);
}
