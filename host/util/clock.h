/*
 * clock — the clocks the host reads: monotonic milliseconds for
 * intervals and timeouts (and a coarse variant for per-event checks),
 * wall-clock (Unix epoch) milliseconds for times that leave the process
 * (retry due times, DLQ provenance, metadata).
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

/*
 * Monotonic milliseconds from the coarse clock: it lags CLOCK_MONOTONIC by
 * up to one scheduler tick (1-10 ms) and costs a fraction of it (a read,
 * no TSC arithmetic).  For checks taken several times per event where a
 * few milliseconds do not matter: handler timeouts and their watchdog
 * (CLOCK_MONOTONIC was ~9 % of evbusd's CPU with three handlers per event,
 * two readings per handler).  Never mix its values with clock_mono_ms().
 */
static inline int64_t clock_coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
