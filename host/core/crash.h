/*
 * crash — crash forensics: what each thread is running, published where a
 * fatal-signal handler can read it without allocating, one log line naming
 * it when the process dies, and a record of crashes and starts that
 * survives restarts.
 *
 * Each dispatching thread claims a slot (crash_slot_claim) and, around
 * every handler call, stores pointers to the handler's name, the event id
 * and the stream entry (crash_slot_enter / crash_slot_leave): three
 * relaxed atomic stores, no copy.  On SIGSEGV, SIGABRT, SIGBUS, SIGFPE or
 * SIGILL the handler installed by crash_init writes, with write(2) only:
 *
 *   FATAL [crash] signal 6 (SIGABRT) in worker-1 running handler slow/main
 *   on event ev-7 (stream entry 1765000000000-0); other threads: ...
 *
 * then a short backtrace (backtrace_symbols_fd), appends one line
 * "<unix ms> <signal> <entry> <handler> <event id>" to
 * STATE_DIR/evbusd-crashes.log, and re-raises the signal with the default
 * action (the exit status and core dump are the usual ones).
 *
 * At start crash_init counts the records and bumps STATE_DIR/evbusd-starts,
 * so crash and start counts survive restarts (health, metrics), and keeps
 * the last records so that the poison dead letter of an entry that crashed
 * the host names the handler that was running (crash_handler_for).
 *
 * Thread rules: crash_init once, on the main thread, before any worker;
 * slots are written by their owning thread only; the rest from any thread.
 */
#ifndef EVBUS_CORE_CRASH_H
#define EVBUS_CORE_CRASH_H

#include <jansson.h>

/* Install the handlers, read the record in state_dir, count this start.
 * Safe to call again (a later call only changes nothing). */
void crash_init(const char *state_dir);

/* A slot named `who` (copied) for a dispatch context; -1 when all 64 are
 * taken (its thread is then simply not named in a crash line).  The
 * thread that uses it becomes known at its first crash_slot_enter. */
int crash_slot_claim(const char *who);
/* The calling thread's slot is running handler h on event id / entry
 * (pointers kept, not copied: they must stay valid until leave). */
void crash_slot_enter(int slot, const char *handler, const char *event_id, const char *entry);
void crash_slot_leave(int slot);

/* The handler that was running on stream entry `entry` when the host last
 * crashed on it, from the record; NULL when none.  Static storage. */
const char *crash_handler_for(const char *entry);

/* {starts_total, crashes_total, last_crash: {at_ms, signal, entry,
 * handler, event} | null} for /health.  Caller decrefs. */
json_t *crash_health(void);

#endif
