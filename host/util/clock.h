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
#include <stdio.h>
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

/* Room for any clock_rfc3339() text (a 64-bit year included). */
#define CLOCK_RFC3339_LEN 80

/* Wall-clock ms as RFC 3339 UTC with milliseconds,
 * "2026-11-26T10:00:00.123Z", into out (CLOCK_RFC3339_LEN bytes).
 * Returns out. */
static inline char *clock_rfc3339(int64_t ms, char out[CLOCK_RFC3339_LEN])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, CLOCK_RFC3339_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    return out;
}

#endif
