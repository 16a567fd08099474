/*
 * fuzz_event — the CloudEvents envelope check on raw stream entries
 * (event_parse), as the dispatcher runs it on whatever a publisher wrote.
 *
 * Input: the `event` field, optionally followed by FUZZ_SEP and the `retry`
 * field (retry metadata).  Each input is parsed twice, once into the heap
 * and once into a jarena as the dispatcher does; the verdict (0 / -1), the
 * dead-letter reason, the error text and the attributes must not depend on
 * where the tree lives.  An accepted event must carry what event.h
 * promises: specversion "1.0", non-empty id/source/tenantid, a valid type
 * and an RFC 3339 time.
 */
#include <stdbool.h>

#include "core/event.h"
#include "core/jarena.h"
#include "fuzz_util.h"
#include "router/router.h"

static jarena_t arena;
static bool have_arena;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* jansson's allocator is process-wide: switch it before any parse */
    jarena_install();
    have_arena = jarena_init(&arena) == 0;
    return 0;
}

static struct evbus_event ev_heap, ev_arena;

static int parse(struct evbus_event *ev, jarena_t *a, const char *raw, size_t raw_len,
                 const char *retry)
{
    event_reset(ev);
    ev->arena = a;
    ev->stream_id = "1700000000000-0";
    ev->raw = raw;
    ev->raw_len = raw_len;
    ev->retry_meta = retry;
    return event_parse(ev);
}

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *raw, *rest;
    size_t raw_len, rest_len;
    fuzz_split(data, size, &raw, &raw_len, &rest, &rest_len);
    /* exact-size copies so ASan sees any read past the entry */
    char *rawc = malloc(raw_len ? raw_len : 1);
    if (!rawc)
        abort();
    memcpy(rawc, raw, raw_len);
    char *retry = rest ? fuzz_strndup(rest, rest_len) : NULL;

    int h = parse(&ev_heap, NULL, rawc, raw_len, retry);
    int a = parse(&ev_arena, have_arena ? &arena : NULL, rawc, raw_len, retry);
    if (h != a || ev_heap.dlq_reason != ev_arena.dlq_reason || strcmp(ev_heap.error, ev_arena.error))
        fuzz_fail("heap and arena parses differ: %d/%d reason %d/%d \"%s\" / \"%s\"", h, a,
                  (int)ev_heap.dlq_reason, (int)ev_arena.dlq_reason, ev_heap.error, ev_arena.error);
    if (h == 0) {
        if (!same(ev_heap.id, ev_arena.id) || !same(ev_heap.type, ev_arena.type) ||
            !same(ev_heap.tenant, ev_arena.tenant) || !same(ev_heap.time, ev_arena.time) ||
            !json_equal(ev_heap.env, ev_arena.env))
            fuzz_fail("heap and arena parses accept different envelopes");
        if (!ev_heap.id[0] || !ev_heap.source[0] || !ev_heap.tenant[0] ||
            router_type_check(ev_heap.type, NULL, 0) != 0 || !event_is_rfc3339(ev_heap.time) ||
            ev_heap.attempt < 1)
            fuzz_fail("accepted an envelope event.h says is invalid");
    } else if (ev_heap.dlq_reason != EVBUS_DLQ_UNPARSEABLE &&
               ev_heap.dlq_reason != EVBUS_DLQ_INVALID_ENVELOPE) {
        fuzz_fail("rejected with reason %d", (int)ev_heap.dlq_reason);
    } else if (!ev_heap.error[0]) {
        fuzz_fail("rejected without an error text");
    }
    /* drop the trees before the arena block is reused */
    event_reset(&ev_arena);
    event_reset(&ev_heap);
    ev_arena.arena = NULL;
    free(retry);
    free(rawc);
    return 0;
}
