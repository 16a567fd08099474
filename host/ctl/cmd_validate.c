/*
 * cmd_validate.c — `evbusctl validate`: checks NDJSON files of events (or of
 * arbitrary instances against one schema) offline, for CI pipelines and for
 * debugging producers.
 *
 * This file only parses arguments, opens inputs and picks the exit code; the
 * validation and the report format live in host/schema (schema_stream_*), so
 * they are tested without a process.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "evbus_build_config.h"
#include "ctl/ctl.h"
#include "schema/schema.h"

/* Larger than the stdio default: big inputs are read sequentially. */
#define VALIDATE_INPUT_BUFSZ (1 << 20)

/* Progress on a terminal: bytes of the current file (total unknown for
 * stdin and pipes). */
struct validate_progress {
    const char *label;
    uint64_t total;
};

static void validate_progress_cb(void *ud, uint64_t bytes)
{
    const struct validate_progress *p = ud;
    ctl_progress(p->label, bytes, p->total);
}

static void validate_usage(FILE *out)
{
    fputs("usage: evbusctl validate [--schema FILE | --schemas DIR] [--json]\n"
          "                         [--format-assert | --no-format-assert] [FILE...]\n"
          "\n"
          "Validates NDJSON (one JSON value per line) from each FILE, or stdin when\n"
          "no FILE is given or FILE is '-'.  Blank lines are skipped.\n"
          "\n"
          "  --schemas DIR        each line is a whole event: CloudEvents envelope,\n"
          "                       then data against its type's schema at its version\n"
          "                       (default DIR: " EVBUS_SCHEMA_DIR ")\n"
          "  --schema FILE        check each line against this one JSON Schema\n"
          "                       ($refs to other files are read from disk)\n"
          "  --json               one JSON object per line, then a summary object\n"
          "  --format-assert      \"format\" is an assertion (default)\n"
          "  --no-format-assert   \"format\" is an annotation only\n"
          "  -h, --help           show this help\n"
          "\n"
          "Output: FILE:LINE: INSTANCE_PATH: MESSAGE per error, then\n"
          "\"N valid, M invalid\".\n"
          "Exit status: 0 all valid, 1 some invalid, 2 usage, schema or I/O error.\n",
          out);
}


static void validate_print_errors(const char *what, cfg_errors_t *errs)
{
    if (errs->count == 0)
        fprintf(stderr, "evbusctl validate: cannot load %s\n", what);
    for (size_t i = 0; i < errs->count; i++) {
        fprintf(stderr, "%s\n", errs->msgs[i]);
        free(errs->msgs[i]);
    }
    free(errs->msgs);
    memset(errs, 0, sizeof *errs);
}

int cmd_validate(int argc, char **argv)
{
    const char *schema_file = NULL, *schema_dir = NULL;
    int json = 0, format_assert = 1, nfiles = 0;
    char **files = calloc((size_t)argc + 1, sizeof *files);
    if (!files) {
        fprintf(stderr, "evbusctl validate: out of memory\n");
        return 2;
    }

    int opts_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r;
        if (opts_done || a[0] != '-' || strcmp(a, "-") == 0) {
            files[nfiles++] = argv[i];
        } else if (strcmp(a, "--") == 0) {
            opts_done = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            validate_usage(stdout);
            free(files);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--format-assert") == 0) {
            format_assert = 1;
        } else if (strcmp(a, "--no-format-assert") == 0) {
            format_assert = 0;
        } else if ((r = ctl_opt_value(argc, argv, &i, "--schemas", &schema_dir)) != 0 ||
                   (r = ctl_opt_value(argc, argv, &i, "--schema", &schema_file)) != 0) {
            if (r < 0) {
                fprintf(stderr, "evbusctl validate: %s needs a value\n", a);
                validate_usage(stderr);
                free(files);
                return 2;
            }
        } else {
            fprintf(stderr, "evbusctl validate: unknown option '%s'\n", a);
            validate_usage(stderr);
            free(files);
            return 2;
        }
    }
    if (schema_file && schema_dir) {
        fprintf(stderr, "evbusctl validate: --schema and --schemas exclude each other\n");
        free(files);
        return 2;
    }

    cfg_errors_t errs = {0};
    schema_catalog_t *catalog = NULL;
    js_registry_t *reg = NULL;
    const js_schema_t *schema = NULL;
    if (schema_file) {
        reg = schema_load_file(schema_file, format_assert, &schema, &errs);
        if (!reg) {
            validate_print_errors(schema_file, &errs);
            free(files);
            return 2;
        }
    } else {
        if (!schema_dir)
            schema_dir = EVBUS_SCHEMA_DIR;
        catalog = schema_catalog_load(schema_dir, format_assert, &errs);
        if (!catalog) {
            validate_print_errors(schema_dir, &errs);
            free(files);
            return 2;
        }
    }

    schema_stream_t st;
    schema_stream_init(&st, catalog, schema, json, stdout);
    struct validate_progress prog = {0};
    if (ctl_stderr_tty()) { /* a million lines take seconds: show it */
        st.progress = validate_progress_cb;
        st.progress_ud = &prog;
    }
    int io_failed = 0;
    char err[512];
    if (nfiles == 0)
        files[nfiles++] = "-";
    for (int i = 0; i < nfiles; i++) {
        int is_stdin = strcmp(files[i], "-") == 0;
        const char *name = is_stdin ? "<stdin>" : files[i];
        FILE *in = is_stdin ? stdin : fopen(files[i], "r");
        if (!in) {
            fflush(stdout);
            fprintf(stderr, "evbusctl validate: %s: %s\n", files[i], strerror(errno));
            io_failed = 1;
            continue;
        }
        if (!is_stdin)
            setvbuf(in, NULL, _IOFBF, VALIDATE_INPUT_BUFSZ);
        struct stat sb;
        prog.label = name;
        prog.total = !is_stdin && fstat(fileno(in), &sb) == 0 && S_ISREG(sb.st_mode)
                         ? (uint64_t)sb.st_size : 0;
        int run = schema_stream_run(&st, in, name, err, sizeof err);
        if (st.progress)
            ctl_progress_end();
        if (run != 0) {
            fflush(stdout);
            fprintf(stderr, "evbusctl validate: %s\n", err);
            io_failed = 1;
        }
        if (!is_stdin)
            fclose(in);
    }
    schema_stream_summary(&st);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "evbusctl validate: writing output: %s\n", strerror(errno));
        io_failed = 1;
    }

    int rc = io_failed ? 2 : st.invalid ? 1 : 0;
    schema_stream_release(&st);
    schema_catalog_free(catalog);
    if (reg)
        js_registry_free(reg);
    free(files);
    return rc;
}
