/*
 * log — one line per message on stderr, safe from any thread.
 *
 * Two formats (log.format):
 *  - text (the default): "2026-11-26T22:06:42.123Z LEVEL [component] message"
 *  - json: one object per line, {"time":"2026-11-26T22:06:42.123Z",
 *    "level":"warn","component":"...","message":"..."} plus "event_id",
 *    "type", "tenant" and "handler" when the call site has them
 *    (log_event).  Strings are escaped as RFC 8259 asks; bytes that are not
 *    UTF-8 become U+FFFD, so every line parses.
 *
 * Every message passes through redact_secrets() (util/redact.h) before it
 * is written, whatever its call site: a URL's password, a libpq
 * `password=` and a bearer token never reach the log.
 *
 * A line is written with a single write(2) so concurrent lines never
 * interleave.  The level threshold and the format are process-wide and may
 * be changed at any time (a reload sets them from the new configuration).
 */
#ifndef EVBUS_LOG_H
#define EVBUS_LOG_H

#include <stdarg.h>

enum { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };
enum { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON = 1 };

void log_set_level(int level);
int log_get_level(void);
void log_set_format(int format);
int log_get_format(void);
/* "text" -> LOG_FORMAT_TEXT, "json" -> LOG_FORMAT_JSON, else -1. */
int log_format_parse(const char *name);

void log_msg(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(int level, const char *component, const char *fmt, va_list ap);

/*
 * A message about one event (and, when handler is not NULL, one handler's
 * call on it).  Text lines read exactly as log_msg's (the message names
 * the event itself); json lines also carry the fields that are not NULL.
 */
void log_event(int level, const char *component, const char *event_id, const char *type,
               const char *tenant, const char *handler, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

#define log_debug(comp, ...) do { if (log_get_level() <= LOG_DEBUG) log_msg(LOG_DEBUG, comp, __VA_ARGS__); } while (0)
#define log_info(comp, ...) log_msg(LOG_INFO, comp, __VA_ARGS__)
#define log_warn(comp, ...) log_msg(LOG_WARN, comp, __VA_ARGS__)
#define log_error(comp, ...) log_msg(LOG_ERROR, comp, __VA_ARGS__)

#endif
