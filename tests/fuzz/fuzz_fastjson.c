/*
 * fuzz_fastjson — differential: fj_parse() must build exactly json_loadb()'s
 * tree or reject what jansson rejects (fastjson.h's promise), with the
 * flags evbus parses with: JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES (event
 * envelopes) and the same plus JSON_DECODE_ANY.  Trees are compared with
 * json_equal and, since fastjson also promises jansson's key order, by
 * their compact serialisations; a rejection must carry jansson's own
 * error report (code, text, line, column, position), as fastjson.h says.
 */
#include <jansson.h>
#include <string.h>

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
        /* fastjson.h: a rejection is reported exactly as jansson reports it
         * (code, text, line, column, position, source) */
        if (json_error_code(&fe) != json_error_code(&je) || strcmp(fe.text, je.text) != 0 ||
            fe.line != je.line || fe.column != je.column || fe.position != je.position ||
            strcmp(fe.source, je.source) != 0)
            fuzz_fail("flags %#zx: error reports differ: fastjson code %d '%s' %d:%d@%d, "
                      "jansson code %d '%s' %d:%d@%d", flags, (int)json_error_code(&fe), fe.text,
                      fe.line, fe.column, fe.position, (int)json_error_code(&je), je.text,
                      je.line, je.column, je.position);
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
