/* test_jsonschema.c - the jsonschema API contract: error locations, first
 * versus all errors, number equality, big numbers, compile errors, format
 * switch, hostname A-labels, the built-in 2020-12 metaschema, cross-document
 * references and concurrent validation. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jsonschema/jsonschema.h"

static js_registry_t *reg_with(const char *uri, const char *schema, const js_options_t *opts)
{
    js_registry_t *reg = js_registry_new(opts);
    cr_assert_not_null(reg);
    json_error_t je;
    json_t *doc = json_loads(schema, JSON_DECODE_ANY, &je);
    cr_assert_not_null(doc, "schema text: %s", je.text);
    char err[256];
    cr_assert_eq(js_registry_add(reg, uri, doc, err, sizeof err), 0, "%s", err);
    json_decref(doc);
    return reg;
}

static const js_schema_t *compile_ok(js_registry_t *reg, const char *uri)
{
    char err[256] = "";
    const js_schema_t *s = js_compile(reg, uri, err, sizeof err);
    cr_assert_not_null(s, "compile: %s", err);
    return s;
}

static int check(const js_schema_t *s, const char *text, js_errors_t *errs, int all)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &je);
    cr_assert_not_null(v, "instance text: %s", je.text);
    int rc = js_validate(s, v, errs, all);
    json_decref(v);
    return rc;
}

static const char *nested_schema =
    "{\"type\":\"object\",\"properties\":{\"a\":{\"properties\":{\"b\":{\"items\":"
    "{\"type\":\"integer\"}}}},\"x/y\":{\"minLength\":3}},\"required\":[\"a\"]}";

Test(errors, carry_instance_pointer_schema_location_and_keyword)
{
    js_registry_t *reg = reg_with("urn:t:nested", nested_schema, NULL);
    const js_schema_t *s = compile_ok(reg, "urn:t:nested");
    js_errors_t errs = {0};
    cr_assert_eq(check(s, "{\"a\":{\"b\":[1,\"two\",3]}}", &errs, 0), 0);
    cr_assert_eq(errs.count, 1);
    cr_expect_str_eq(errs.items[0].instance_path, "/a/b/1");
    cr_expect_str_eq(errs.items[0].schema_path, "#/properties/a/properties/b/items/type");
    cr_expect_str_eq(errs.items[0].keyword, "type");
    cr_expect(strstr(errs.items[0].message, "integer") != NULL, "%s", errs.items[0].message);
    js_errors_clear(&errs);
    cr_expect_eq(errs.count, 0);
    cr_expect_null(errs.items);
    js_registry_free(reg);
}

Test(errors, escape_keys_in_instance_pointer)
{
    js_registry_t *reg = reg_with("urn:t:nested", nested_schema, NULL);
    const js_schema_t *s = compile_ok(reg, "urn:t:nested");
    js_errors_t errs = {0};
    cr_assert_eq(check(s, "{\"a\":{},\"x/y\":\"ab\"}", &errs, 1), 0);
    cr_assert_eq(errs.count, 1);
    cr_expect_str_eq(errs.items[0].instance_path, "/x~1y");
    cr_expect_str_eq(errs.items[0].schema_path, "#/properties/x~1y/minLength");
    js_errors_clear(&errs);
    js_registry_free(reg);
}

Test(errors, first_error_stops_all_errors_collects_every_failure)
{
    js_registry_t *reg = reg_with("urn:t:nested", nested_schema, NULL);
    const js_schema_t *s = compile_ok(reg, "urn:t:nested");
    const char *bad = "{\"x/y\":\"\",\"z\":1,\"q\":{}}"; /* minLength + required a */
    const char *worse = "{\"a\":{\"b\":[\"1\",\"2\"]},\"x/y\":\"\"}";
    js_errors_t errs = {0};
    cr_assert_eq(check(s, bad, &errs, 0), 0);
    cr_expect_eq(errs.count, 1);
    js_errors_clear(&errs);
    cr_assert_eq(check(s, bad, &errs, 1), 0);
    cr_expect_eq(errs.count, 2);
    js_errors_clear(&errs);
    cr_assert_eq(check(s, worse, &errs, 1), 0);
    cr_expect_eq(errs.count, 3);
    cr_expect_str_eq(errs.items[0].instance_path, "/a/b/0");
    cr_expect_str_eq(errs.items[1].instance_path, "/a/b/1");
    cr_expect_str_eq(errs.items[2].keyword, "minLength");
    js_errors_clear(&errs);
    cr_expect_eq(check(s, worse, NULL, 0), 0);
    cr_expect_eq(check(s, "{\"a\":{\"b\":[1]}}", NULL, 0), 1);
    js_registry_free(reg);
}

Test(errors, additional_property_is_named_by_its_keyword)
{
    js_registry_t *reg = reg_with(
        "urn:t:ap", "{\"properties\":{\"a\":true},\"additionalProperties\":false}", NULL);
    const js_schema_t *s = compile_ok(reg, "urn:t:ap");
    js_errors_t errs = {0};
    cr_assert_eq(check(s, "{\"a\":1,\"bogus\":2}", &errs, 1), 0);
    cr_assert_eq(errs.count, 1);
    cr_expect_str_eq(errs.items[0].keyword, "additionalProperties");
    cr_expect_str_eq(errs.items[0].instance_path, "/bogus");
    cr_expect_str_eq(errs.items[0].schema_path, "#/additionalProperties");
    cr_expect(strstr(errs.items[0].message, "bogus") != NULL);
    js_errors_clear(&errs);
    js_registry_free(reg);
}

Test(numbers, integer_and_real_are_equal)
{
    js_registry_t *reg = reg_with("urn:t:n",
                                  "{\"$defs\":{\"e\":{\"enum\":[1,\"x\"]},\"c\":{\"const\":{\"k\":[2.0]}},"
                                  "\"u\":{\"uniqueItems\":true},\"i\":{\"type\":\"integer\"}}}",
                                  NULL);
    const js_schema_t *e = compile_ok(reg, "urn:t:n#/$defs/e");
    const js_schema_t *c = compile_ok(reg, "urn:t:n#/$defs/c");
    const js_schema_t *u = compile_ok(reg, "urn:t:n#/$defs/u");
    const js_schema_t *i = compile_ok(reg, "urn:t:n#/$defs/i");
    json_t *one = json_integer(1), *one_r = json_real(1.0), *half = json_real(1.5);
    cr_expect_eq(js_validate(e, one_r, NULL, 0), 1);
    cr_expect_eq(js_validate(e, half, NULL, 0), 0);
    cr_expect_eq(js_json_equal(one, one_r), 1);
    cr_expect_eq(json_equal(one, one_r), 0, "jansson's own equality differs, hence ours");
    json_t *obj = json_pack("{s:[i]}", "k", 2);
    cr_expect_eq(js_validate(c, obj, NULL, 0), 1);
    json_t *arr = json_pack("[o,o]", json_incref(one), json_incref(one_r));
    cr_expect_eq(js_validate(u, arr, NULL, 0), 0);
    cr_expect_eq(js_validate(i, one_r, NULL, 0), 1);
    cr_expect_eq(js_validate(i, half, NULL, 0), 0);
    json_decref(one);
    json_decref(one_r);
    json_decref(half);
    json_decref(obj);
    json_decref(arr);
    js_registry_free(reg);
}

Test(numbers, big_numbers_do_not_overflow)
{
    js_registry_t *reg = reg_with(
        "urn:t:big",
        "{\"$defs\":{\"half\":{\"type\":\"integer\",\"multipleOf\":0.5},"
        "\"odd\":{\"multipleOf\":0.123456789},\"max\":{\"maximum\":9223372036854775807},"
        "\"hugem\":{\"multipleOf\":1e300}}}",
        NULL);
    const js_schema_t *half = compile_ok(reg, "urn:t:big#/$defs/half");
    const js_schema_t *odd = compile_ok(reg, "urn:t:big#/$defs/odd");
    const js_schema_t *max = compile_ok(reg, "urn:t:big#/$defs/max");
    const js_schema_t *hugem = compile_ok(reg, "urn:t:big#/$defs/hugem");
    cr_expect_eq(check(half, "1e308", NULL, 0), 1);
    cr_expect_eq(check(half, "123456789012345678901234567890", NULL, 0), 1);
    cr_expect_eq(check(odd, "1e308", NULL, 0), 0);
    cr_expect_eq(check(max, "9000000000000000000", NULL, 0), 1);
    cr_expect_eq(check(max, "1e19", NULL, 0), 0);
    cr_expect_eq(check(hugem, "3e300", NULL, 0), 1);
    cr_expect_eq(check(hugem, "7", NULL, 0), 0);
    json_t *big = json_integer(9223372036854775807LL);
    cr_expect_eq(js_validate(half, big, NULL, 0), 1);
    json_decref(big);
    js_registry_free(reg);
}

Test(compile, reports_bad_regex_and_unresolvable_ref)
{
    char err[256];
    js_registry_t *reg = reg_with("urn:t:bad",
                                  "{\"$defs\":{\"re\":{\"pattern\":\"^(abc\"},"
                                  "\"ref\":{\"$ref\":\"urn:t:missing#/x\"},\"ok\":{\"type\":\"string\"}}}",
                                  NULL);
    cr_expect_null(js_compile(reg, "urn:t:bad#/$defs/re", err, sizeof err));
    cr_expect(strstr(err, "pattern") && strstr(err, "/$defs/re"), "%s", err);
    cr_expect_null(js_compile(reg, "urn:t:bad#/$defs/ref", err, sizeof err));
    cr_expect(strstr(err, "urn:t:missing") != NULL, "%s", err);
    cr_expect_null(js_compile(reg, "urn:t:nothere", err, sizeof err));
    /* a failed compile leaves the registry usable */
    const js_schema_t *ok = compile_ok(reg, "urn:t:bad#/$defs/ok");
    cr_expect_eq(ok, compile_ok(reg, "urn:t:bad#/$defs/ok"), "compiled once, then cached");
    js_registry_free(reg);
}

Test(registry, needs_a_uri_or_an_absolute_id)
{
    char err[256];
    js_registry_t *reg = js_registry_new(NULL);
    json_t *anon = json_pack("{s:s}", "type", "string");
    cr_expect_eq(js_registry_add(reg, NULL, anon, err, sizeof err), -1);
    json_t *named = json_pack("{s:s,s:s}", "$id", "https://evbus.example/s.json", "type", "string");
    cr_expect_eq(js_registry_add(reg, NULL, named, err, sizeof err), 0, "%s", err);
    cr_expect_eq(js_registry_add(reg, NULL, named, err, sizeof err), -1, "added twice");
    cr_expect_not_null(js_compile(reg, "https://evbus.example/s.json", err, sizeof err));
    json_decref(anon);
    json_decref(named);
    js_registry_free(reg);
}

Test(registry, file_syntax_errors_carry_line_and_column)
{
    char path[] = "/tmp/evbus-js-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    const char *text = "{\n  \"type\": \"string\",\n  oops\n}\n";
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char err[256], want[300];
    js_registry_t *reg = js_registry_new(NULL);
    cr_expect_eq(js_registry_add_file(reg, path, NULL, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:3:", path);
    cr_expect(strncmp(err, want, strlen(want)) == 0, "%s", err);
    unlink(path);
    js_registry_free(reg);
}

Test(refs, resolve_across_documents_by_id_and_anchor)
{
    js_registry_t *reg = reg_with("https://evbus.example/common.json",
                                  "{\"$defs\":{\"id\":{\"$anchor\":\"ident\",\"type\":\"string\","
                                  "\"pattern\":\"^[a-z]+$\"}}}",
                                  NULL);
    char err[256];
    json_t *doc = json_loads("{\"$id\":\"https://evbus.example/ev.json\",\"properties\":{"
                             "\"a\":{\"$ref\":\"common.json#ident\"},"
                             "\"b\":{\"$ref\":\"common.json#/$defs/id\"}}}",
                             0, NULL);
    cr_assert_eq(js_registry_add(reg, NULL, doc, err, sizeof err), 0, "%s", err);
    json_decref(doc);
    const js_schema_t *s = compile_ok(reg, "https://evbus.example/ev.json");
    cr_expect_eq(check(s, "{\"a\":\"abc\",\"b\":\"def\"}", NULL, 0), 1);
    js_errors_t errs = {0};
    cr_expect_eq(check(s, "{\"a\":\"ABC\"}", &errs, 0), 0);
    cr_assert_eq(errs.count, 1);
    cr_expect_str_eq(errs.items[0].schema_path,
                     "https://evbus.example/common.json#/$defs/id/pattern");
    js_errors_clear(&errs);
    js_registry_free(reg);
}

Test(formats, assert_only_when_configured)
{
    const char *schema = "{\"format\":\"date-time\"}";
    js_registry_t *annot = reg_with("urn:t:f", schema, NULL);
    js_options_t opts = {1, NULL, NULL};
    js_registry_t *assert_ = reg_with("urn:t:f", schema, &opts);
    const js_schema_t *a = compile_ok(annot, "urn:t:f");
    const js_schema_t *b = compile_ok(assert_, "urn:t:f");
    cr_expect_eq(check(a, "\"yesterday\"", NULL, 0), 1);
    cr_expect_eq(check(b, "\"yesterday\"", NULL, 0), 0);
    cr_expect_eq(check(b, "\"2026-11-26T10:00:00Z\"", NULL, 0), 1);
    js_registry_free(annot);
    js_registry_free(assert_);
}

static int hostname_ok(const js_schema_t *s, const char *host)
{
    json_t *v = json_string(host);
    int rc = js_validate(s, v, NULL, 0);
    json_decref(v);
    return rc;
}

Test(formats, hostname_a_labels_decode_to_valid_u_labels)
{
    js_options_t opts = {1, NULL, NULL};
    js_registry_t *reg = reg_with("urn:t:h", "{\"format\":\"hostname\"}", &opts);
    const js_schema_t *s = compile_ok(reg, "urn:t:h");
    cr_expect_eq(hostname_ok(s, "xn--mnchen-3ya.example"), 1, "münchen");
    cr_expect_eq(hostname_ok(s, "XN--MNCHEN-3YA.example"), 1, "A-labels compare without case");
    cr_expect_eq(hostname_ok(s, "xn--mnchen-psa.example"), 0, "decodes to upper-case U+00DC");
    cr_expect_eq(hostname_ok(s, "xn--zzzzzzzzzzzzzzzzzzzzzzzzzzzz"), 0, "punycode overflow");
    cr_expect_eq(hostname_ok(s, "xn--abc"), 0, "truncated delta");
    cr_expect_eq(hostname_ok(s, "xn---abc"), 0, "delimiter with no basic code points");
    cr_expect_eq(hostname_ok(s, "xn--ab-4tb"), 0, "U-label starts with U+0300");
    cr_expect_eq(hostname_ok(s, "xn--ll-0ea"), 1, "l·l");
    cr_expect_eq(hostname_ok(s, "xn--abcd-176a"), 0, "ZWNJ between Latin letters");
    cr_expect_eq(hostname_ok(s, "xn--mgbb899q"), 1, "ZWNJ after dual-joining BEH, before ALEF");
    cr_expect_eq(hostname_ok(s, "xn--mgbc799q"), 0, "ZWNJ after right-joining ALEF");
    cr_expect_eq(hostname_ok(s, "ab--cd.example"), 0, "'--' at 3-4 only in A-labels");
    js_registry_free(reg);
}

Test(formats, idn_hostname_accepts_u_labels_within_a_label_limits)
{
    js_options_t opts = {1, NULL, NULL};
    js_registry_t *reg = reg_with("urn:t:i", "{\"format\":\"idn-hostname\"}", &opts);
    const js_schema_t *s = compile_ok(reg, "urn:t:i");
    char label[80];
    /* 55 'a' + U+00FC encodes to 63 octets ("xn--" + 55 + "-8yf"), 56 'a' to 64 */
    memset(label, 'a', 55);
    strcpy(label + 55, "\xc3\xbc");
    cr_expect_eq(hostname_ok(s, label), 1, "A-label form of 63 octets");
    memset(label, 'a', 56);
    strcpy(label + 56, "\xc3\xbc");
    cr_expect_eq(hostname_ok(s, label), 0, "A-label form of 64 octets");
    cr_expect_eq(hostname_ok(s, "m\xc3\xbcnchen\xe3\x80\x82" "example"), 1, "U+3002 separator");
    cr_expect_eq(hostname_ok(s, "M\xc3\x9cnchen.example"), 0, "upper-case U+00DC");
    cr_expect_eq(hostname_ok(s, "a b.example"), 0, "space in a label");
    cr_expect_eq(hostname_ok(s, "\xd7\x90\xd7\x91.example"), 1, "Hebrew label, Latin label");
    cr_expect_eq(hostname_ok(s, "\xd7\x90\xd7\x91.1example"), 0, "Bidi: label starts with a digit");
    cr_expect_eq(hostname_ok(s, "xn--0ca24w"), 0, "Bidi: U+00E0 U+05D0 in one label");
    js_registry_free(reg);
}

#define META_2020 "https://json-schema.org/draft/2020-12/schema"

Test(metaschema, built_in_equivalent_checks_keyword_values)
{
    js_registry_t *reg = reg_with("urn:t:m", "{\"$ref\":\"" META_2020 "\"}", NULL);
    const js_schema_t *s = compile_ok(reg, "urn:t:m");
    cr_expect_eq(check(s, "{\"type\":[\"string\",\"null\"],\"properties\":{\"a\":"
                          "{\"minLength\":1,\"items\":false}},\"$defs\":{\"b\":true}}",
                       NULL, 0),
                 1);
    cr_expect_eq(check(s, "true", NULL, 0), 1);
    cr_expect_eq(check(s, "3", NULL, 0), 0);
    cr_expect_eq(check(s, "{\"type\":[\"string\",\"string\"]}", NULL, 0), 0);
    cr_expect_eq(check(s, "{\"multipleOf\":0}", NULL, 0), 0);
    cr_expect_eq(check(s, "{\"required\":[1]}", NULL, 0), 0);
    cr_expect_eq(check(s, "{\"anyOf\":[]}", NULL, 0), 0);
    cr_expect_eq(check(s, "{\"$anchor\":\"1x\"}", NULL, 0), 0);
    cr_expect_eq(check(s, "{\"$id\":\"urn:a#frag\"}", NULL, 0), 0);
    js_errors_t errs = {0};
    cr_expect_eq(check(s, "{\"properties\":{\"a\":{\"maxItems\":-1}}}", &errs, 0), 0);
    cr_assert_eq(errs.count, 1);
    cr_expect_str_eq(errs.items[0].instance_path, "/properties/a/maxItems");
    js_errors_clear(&errs);
    js_registry_free(reg);
}

Test(metaschema, extension_by_dynamic_anchor_reaches_subschemas)
{
    js_registry_t *reg = reg_with("urn:t:ext",
                                  "{\"$dynamicAnchor\":\"meta\",\"$ref\":\"" META_2020 "\","
                                  "\"properties\":{\"x-team\":{\"type\":\"string\"}}}",
                                  NULL);
    const js_schema_t *s = compile_ok(reg, "urn:t:ext");
    cr_expect_eq(check(s, "{\"items\":{\"x-team\":\"ops\"}}", NULL, 0), 1);
    cr_expect_eq(check(s, "{\"items\":{\"x-team\":1}}", NULL, 0), 0);
    js_registry_free(reg);
}

Test(metaschema, added_document_takes_precedence)
{
    js_registry_t *reg = reg_with(META_2020, "{\"type\":\"string\"}", NULL);
    json_t *doc = json_loads("{\"$ref\":\"" META_2020 "\"}", 0, NULL);
    char err[256];
    cr_assert_eq(js_registry_add(reg, "urn:t:m", doc, err, sizeof err), 0, "%s", err);
    json_decref(doc);
    const js_schema_t *s = compile_ok(reg, "urn:t:m");
    cr_expect_eq(check(s, "\"not a schema\"", NULL, 0), 1);
    cr_expect_eq(check(s, "{}", NULL, 0), 0);
    js_registry_free(reg);
}

typedef struct worker {
    const js_schema_t *s;
    json_t *good, *bad;
    int mismatches;
} worker_t;

static void *worker_run(void *p)
{
    worker_t *w = p;
    for (int i = 0; i < 20000; i++) {
        js_errors_t errs = {0};
        if (js_validate(w->s, w->good, NULL, 0) != 1)
            w->mismatches++;
        if (js_validate(w->s, w->bad, &errs, 1) != 0 || errs.count != 2 ||
            strcmp(errs.items[0].instance_path, "/id") != 0)
            w->mismatches++;
        js_errors_clear(&errs);
    }
    return NULL;
}

Test(threads, two_threads_share_one_compiled_schema)
{
    js_registry_t *reg = reg_with("urn:t:th",
                                  "{\"type\":\"object\",\"required\":[\"id\",\"n\"],\"properties\":{"
                                  "\"id\":{\"type\":\"string\",\"pattern\":\"^[0-9a-f]{8}$\"},"
                                  "\"n\":{\"type\":\"integer\",\"minimum\":0}},"
                                  "\"unevaluatedProperties\":false}",
                                  NULL);
    const js_schema_t *s = compile_ok(reg, "urn:t:th");
    json_t *good = json_loads("{\"id\":\"deadbeef\",\"n\":3}", 0, NULL);
    json_t *bad = json_loads("{\"id\":\"nothex!!\",\"n\":-1}", 0, NULL);
    worker_t w[2] = {{s, good, bad, 0}, {s, good, bad, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    cr_expect_eq(w[0].mismatches, 0);
    cr_expect_eq(w[1].mismatches, 0);
    json_decref(good);
    json_decref(bad);
    js_registry_free(reg);
}

Test(refs, endless_self_reference_fails_instead_of_overflowing)
{
    js_registry_t *reg = reg_with("urn:t:loop", "{\"$ref\":\"#\"}", NULL);
    const js_schema_t *s = compile_ok(reg, "urn:t:loop");
    js_errors_t errs = {0};
    cr_expect_eq(check(s, "1", &errs, 0), 0);
    cr_assert_eq(errs.count, 1);
    cr_expect(strstr(errs.items[0].message, "deeper") != NULL, "%s", errs.items[0].message);
    js_errors_clear(&errs);
    js_registry_free(reg);
}
