/*
 * fuzz_foreign — the foreign-handler signature and params parser: the
 * `foreign:` entries of a manifest (config_load: returns, params with their
 * type / from / value, result mapping) and then ffih_open's checks on what
 * was accepted (pointer syntax, constants, types) and ffih_call's filling
 * of the parameters from an event.
 *
 * The input is a whole manifest, as for fuzz_config, but seeded and
 * dictionary-driven towards `foreign:`.  Whatever library and symbol the
 * input names, the entry is opened against libc's abs(): opening arbitrary
 * libraries would run their constructors, and abs() reads only its first
 * integer register, so calling it with any declared signature is harmless
 * while the parameters are still converted exactly as for a real handler.
 */
#include <unistd.h>

#include "config/config.h"
#include "ffi/ffi_handler.h"
#include "fuzz_util.h"

static char dir[64];
static char file[96];
static json_t *envelope;

static void cleanup(void)
{
    unlink(file);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(dir, sizeof dir, "/tmp/evbus-fuzz-foreign-XXXXXX");
    if (!mkdtemp(dir))
        fuzz_fail("mkdtemp failed");
    snprintf(file, sizeof file, "%s/10-foreign.yaml", dir);
    atexit(cleanup);
    /* one event with a value of every JSON kind for `from:` pointers */
    envelope = json_loads("{\"specversion\":\"1.0\",\"id\":\"e1\",\"source\":\"/fuzz\","
                          "\"type\":\"order.created\",\"tenantid\":\"t1\","
                          "\"time\":\"2026-12-01T10:00:00Z\",\"data\":{\"id\":\"o-1\","
                          "\"n\":42,\"big\":9007199254740993,\"r\":1.5,\"neg\":-3,"
                          "\"b\":true,\"z\":null,\"s\":\"a\\u0000b\",\"a\":[1,\"x\",{}],"
                          "\"o\":{\"k/~\":{\"deep\":[0]}}}}",
                          JSON_ALLOW_NUL, NULL);
    if (!envelope)
        fuzz_fail("the fixed envelope does not parse");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(file, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        fuzz_fail("cannot write %s", file);
    cfg_errors_t errs = {0};
    evbus_config_t *cfg = config_load(dir, &errs);
    if (!cfg && errs.count == 0)
        fuzz_fail("config_load failed without an error");
    for (size_t i = 0; cfg && i < cfg->n_foreign; i++) {
        cfg_foreign_t *fo = &cfg->foreign[i];
        char *lib = fo->library, *sym = fo->symbol;
        fo->library = "libc.so.6";
        fo->symbol = "abs";
        cfg_errors_t oerrs = {0};
        ffih_t *h = ffih_open(fo, &oerrs);
        fo->library = lib;
        fo->symbol = sym;
        if (!h && oerrs.count == 0)
            fuzz_fail("ffih_open failed without an error");
        if (h) {
            char reason[512];
            evbus_result_t r = ffih_call(h, envelope, NULL, reason, sizeof reason);
            if (r == EVBUS_REJECT && !reason[0] && fo->on_negative != EVBUS_REJECT &&
                fo->on_zero != EVBUS_REJECT && fo->on_positive != EVBUS_REJECT)
                fuzz_fail("ffih_call rejected without a reason");
            ffih_close(h);
        }
        cfg_errors_free(&oerrs);
    }
    config_free(cfg);
    cfg_errors_free(&errs);
    return 0;
}
