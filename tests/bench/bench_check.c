/*
 * bench_check — the CI guard's only judgement on a benchmark run: the JSON
 * written by tests/bench/run parses and every scenario is present with
 * status "ok" and at least one positive number among its figures.  Timing
 * is never judged here (shared CI machines are noisy); the targets' PASS/MISS
 * is the report's business.  The validation scenario may be "skipped" when
 * the validator's bench-validate is not part of the build.
 *
 *   bench_check FILE      exit 0 when complete, 1 with the reason otherwise
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

static const char *const scenarios[] = {
    "raw_drain", "e2e_metadata_off", "e2e_metadata_on", "retention_archive", "publish",
    "latency",   "validation",       "memory",          "scaling",           "reload"};

/* 1 when v holds a positive number at any depth. */
static int has_positive_number(json_t *v)
{
    if (json_is_number(v))
        return json_number_value(v) > 0;
    const char *k;
    json_t *m;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach(v, k, m) if (has_positive_number(m)) return 1;
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, m) if (has_positive_number(m)) return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bench_check FILE\n");
        return 2;
    }
    json_error_t jerr;
    json_t *root = json_load_file(argv[1], 0, &jerr);
    if (!root) {
        fprintf(stderr, "bench_check: %s:%d:%d: %s\n", argv[1], jerr.line, jerr.column,
                jerr.text);
        return 1;
    }
    json_t *sc = json_object_get(root, "scenarios");
    int bad = 0;
    for (size_t i = 0; i < sizeof scenarios / sizeof *scenarios; i++) {
        json_t *s = json_object_get(sc, scenarios[i]);
        const char *status = json_string_value(json_object_get(s, "status"));
        if (!s) {
            fprintf(stderr, "bench_check: scenario %s missing\n", scenarios[i]);
            bad = 1;
        } else if (status && !strcmp(status, "skipped") && !strcmp(scenarios[i], "validation")) {
            fprintf(stderr, "bench_check: note: %s skipped: %s\n", scenarios[i],
                    json_string_value(json_object_get(s, "reason")));
        } else if (!status || strcmp(status, "ok")) {
            fprintf(stderr, "bench_check: scenario %s status %s: %s\n", scenarios[i],
                    status ? status : "(none)",
                    json_string_value(json_object_get(s, "reason")));
            bad = 1;
        } else if (!has_positive_number(s)) {
            fprintf(stderr, "bench_check: scenario %s reported no figures\n", scenarios[i]);
            bad = 1;
        }
    }
    json_decref(root);
    if (!bad)
        printf("bench_check: all %zu scenarios reported figures\n",
               sizeof scenarios / sizeof *scenarios);
    return bad;
}
