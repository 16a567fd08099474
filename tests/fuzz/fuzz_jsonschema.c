/*
 * fuzz_jsonschema — the schema compiler: any JSON document added to a
 * registry and compiled (every $ref resolved, every regex compiled, every
 * keyword checked) must either compile or fail with a message, never
 * crash, leak or hang.  A compiled schema is then run against a few fixed
 * instances so the compiled form is exercised too.  The first byte picks
 * format assertion on or off and whether to compile a fragment.
 */
#include <jansson.h>

#include "fuzz_util.h"
#include "jsonschema/jsonschema.h"

#define URI "https://fuzz.evbus.invalid/schema.json"

static const char *const instances[] = {
    "null", "true", "0", "1.5", "-7", "\"\"", "\"2026-12-01T10:00:00Z\"", "\"a@b.example\"",
    "[]", "[1,\"a\",null]", "{}", "{\"a\":1,\"b\":[true],\"c\":{\"d\":\"x\"}}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    json_error_t je;
    /* the flags js_registry_add_file reads schema files with */
    size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_t *doc = json_loadb((const char *)data + 1, size - 1, flags, &je);
    /* as js_registry_add_file: huge integers are read as reals */
    if (!doc)
        doc = json_loadb((const char *)data + 1, size - 1, flags | JSON_DECODE_INT_AS_REAL, &je);
    if (!doc)
        return 0;
    js_options_t opts = {.format_assert = (int)(mode & 1)};
    js_registry_t *reg = js_registry_new(&opts);
    if (!reg)
        abort();
    char err[512];
    if (js_registry_add(reg, URI, doc, err, sizeof err) == 0) {
        /* a fragment compiles a subschema on its own: "#/$defs/a" */
        const char *target = (mode & 2) ? URI "#/$defs/a" : URI;
        const js_schema_t *s = js_compile(reg, target, err, sizeof err);
        if (!s && !err[0])
            fuzz_fail("js_compile failed without a message");
        for (size_t i = 0; s && i < sizeof instances / sizeof instances[0]; i++) {
            json_t *inst = json_loads(instances[i], JSON_DECODE_ANY, NULL);
            js_errors_t errs = {0};
            int v = js_validate(s, inst, &errs, 1);
            if (v < 0 || (v == 1) != (errs.count == 0))
                fuzz_fail("js_validate = %d with %zu errors on %s", v, errs.count, instances[i]);
            js_errors_clear(&errs);
            json_decref(inst);
        }
    } else if (!err[0]) {
        fuzz_fail("js_registry_add failed without a message");
    }
    js_registry_free(reg);
    json_decref(doc);
    return 0;
}
