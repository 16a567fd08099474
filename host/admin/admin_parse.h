/*
 * admin_parse — the admin server's pure parsers of request text: path
 * patterns and their {params}, percent-decoding, cursor base64url, query
 * values, the body's nesting depth.  They touch no connection, no state and
 * no allocation, so tests/fuzz/fuzz_admin.c can drive them with raw bytes;
 * admin.c wraps them with its replies.  Private to host/admin/.
 *
 * Thread rules: every function is pure and may run on any thread.
 */
#ifndef EVBUS_ADMIN_PARSE_H
#define EVBUS_ADMIN_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A path parameter's shape (s[0..n)): ids, instance names, job ids. */
bool admin__param_ok(const char *s, size_t n);

/* Does path match pattern ("/api/v1/dlq/{id}")?  Captures each {param} into
 * out[i] (at most ADMIN_MAX_PARAMS, NUL-terminated) and their count in *np. */
bool admin__path_match(const char *pattern, const char *path, char out[][129], size_t *np);

/* Percent-decodes s in place, except "%00" which stays encoded (a decoded
 * NUL would cut the C string).  Returns the new length. */
size_t admin__unescape(char *s);

/* base64url without padding of in[0..n) into out (room for 4 * ceil(n / 3)
 * + 1 bytes), NUL-terminated. */
void admin__b64u_encode(const unsigned char *in, size_t n, char *out);

/* Decodes in[0..n) into out[0..cap); the byte count, or -1 on a character
 * outside the alphabet, an impossible length or too little room. */
long admin__b64u_decode(const char *in, size_t n, unsigned char *out, size_t cap);

/* Whether a Content-Type is application/json (parameters after ';' allowed). */
bool admin__is_json_ctype(const char *ct);

/* The deepest nesting of [ and { in body[0..len), brackets inside strings
 * not counted.  Not a JSON check: jansson parses afterwards. */
int admin__json_depth(const char *body, size_t len);

/* A decimal integer within [min, max]: 0 with *out, or -1. */
int admin__parse_long(const char *v, long min, long max, long *out);

/* An RFC 3339 date-time after the epoch: 0 with *ms (Unix ms), or -1. */
int admin__parse_time(const char *v, int64_t *ms);

/* 1 to max printable ASCII characters without spaces. */
bool admin__word_ok(const char *v, size_t max);

#endif
