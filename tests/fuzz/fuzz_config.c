/*
 * fuzz_config — the YAML manifest loader on whole files.  Each input is
 * written as the only manifest of a conf.d directory (one temporary
 * directory for the whole run: a directory per input would make the run
 * about the file system) and loaded with config_load and
 * config_load_partial.  Both must return a config or errors, never crash,
 * leak or hang; a failed load must say why (a non-empty message).
 */
#include <stdbool.h>
#include <unistd.h>

#include "config/config.h"
#include "fuzz_util.h"

static char dir[64];
static char file[96];

static void cleanup(void)
{
    unlink(file);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(dir, sizeof dir, "/tmp/evbus-fuzz-config-XXXXXX");
    if (!mkdtemp(dir))
        fuzz_fail("mkdtemp failed");
    snprintf(file, sizeof file, "%s/10-fuzz.yaml", dir);
    atexit(cleanup);
    return 0;
}

static void check(evbus_config_t *cfg, cfg_errors_t *errs, const char *what)
{
    if (!cfg && errs->count == 0)
        fuzz_fail("%s failed without an error", what);
    for (size_t i = 0; i < errs->count; i++)
        if (!errs->msgs[i] || !errs->msgs[i][0])
            fuzz_fail("%s: empty error message %zu", what, i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(file, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        fuzz_fail("cannot write %s", file);

    cfg_errors_t errs = {0};
    evbus_config_t *cfg = config_load(dir, &errs);
    check(cfg, &errs, "config_load");
    config_free(cfg);
    cfg_errors_free(&errs);

    cfg_errors_t perrs = {0};
    bool *doubtful = NULL;
    evbus_config_t *pcfg = config_load_partial(dir, &perrs, &doubtful);
    check(pcfg, &perrs, "config_load_partial");
    if (pcfg && !doubtful)
        fuzz_fail("config_load_partial returned a config without its doubtful rows");
    free(doubtful);
    config_free(pcfg);
    cfg_errors_free(&perrs);
    return 0;
}
