/*
 * strcopy — copy a C string into a fixed buffer, truncating.
 *
 * snprintf(dst, len, "%s", src) does the same through the printf engine,
 * several hundred instructions per call; on the dispatch path (stream ids,
 * reasons, event ids, once or more per event) that showed in profiles.
 * Header-only, any thread.
 */
#ifndef EVBUS_UTIL_STRCOPY_H
#define EVBUS_UTIL_STRCOPY_H

#include <stddef.h>
#include <string.h>

/* Copies src (NULL: "") into dst[0..len), NUL-terminated, cut at len - 1
 * bytes.  Returns the bytes copied (without the NUL).  len 0 writes
 * nothing. */
static inline size_t str_copy(char *dst, size_t len, const char *src)
{
    if (!len)
        return 0;
    if (!src)
        src = "";
    /* (a loop, not strnlen: the bound may exceed a shorter source array,
     * which the NUL ends first) */
    size_t n = 0;
    while (n + 1 < len && src[n])
        n++;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return n;
}

#endif
