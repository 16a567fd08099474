/*
 * fuzz_validate — the validator, schema × instance.  Input: a schema, then
 * FUZZ_SEP, then an instance (both JSON).  js_validate's three modes must
 * agree: the boolean fast path, the first error, and all errors (valid
 * exactly when no error is reported, and an invalid instance always gets
 * at least one error with a keyword and a message).
 */
#include <jansson.h>

#include "fuzz_util.h"
#include "jsonschema/jsonschema.h"

#define URI "https://fuzz.evbus.invalid/schema.json"
#define FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *a, *b;
    size_t alen, blen;
    fuzz_split(data, size, &a, &alen, &b, &blen);
    if (!b)
        return 0;
    json_t *schema = json_loadb(a, alen, FLAGS, NULL);
    json_t *inst = schema ? json_loadb(b, blen, FLAGS, NULL) : NULL;
    if (!inst) {
        json_decref(schema);
        return 0;
    }
    js_options_t opts = {.format_assert = 1};
    js_registry_t *reg = js_registry_new(&opts);
    if (!reg)
        abort();
    char err[512];
    const js_schema_t *s = js_registry_add(reg, URI, schema, err, sizeof err) == 0
                               ? js_compile(reg, URI, err, sizeof err)
                               : NULL;
    if (s) {
        int fast = js_validate(s, inst, NULL, 0);
        js_errors_t first = {0}, all = {0};
        int one = js_validate(s, inst, &first, 0);
        int every = js_validate(s, inst, &all, 1);
        if (fast < 0 || fast != one || fast != every)
            fuzz_fail("validation modes disagree: fast %d, first error %d, all errors %d", fast,
                      one, every);
        if ((fast == 1) != (first.count == 0) || (fast == 1) != (all.count == 0))
            fuzz_fail("verdict %d with %zu / %zu errors", fast, first.count, all.count);
        for (size_t i = 0; i < all.count; i++)
            if (!all.items[i].keyword || !all.items[i].message || !all.items[i].instance_path ||
                !all.items[i].schema_path)
                fuzz_fail("error %zu lacks a field", i);
        js_errors_clear(&first);
        js_errors_clear(&all);
    }
    js_registry_free(reg);
    json_decref(schema);
    json_decref(inst);
    return 0;
}
