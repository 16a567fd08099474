/*
 * console_files — the operator console's files (host/admin/console/),
 * embedded at build time by embed_console.py.  Immutable; read from any
 * thread.
 */
#ifndef EVBUS_ADMIN_CONSOLE_FILES_H
#define EVBUS_ADMIN_CONSOLE_FILES_H

#include <stddef.h>

typedef struct console_file {
    const char *name;  /* "app.js": a bare name, never a path */
    const char *ctype; /* Content-Type */
    const char *etag;  /* "\"<sha-256 prefix>\"", strong */
    size_t len;
    const char *text;  /* NUL-terminated, no NUL inside */
} console_file_t;

extern const console_file_t admin_console_files[]; /* sorted by name */
extern const size_t admin_console_files_count;

#endif
