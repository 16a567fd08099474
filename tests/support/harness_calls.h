/*
 * harness_calls — the call records of plugins/testkit/keyed.so read back,
 * for the tests of per-key order across hosts (ownership, cluster_engine).
 *
 * keyed.so appends one line per call to its `out` file:
 *   <partitionkey>\t<data.seq>\t<attempt>\t<start_us>\t<end_us>\t<result>
 * with start and end on CLOCK_MONOTONIC, so records of several processes
 * on one machine compare.  The tests publish keys "k<NNN>" with data.seq
 * 0, 1, ...; a host's records carry its index.
 *
 * Same rules as harness.h: for tests, main thread only; nothing asserts.
 */
#ifndef EVBUS_TEST_HARNESS_CALLS_H
#define EVBUS_TEST_HARNESS_CALLS_H

#include <stddef.h>

typedef struct harness_call {
    char key[32];
    int seq, attempt, host;
    long long start, end;
    char result[8];
} harness_call_t;

typedef struct harness_calls {
    harness_call_t *v;
    size_t n, cap;
} harness_calls_t;

/* Appends the records of `path` (a missing file adds none), tagged with
 * `host`. */
void harness_calls_read(harness_calls_t *c, const char *path, int host);
void harness_calls_free(harness_calls_t *c);

/* Events (key "k<i>", i < nkeys; seq < nseq) with at least one ok call. */
size_t harness_calls_distinct_ok(const harness_calls_t *c, int nkeys, int nseq);

/*
 * Per-key order, with c sorted by key then start: a call that starts
 * before the previous call of its key ended (two at once), or an event
 * handled before every earlier event of its key was handled at least
 * once, is a violation; the first few are described in msg.  Returns the
 * violations; *dups gets the calls of events already handled (at least
 * once delivery's duplicates).
 */
size_t harness_calls_order(harness_calls_t *c, size_t *dups, char *msg, size_t msglen);

#endif
