/*
 * fuzz_fastjson — differential: fj_parse() must build exactly json_loadb()'s
 * tree or reject what jansson rejects (fastjson.h's promise), with the
 * flags evbus parses with: JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES (event
 * envelopes) and the same plus JSON_DECODE_ANY.  Trees are compared with
 * json_equal and, since fastjson also promises jansson's key order, by
 * their compact serialisations; a rejection must be a duplicate key for
 * both parsers or for neither.
 */
#include <jansson.h>
#include <stdbool.h>

#include "fastjson/fastjson.h"
#include "fuzz_util.h"

static char *dump(const json_t *j)
{
    /* JSON_ENCODE_ANY: a scalar top level under JSON_DECODE_ANY */
    return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
}

static void check(const char *buf, size_t len, size_t flags)
{
    json_error_t fe, je;
    json_t *f = fj_parse(buf, len, flags, &fe);
    json_t *j = json_loadb(buf, len, flags, &je);
    if (!f != !j)
        fuzz_fail("flags %#zx: fastjson %s (%s), jansson %s (%s)", flags,
                  f ? "accepts" : "rejects", f ? "" : fe.text, j ? "accepts" : "rejects",
                  j ? "" : je.text);
    if (!f) {
        /* Only the duplicate-key code is acted on (event_parse dead-letters
         * it as invalid_envelope, any other failure as unparseable), so
         * only it must agree.  Other codes may differ: for "-" at the end
         * fastjson says premature_end_of_input, jansson invalid_syntax
         * (docs/fuzzing.md, findings). */
        bool fd = json_error_code(&fe) == json_error_duplicate_key;
        bool jd = json_error_code(&je) == json_error_duplicate_key;
        if (fd != jd)
            fuzz_fail("flags %#zx: duplicate key for one parser only: fastjson %d (%s), "
                      "jansson %d (%s)", flags, (int)json_error_code(&fe), fe.text,
                      (int)json_error_code(&je), je.text);
        return;
    }
    if (!json_equal(f, j))
        fuzz_fail("flags %#zx: trees differ (json_equal)", flags);
    char *fs = dump(f), *js = dump(j);
    if (!fs || !js || strcmp(fs, js) != 0)
        fuzz_fail("flags %#zx: serialisations differ:\n  fastjson %s\n  jansson  %s", flags,
                  fs ? fs : "(null)", js ? js : "(null)");
    free(fs);
    free(js);
    json_decref(f);
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    check(buf, size, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES);
    check(buf, size, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES | JSON_DECODE_ANY);
    return 0;
}
