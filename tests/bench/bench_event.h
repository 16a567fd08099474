/*
 * bench_event.h — the benchmark's one event shape, shared by the programs
 * in tests/bench/ so every scenario moves exactly the same bytes.
 *
 * An approval.item.approved v2 CloudEvent of 386 bytes (the latest version
 * applies, as no version is named), valid against
 * schemas/approval.item.approved/2.json.  The id is derived from the index,
 * so two fills with the same N write identical streams.  `benchsentus`
 * (an integer CloudEvents extension, allowed by the envelope schema) carries
 * the publisher's CLOCK_REALTIME in microseconds for the latency scenario:
 * the `time` attribute has only millisecond resolution, and `data` may not
 * carry it because the v2 data schema forbids additional properties.
 * sent_us < 0 leaves the attribute out.
 */
#ifndef BENCH_EVENT_H
#define BENCH_EVENT_H

#include <stdio.h>
#include <time.h>

#define BENCH_EVENT_MAX 640

/* keys > 0 adds the extension `partitionkey` "k<i mod keys>" (the per-key
 * ordering benchmark, tests/bench/ab --b-per-key): 0 writes the 386 bytes
 * every other scenario moves. */
static inline int bench_event_format_keyed(char *buf, size_t len, unsigned long i,
                                           long long sent_us, unsigned long keys)
{
    char sent[96] = "";
    int off = 0;
    if (sent_us >= 0)
        off = snprintf(sent, sizeof sent, ",\"benchsentus\":%lld", sent_us);
    if (keys > 0 && off >= 0)
        snprintf(sent + off, sizeof sent - (size_t)off, ",\"partitionkey\":\"k%lu\"", i % keys);
    return snprintf(buf, len,
                    "{\"specversion\":\"1.0\",\"id\":\"00000000-0000-4000-8000-%012lx\","
                    "\"source\":\"/bench\",\"type\":\"approval.item.approved\","
                    "\"time\":\"2025-03-14T09:26:53.123Z\",\"tenantid\":\"bench\"%s,"
                    "\"data\":{"
                    "\"approvalId\":\"3f2b7c1e-8a4d-4c55-9e21-0b6f5d7a9c10\","
                    "\"spaceId\":\"9b1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f\","
                    "\"decidedBy\":{\"id\":\"5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9\","
                    "\"kind\":\"user\"},\"decisionAt\":\"2025-03-14T09:26:53Z\"}}",
                    i, sent);
}

static inline int bench_event_format(char *buf, size_t len, unsigned long i, long long sent_us)
{
    return bench_event_format_keyed(buf, len, i, sent_us, 0);
}

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline long long bench_realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

#endif /* BENCH_EVENT_H */
