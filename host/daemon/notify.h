/*
 * notify — the service manager's readiness protocol (sd_notify(3)),
 * spoken directly: one AF_UNIX datagram of "KEY=VALUE\n…" lines to the
 * socket named by $NOTIFY_SOCKET (a path, or '@' for an abstract address).
 *
 * Why not libsystemd's sd_notify(): the protocol is a single sendto() of
 * a few bytes, stable since systemd 209 and spoken by other supervisors
 * too (s6, runit shims); linking libsystemd for it would add a runtime
 * dependency to every installation, including those not under systemd,
 * for twenty lines of code.  What is not implemented: fd passing
 * (FDSTORE), credentials (we never send for another pid), barriers.
 *
 * Without $NOTIFY_SOCKET every call is a no-op, so evbusd behaves the same
 * under any supervisor or none.
 *
 * Thread rules: notify_open() once, from main before any thread exists
 * (it unsets the variables so plugins and their children never see them);
 * notify_send() from any thread (one datagram per call, never blocks).
 */
#ifndef EVBUS_DAEMON_NOTIFY_H
#define EVBUS_DAEMON_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct notify {
    int fd;                  /* -1: no service manager asked */
    uint64_t watchdog_usec;  /* $WATCHDOG_USEC for this pid, 0 when none */
    char addr[128];          /* $NOTIFY_SOCKET as given (read-only) */
} notify_t;

/*
 * Read $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID (the watchdog is
 * ours only when WATCHDOG_PID is absent or our pid) and unset them.
 * 0, or -1 with err when NOTIFY_SOCKET is set but unusable (then n->fd is
 * -1 and evbusd runs on without notifications).
 */
int notify_open(notify_t *n, char *err, size_t errlen);

/* True when a service manager listens. */
bool notify_enabled(const notify_t *n);

/* Send one datagram built from fmt (lines "KEY=VALUE" separated by '\n').
 * 0, or -1 (errno set) when it could not be sent; no-op without a socket. */
int notify_send(const notify_t *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void notify_close(notify_t *n);

/* CLOCK_MONOTONIC in microseconds, as MONOTONIC_USEC= wants it. */
uint64_t notify_monotonic_usec(void);

#endif
