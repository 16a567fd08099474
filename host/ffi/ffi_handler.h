/*
 * ffi — foreign handlers: any exported C function bound to events by a
 * manifest `foreign:` entry (cfg_foreign_t), called through libffi.
 *
 * Each parameter is filled from the event envelope by a JSON Pointer
 * (RFC 6901) or from a constant, converted to the declared C type:
 *   string  const char *   from a JSON string only (no embedded NUL)
 *   int64   int64_t        from a JSON integer, or an integral real, in range
 *   int32   int32_t        likewise, within the int32 range
 *   double  double         from any JSON number
 *   bool    bool           from true / false only
 *   json    const char *   the value serialized compactly (any JSON value)
 *   event   const evbus_event_t *   the event being dispatched (no from/value)
 * The integer return (int32, int64) maps by sign to a result through the
 * entry's on_zero / on_positive / on_negative; a void return is EVBUS_OK; a
 * bool return counts true as positive and false as zero (config_load sets
 * their defaults to true → EVBUS_OK, false → EVBUS_RETRY).
 *
 * Everything that can be checked without an event is checked at open time
 * (library, symbol, types, pointer syntax, constants, result mapping), so
 * a call fails only on what the event itself carries.  This module does
 * not route events or retry.
 *
 * Ownership: ffih_open() returns a handle owned by the caller, freed with
 * ffih_close().  Thread rules: ffih_open/ffih_close on the control thread;
 * a handle is immutable after open, so ffih_call() may run on any number of
 * threads at once (whether the foreign function itself is thread-safe is the
 * library's business — the manifest author's to know).
 */
#ifndef EVBUS_HOST_FFI_HANDLER_H
#define EVBUS_HOST_FFI_HANDLER_H

#include <jansson.h>
#include <stddef.h>

#include <evbus/plugin.h>

#include "config/config.h"

/* Upper bound on parameters of one foreign function. */
#define FFIH_MAX_PARAMS 32

typedef struct ffih ffih_t;

/*
 * Loads cfg->library (dlopen RTLD_NOW|RTLD_LOCAL), finds cfg->symbol and
 * prepares the call.  Every problem found is appended to errs with the
 * position of the offending entry, library, symbol or parameter, e.g.
 * "conf.d/10.yaml:12:9: foreign 'notify': param 2: from '/data~2x' is not a
 * valid JSON Pointer: '~' must be followed by 0 or 1".  Returns NULL when
 * anything was wrong (nothing is left open).
 */
ffih_t *ffih_open(const cfg_foreign_t *cfg, cfg_errors_t *errs);

/* Closes the library and frees the handle.  NULL is fine.  No ffih_call()
 * may be running on it. */
void ffih_close(ffih_t *h);

/* The entry's name (owned by the handle). */
const char *ffih_name(const ffih_t *h);

/*
 * Calls the function for one event.  `envelope` is the parsed event (a
 * jansson object whose `data` is already upcast); `ev` is passed to event
 * parameters.  When a parameter cannot be filled the function is NOT
 * called: returns EVBUS_REJECT with a reason such as
 * "param 2 (/data/amount): expected int64, got string" or
 * "param 1 (/tenantid): not found".  On success reason is set to "".
 */
evbus_result_t ffih_call(ffih_t *h, const json_t *envelope, const evbus_event_t *ev,
                         char *reason, size_t reason_len);

#endif /* EVBUS_HOST_FFI_HANDLER_H */
