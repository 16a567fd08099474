/* bench_fastjson.c: time json_loadb against fj_parse on the ~390-byte
 * approval CloudEvent evbusd parses for every event (parse + json_decref).
 *
 * Usage: bench-fastjson [ITERATIONS] [both|jansson|fastjson|reject]
 * Prints ns/parse for each parser and the ratio.  `reject` times the cold
 * path instead: the same event cut one byte short, parsed with an error
 * report (fj_parse then asks json_loadb for jansson's report, fastjson.h),
 * against json_loadb alone.  Wall-clock numbers are
 * noisy on shared machines; for stable instruction counts run it under
 * callgrind and collect only the per-parse functions:
 *   valgrind --tool=callgrind --collect-atstart=no \
 *     --toggle-collect=bench_jansson_once --toggle-collect=bench_fastjson_once \
 *     bench-fastjson 20000 both
 * It checks both trees agree once before timing, and exits 1 if not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fastjson/fastjson.h"

static const char bench_event[] =
    "{\"specversion\":\"1.0\",\"id\":\"6f1c2b1e-0000-4000-8000-000000000001\",\"source\":"
    "\"/bench/publisher\",\"type\":\"approval.item.approved\",\"time\":\"2026-11-26T10:00:00."
    "000Z\",\"tenantid\":\"tenant-0001\",\"correlationid\":\"9a8b7c6d-1234-4abc-8def-"
    "0123456789ab\",\"datacontenttype\":\"application/json\",\"data\":{\"approvalId\":"
    "\"6f1c2b1e-0000-4000-8000-000000000001\",\"spaceId\":\"3b0d6a4e-5a40-4c6c-9b1e-"
    "0d6f2f4b7a10\",\"decidedBy\":{\"id\":\"9a8b7c6d-1234-4abc-8def-0123456789ab\",\"kind\":"
    "\"user\"},\"decisionAt\":\"2026-11-26T10:00:00Z\",\"comment\":\"ok\"}}";

/* Kept out of line so callgrind can collect exactly one parse + free. */
__attribute__((noinline)) int bench_jansson_once(const char *buf, size_t len) {
    json_t *v = json_loadb(buf, len, 0, NULL);
    int ok = v != NULL;
    json_decref(v);
    return ok;
}

__attribute__((noinline)) int bench_fastjson_once(const char *buf, size_t len) {
    json_t *v = fj_parse(buf, len, 0, NULL);
    int ok = v != NULL;
    json_decref(v);
    return ok;
}

/* A rejection with its error report: what event_parse pays for an
 * unparseable entry. */
__attribute__((noinline)) int bench_jansson_reject_once(const char *buf, size_t len) {
    json_error_t e;
    json_t *v = json_loadb(buf, len, 0, &e);
    int rejected = v == NULL && e.text[0] != '\0';
    json_decref(v);
    return rejected;
}

__attribute__((noinline)) int bench_fastjson_reject_once(const char *buf, size_t len) {
    json_error_t e;
    json_t *v = fj_parse(buf, len, 0, &e);
    int rejected = v == NULL && e.text[0] != '\0';
    json_decref(v);
    return rejected;
}

static double bench_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double bench_run(int (*once)(const char *, size_t), const char *buf, size_t len,
                        long iterations) {
    long ok = 0;
    double t0 = bench_now_ns();
    for (long i = 0; i < iterations; i++)
        ok += once(buf, len);
    double t1 = bench_now_ns();
    if (ok != iterations) {
        fprintf(stderr, "bench-fastjson: a parse failed\n");
        exit(1);
    }
    return iterations ? (t1 - t0) / (double)iterations : 0.0;
}

int main(int argc, char **argv) {
    long iterations = argc > 1 ? strtol(argv[1], NULL, 10) : 1000000;
    const char *which = argc > 2 ? argv[2] : "both";
    int run_jansson = strcmp(which, "fastjson") != 0;
    int run_fast = strcmp(which, "jansson") != 0;
    size_t len = sizeof bench_event - 1;

    json_error_t e;
    json_t *a = json_loadb(bench_event, len, 0, &e);
    json_t *b = fj_parse(bench_event, len, 0, &e);
    char *da = json_dumps(a, JSON_PRESERVE_ORDER | JSON_COMPACT);
    char *db = json_dumps(b, JSON_PRESERVE_ORDER | JSON_COMPACT);
    if (!a || !b || !json_equal(a, b) || !da || !db || strcmp(da, db) != 0) {
        fprintf(stderr, "bench-fastjson: the parsers disagree on the event\n");
        return 1;
    }
    free(da);
    free(db);
    json_decref(a);
    json_decref(b);

    if (strcmp(which, "reject") == 0) {
        printf("event cut to %zu bytes (rejected), %ld iterations\n", len - 1, iterations);
        double rj = bench_run(bench_jansson_reject_once, bench_event, len - 1, iterations);
        double rf = bench_run(bench_fastjson_reject_once, bench_event, len - 1, iterations);
        printf("json_loadb: %8.1f ns/rejection\nfj_parse:   %8.1f ns/rejection\n"
               "ratio:      %8.2fx\n", rj, rf, rf / rj);
        return 0;
    }
    printf("event: %zu bytes, %ld iterations\n", len, iterations);
    double nj = 0, nf = 0;
    if (run_jansson) {
        nj = bench_run(bench_jansson_once, bench_event, len, iterations);
        printf("json_loadb: %8.1f ns/parse\n", nj);
    }
    if (run_fast) {
        nf = bench_run(bench_fastjson_once, bench_event, len, iterations);
        printf("fj_parse:   %8.1f ns/parse\n", nf);
    }
    if (run_jansson && run_fast && nf > 0)
        printf("ratio:      %8.2fx\n", nj / nf);
    return 0;
}
