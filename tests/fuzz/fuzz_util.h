/*
 * fuzz_util — what several fuzz targets share: splitting one input into
 * parts, and a loud failure for differential checks (libFuzzer stops on
 * abort() and keeps the input).  Header-only: each target is one file.
 */
#ifndef EVBUS_FUZZ_UTIL_H
#define EVBUS_FUZZ_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Inputs made of two documents put this line between them; a readable
 * separator keeps the seed files editable by hand. */
#define FUZZ_SEP "\n----\n"

/* Splits data at the first FUZZ_SEP: a = before, b = after (b NULL when
 * there is no separator). */
static inline void fuzz_split(const uint8_t *data, size_t size, const char **a, size_t *alen,
                              const char **b, size_t *blen)
{
    const char *s = (const char *)data;
    const char *sep = size ? memmem(s, size, FUZZ_SEP, sizeof FUZZ_SEP - 1) : NULL;
    *a = s;
    *alen = sep ? (size_t)(sep - s) : size;
    *b = sep ? sep + sizeof FUZZ_SEP - 1 : NULL;
    *blen = sep ? size - *alen - (sizeof FUZZ_SEP - 1) : 0;
}

/* A NUL-terminated heap copy of n bytes (the parsers under test that take C
 * strings see exactly the bytes; an embedded NUL simply ends the string). */
static inline char *fuzz_strndup(const char *s, size_t n)
{
    char *r = malloc(n + 1);
    if (!r)
        abort();
    memcpy(r, s, n);
    r[n] = '\0';
    return r;
}

/* A differential or invariant check failed: say what, then crash so
 * libFuzzer saves the input. */
__attribute__((format(printf, 1, 2), noreturn)) static inline void fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz check failed: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

#endif
