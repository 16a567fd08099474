/*
 * log — one line per message on stderr, safe from any thread.
 *
 * Format: "2026-11-26T22:06:42.123Z LEVEL [component] message".  A line is
 * written with a single write(2) so concurrent lines never interleave.
 * The level threshold is process-wide and may be changed at any time
 * (a reload sets it from the new configuration).
 */
#ifndef EVBUS_LOG_H
#define EVBUS_LOG_H

#include <stdarg.h>

enum { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

void log_set_level(int level);
int log_get_level(void);
void log_msg(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(int level, const char *component, const char *fmt, va_list ap);

#define log_debug(comp, ...) do { if (log_get_level() <= LOG_DEBUG) log_msg(LOG_DEBUG, comp, __VA_ARGS__); } while (0)
#define log_info(comp, ...) log_msg(LOG_INFO, comp, __VA_ARGS__)
#define log_warn(comp, ...) log_msg(LOG_WARN, comp, __VA_ARGS__)
#define log_error(comp, ...) log_msg(LOG_ERROR, comp, __VA_ARGS__)

#endif
