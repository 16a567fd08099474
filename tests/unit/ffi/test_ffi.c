/*
 * ffi tests — foreign handlers bound to a fixture library and to the
 * notify-example library, configured through hand-built cfg_foreign_t
 * entries (what config_load produces from a manifest).
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffi/ffi_handler.h"
#include "harness.h"

static cfg_errors_t errs;
static char reason[512];

static void setup(void) { memset(&errs, 0, sizeof errs); }
static void teardown(void) { cfg_errors_free(&errs); }

TestSuite(ffi_convert, .init = setup, .fini = teardown);
TestSuite(ffi_result, .init = setup, .fini = teardown);
TestSuite(ffi_open, .init = setup, .fini = teardown);
TestSuite(ffi_notify, .init = setup, .fini = teardown);

#define POS(l, c) {.file = "conf.d/20-foreign.yaml", .line = (l), .col = (c)}

static cfg_foreign_t foreign(const char *symbol, ffi_type_kind_t ret, cfg_ffi_param_t *params,
                             size_t n)
{
    cfg_foreign_t f = {
        .name = "fx", .library = FIXTURE_SO, .symbol = (char *)symbol, .returns = ret,
        .params = params, .n_params = n,
        .on_zero = EVBUS_OK, .on_positive = EVBUS_RETRY, .on_negative = EVBUS_REJECT,
        .pos = POS(3, 5), .library_pos = POS(4, 14), .symbol_pos = POS(5, 13),
    };
    return f;
}

static json_t *envelope(const char *text)
{
    json_error_t jerr;
    json_t *e = json_loads(text, 0, &jerr);
    cr_assert_not_null(e, "%s", jerr.text);
    return e;
}

static const char *fixture_last(void)
{
    void *dl = dlopen(FIXTURE_SO, RTLD_NOW | RTLD_LOCAL); /* same handle as ffih's */
    cr_assert_not_null(dl);
    const char *(*last)(void);
    *(void **)&last = dlsym(dl, "ffi_fixture_last");
    cr_assert_not_null(last);
    const char *r = last();
    dlclose(dl);
    return r;
}

static ffih_t *open_ok(const cfg_foreign_t *f)
{
    ffih_t *h = ffih_open(f, &errs);
    cr_assert_not_null(h, "%s", errs.count ? errs.msgs[0] : "?");
    cr_assert_eq(errs.count, 0);
    return h;
}

/* ---- conversion ---------------------------------------------------------- */

static cfg_ffi_param_t all_params[] = {
    {.type = FFI_T_STRING, .from = "/tenantid"},
    {.type = FFI_T_INT64, .from = "/data/amount"},
    {.type = FFI_T_INT32, .from = "/data/items/1"},
    {.type = FFI_T_DOUBLE, .from = "/data/rate"},
    {.type = FFI_T_BOOL, .from = "/data/urgent"},
    {.type = FFI_T_JSON, .from = "/data/a~1b"},
    {.type = FFI_T_EVENT},
};

Test(ffi_convert, every_type_reaches_the_function_converted)
{
    cfg_foreign_t f = foreign("take_all", FFI_T_INT32, all_params, 7);
    ffih_t *h = open_ok(&f);
    cr_assert_str_eq(ffih_name(h), "fx");
    json_t *e = envelope("{\"tenantid\":\"t1\",\"data\":{\"amount\":9007199254740993,"
                         "\"items\":[5,-7.0],\"rate\":2,\"urgent\":true,"
                         "\"a/b\":{\"k\":[1, \"x\"]}}}");
    const evbus_event_t *ev = (const evbus_event_t *)0x1234;
    cr_assert_eq(ffih_call(h, e, ev, reason, sizeof reason), EVBUS_OK, "%s", reason);
    cr_assert_str_eq(reason, "");
    char want[256];
    snprintf(want, sizeof want,
             "s=t1 a=9007199254740993 b=-7 d=2.000 f=1 json={\"k\":[1,\"x\"]} ev=%p",
             (const void *)ev);
    cr_assert_str_eq(fixture_last(), want);
    json_decref(e);
    ffih_close(h);
}

Test(ffi_convert, constants_are_converted_once_at_open)
{
    cfg_ffi_param_t params[] = {
        {.type = FFI_T_STRING, .value_json = "\"fixed\""},
        {.type = FFI_T_INT64, .value_json = "-42"},
        {.type = FFI_T_INT32, .value_json = "7.0"},
        {.type = FFI_T_DOUBLE, .value_json = "0.5"},
        {.type = FFI_T_BOOL, .value_json = "false"},
        {.type = FFI_T_JSON, .value_json = "[1, {\"a\": null}]"},
        {.type = FFI_T_EVENT},
    };
    cfg_foreign_t f = foreign("take_all", FFI_T_INT32, params, 7);
    ffih_t *h = open_ok(&f);
    json_t *e = envelope("{}");
    cr_assert_eq(ffih_call(h, e, NULL, reason, sizeof reason), EVBUS_OK, "%s", reason);
    cr_assert_str_eq(fixture_last(),
                     "s=fixed a=-42 b=7 d=0.500 f=0 json=[1,{\"a\":null}] ev=(nil)");
    json_decref(e);
    ffih_close(h);
}

static void expect_reject(const char *env_text, const char *want)
{
    cfg_foreign_t f = foreign("take_all", FFI_T_INT32, all_params, 7);
    ffih_t *h = open_ok(&f);
    json_t *e = envelope(env_text);
    cr_assert_eq(ffih_call(h, e, NULL, reason, sizeof reason), EVBUS_REJECT);
    cr_assert_str_eq(reason, want);
    json_decref(e);
    ffih_close(h);
}

#define GOOD_DATA "\"items\":[1,2],\"rate\":1.5,\"urgent\":false,\"a/b\":1"

Test(ffi_convert, a_missing_field_rejects_with_its_pointer)
{
    expect_reject("{\"tenantid\":\"t\",\"data\":{" GOOD_DATA "}}",
                  "param 2 (/data/amount): not found");
    expect_reject("{\"data\":{\"amount\":1," GOOD_DATA "}}", "param 1 (/tenantid): not found");
}

Test(ffi_convert, a_wrong_json_type_rejects_naming_both_types)
{
    expect_reject("{\"tenantid\":\"t\",\"data\":{\"amount\":\"12\"," GOOD_DATA "}}",
                  "param 2 (/data/amount): expected int64, got string");
    expect_reject("{\"tenantid\":5,\"data\":{\"amount\":1," GOOD_DATA "}}",
                  "param 1 (/tenantid): expected string, got integer");
    expect_reject("{\"tenantid\":\"t\",\"data\":{\"amount\":1.5," GOOD_DATA "}}",
                  "param 2 (/data/amount): expected int64, got real 1.5");
    expect_reject("{\"tenantid\":\"t\",\"data\":{\"amount\":1,\"items\":[1,2],\"rate\":\"x\","
                  "\"urgent\":false,\"a/b\":1}}",
                  "param 4 (/data/rate): expected double, got string");
    expect_reject("{\"tenantid\":\"t\",\"data\":{\"amount\":1,\"items\":[1,2],\"rate\":1,"
                  "\"urgent\":1,\"a/b\":1}}",
                  "param 5 (/data/urgent): expected bool, got integer");
}

Test(ffi_convert, int32_out_of_range_rejects)
{
    expect_reject("{\"tenantid\":\"t\",\"data\":{\"amount\":1,\"items\":[1,3000000000],"
                  "\"rate\":1,\"urgent\":true,\"a/b\":1}}",
                  "param 3 (/data/items/1): 3000000000 is out of range for int32");
}

Test(ffi_convert, array_indexes_follow_rfc6901)
{
    /* "01" is not an index and "-" points past the end: both not found. */
    cfg_ffi_param_t p[] = {{.type = FFI_T_INT64, .from = "/a/01"}};
    cfg_foreign_t f = foreign("ret64", FFI_T_INT64, p, 1);
    ffih_t *h = open_ok(&f);
    json_t *e = envelope("{\"a\":[0,1]}");
    cr_assert_eq(ffih_call(h, e, NULL, reason, sizeof reason), EVBUS_REJECT);
    cr_assert_str_eq(reason, "param 1 (/a/01): not found");
    json_decref(e);
    ffih_close(h);
}

/* ---- result mapping ------------------------------------------------------ */

static evbus_result_t call_with(cfg_foreign_t *f, const char *env_text)
{
    ffih_t *h = open_ok(f);
    json_t *e = envelope(env_text);
    evbus_result_t r = ffih_call(h, e, NULL, reason, sizeof reason);
    json_decref(e);
    ffih_close(h);
    return r;
}

Test(ffi_result, default_mapping_by_sign)
{
    cfg_ffi_param_t p[] = {{.type = FFI_T_INT64, .from = "/v"}};
    cfg_foreign_t f = foreign("ret64", FFI_T_INT64, p, 1);
    cr_assert_eq(call_with(&f, "{\"v\":0}"), EVBUS_OK);
    cr_assert_eq(call_with(&f, "{\"v\":5000000000}"), EVBUS_RETRY);
    cr_assert_eq(call_with(&f, "{\"v\":-5000000000}"), EVBUS_REJECT);
    cfg_ffi_param_t p32[] = {{.type = FFI_T_INT32, .from = "/v"}};
    cfg_foreign_t f32 = foreign("ret32", FFI_T_INT32, p32, 1);
    cr_assert_eq(call_with(&f32, "{\"v\":0}"), EVBUS_OK);
    cr_assert_eq(call_with(&f32, "{\"v\":3}"), EVBUS_RETRY);
    cr_assert_eq(call_with(&f32, "{\"v\":-1}"), EVBUS_REJECT);
}

Test(ffi_result, configured_mapping_replaces_the_default)
{
    cfg_ffi_param_t p[] = {{.type = FFI_T_INT32, .from = "/v"}};
    cfg_foreign_t f = foreign("ret32", FFI_T_INT32, p, 1);
    f.on_zero = EVBUS_REJECT;
    f.on_positive = EVBUS_OK;
    f.on_negative = EVBUS_RETRY;
    cr_assert_eq(call_with(&f, "{\"v\":0}"), EVBUS_REJECT);
    cr_assert_eq(call_with(&f, "{\"v\":1}"), EVBUS_OK);
    cr_assert_eq(call_with(&f, "{\"v\":-1}"), EVBUS_RETRY);
}

Test(ffi_result, bool_and_void_returns)
{
    cfg_ffi_param_t pb[] = {{.type = FFI_T_BOOL, .from = "/v"}};
    cfg_foreign_t fb = foreign("retbool", FFI_T_BOOL, pb, 1);
    fb.on_zero = EVBUS_RETRY; /* config_load's bool defaults */
    fb.on_positive = EVBUS_OK;
    cr_assert_eq(call_with(&fb, "{\"v\":true}"), EVBUS_OK);
    cr_assert_eq(call_with(&fb, "{\"v\":false}"), EVBUS_RETRY);
    fb.on_zero = EVBUS_REJECT; /* result: {zero: reject} */
    cr_assert_eq(call_with(&fb, "{\"v\":false}"), EVBUS_REJECT);
    cfg_ffi_param_t pv[] = {{.type = FFI_T_STRING, .from = "/s"}};
    cfg_foreign_t fv = foreign("retvoid", FFI_T_VOID, pv, 1);
    ffih_t *h = open_ok(&fv); /* kept open: the fixture's record lives in the library */
    json_t *e = envelope("{\"s\":\"hi\"}");
    cr_assert_eq(ffih_call(h, e, NULL, reason, sizeof reason), EVBUS_OK);
    cr_assert_str_eq(fixture_last(), "void hi");
    json_decref(e);
    ffih_close(h);
}

/* ---- load-time errors ---------------------------------------------------- */

Test(ffi_open, missing_symbol_is_reported_at_the_symbol)
{
    cfg_foreign_t f = foreign("no_such_function", FFI_T_INT32, NULL, 0);
    cr_assert_null(ffih_open(&f, &errs));
    cr_assert_eq(errs.count, 1);
    const char *want = "conf.d/20-foreign.yaml:5:13: foreign 'fx': missing symbol "
                       "no_such_function in " FIXTURE_SO ": ";
    cr_assert_eq(strncmp(errs.msgs[0], want, strlen(want)), 0, "got: %s", errs.msgs[0]);
}

Test(ffi_open, missing_library_is_reported_at_the_library)
{
    cfg_foreign_t f = foreign("notify", FFI_T_INT32, NULL, 0);
    f.library = "/nonexistent/libnope.so";
    cr_assert_null(ffih_open(&f, &errs));
    cr_assert_eq(errs.count, 1);
    const char *want = "conf.d/20-foreign.yaml:4:14: foreign 'fx': cannot load library "
                       "/nonexistent/libnope.so: ";
    cr_assert_eq(strncmp(errs.msgs[0], want, strlen(want)), 0, "got: %s", errs.msgs[0]);
}

Test(ffi_open, every_bad_param_is_reported_at_its_position)
{
    cfg_ffi_param_t p[] = {
        {.type = FFI_T_STRING, .from = "data/x", .pos = POS(7, 9)},
        {.type = FFI_T_STRING, .from = "/data/a~2b", .pos = POS(8, 9)},
        {.type = (ffi_type_kind_t)42, .from = "/x", .pos = POS(9, 9)},
        {.type = FFI_T_VOID, .from = "/x", .pos = POS(10, 9)},
        {.type = FFI_T_INT32, .value_json = "\"seven\"", .pos = POS(11, 9)},
        {.type = FFI_T_INT32, .value_json = "4294967296", .pos = POS(12, 9)},
        {.type = FFI_T_DOUBLE, .pos = POS(13, 9)},
        {.type = FFI_T_STRING, .from = "", .pos = POS(14, 9)},
        {.type = FFI_T_STRING, .from = "/ok~0~1", .pos = POS(15, 9)},
    };
    cfg_foreign_t f = foreign("take_all", FFI_T_INT32, p, 9);
    cr_assert_null(ffih_open(&f, &errs));
    cr_assert_eq(errs.count, 7, "got %zu errors", errs.count);
    cr_assert_str_eq(errs.msgs[0], "conf.d/20-foreign.yaml:7:9: foreign 'fx': param 1: from "
                                   "'data/x' is not a valid JSON Pointer: must be empty or "
                                   "start with '/'");
    cr_assert_str_eq(errs.msgs[1], "conf.d/20-foreign.yaml:8:9: foreign 'fx': param 2: from "
                                   "'/data/a~2b' is not a valid JSON Pointer: '~' at offset 7 "
                                   "must be followed by 0 or 1");
    cr_assert_str_eq(errs.msgs[2], "conf.d/20-foreign.yaml:9:9: foreign 'fx': param 3: "
                                   "unknown type 42");
    cr_assert_str_eq(errs.msgs[3], "conf.d/20-foreign.yaml:10:9: foreign 'fx': param 4: "
                                   "void is only a return type");
    cr_assert_str_eq(errs.msgs[4], "conf.d/20-foreign.yaml:11:9: foreign 'fx': param 5: value "
                                   "\"seven\": expected int32, got string");
    cr_assert_str_eq(errs.msgs[5], "conf.d/20-foreign.yaml:12:9: foreign 'fx': param 6: value "
                                   "4294967296: 4294967296 is out of range for int32");
    cr_assert_str_eq(errs.msgs[6], "conf.d/20-foreign.yaml:13:9: foreign 'fx': param 7 "
                                   "(double): needs from or value");
}

Test(ffi_open, unsupported_return_type_and_bad_mapping)
{
    cfg_foreign_t f = foreign("ret32", FFI_T_STRING, NULL, 0);
    f.on_negative = 9;
    cr_assert_null(ffih_open(&f, &errs));
    cr_assert_eq(errs.count, 2);
    cr_assert_str_eq(errs.msgs[0], "conf.d/20-foreign.yaml:3:5: foreign 'fx': return type "
                                   "string is not supported (int32, int64, bool or void)");
    cr_assert_str_eq(errs.msgs[1], "conf.d/20-foreign.yaml:3:5: foreign 'fx': result mapping "
                                   "must use ok, retry or reject");
}

/* ---- notify-example, end to end ------------------------------------------ */

Test(ffi_notify, notify_example_writes_its_line_and_maps_negative_to_reject)
{
    char *dir = harness_tmpdir("ffi");
    char out[600];
    snprintf(out, sizeof out, "%s/notify.out", dir);
    cr_assert_eq(setenv("NOTIFY_EXAMPLE_OUT", out, 1), 0);
    cfg_ffi_param_t p[] = {
        {.type = FFI_T_STRING, .from = "/tenantid"},
        {.type = FFI_T_STRING, .from = "/data/approvalId"},
        {.type = FFI_T_INT64, .from = "/data/amount"},
    };
    cfg_foreign_t f = foreign("notify", FFI_T_INT32, p, 3);
    f.name = "notify-approved";
    f.library = NOTIFY_EXAMPLE_SO;
    ffih_t *h = open_ok(&f);
    json_t *e = envelope("{\"type\":\"approval.item.approved\",\"tenantid\":\"acme\","
                         "\"data\":{\"approvalId\":\"ap-1\",\"amount\":1250}}");
    cr_assert_eq(ffih_call(h, e, NULL, reason, sizeof reason), EVBUS_OK, "%s", reason);
    json_decref(e);
    e = envelope("{\"tenantid\":\"acme\",\"data\":{\"approvalId\":\"ap-2\",\"amount\":-5}}");
    cr_assert_eq(ffih_call(h, e, NULL, reason, sizeof reason), EVBUS_REJECT);
    json_decref(e);
    char *text = harness_read_file(out);
    cr_assert_str_eq(text, "acme ap-1 1250\n");
    free(text);
    ffih_close(h);
    harness_rmrf(dir);
    free(dir);
}
