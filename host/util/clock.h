/*
 * clock — the two clocks the host reads: monotonic milliseconds for
 * intervals and timeouts, wall-clock (Unix epoch) milliseconds for times
 * that leave the process (retry due times, DLQ provenance, metadata).
 * Any thread.
 */
#ifndef EVBUS_CLOCK_H
#define EVBUS_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
