/* fastjson: the hot-path JSON parser.  It turns a byte range into exactly the
 * jansson tree json_loadb() would build from it, several times faster, so the
 * rest of the host (validator, plugins, foreign handlers) keeps consuming
 * json_t.  It is not a new JSON dialect: every input jansson rejects, it
 * rejects, with jansson's error report (code, text, position), and every tree
 * it builds compares equal (json_equal, and key order under
 * JSON_PRESERVE_ORDER) to jansson's.  It does not serialise. */
#ifndef EVBUS_FASTJSON_H
#define EVBUS_FASTJSON_H

#include <jansson.h>
#include <stddef.h>

/* Parse buf[0..len) (need not be NUL-terminated; never read past len).
 *
 * flags: the json_loadb() decoding flags with jansson's meaning:
 *   JSON_REJECT_DUPLICATES, JSON_DISABLE_EOF_CHECK, JSON_DECODE_ANY,
 *   JSON_DECODE_INT_AS_REAL, JSON_ALLOW_NUL.  Other bits are ignored.
 *   Semantics mirrored from jansson 2.14:
 *   - without JSON_DECODE_ANY the top level must be an object or an array;
 *   - a number with '.', 'e' or 'E' is a real, any other is an integer, and
 *     an integer outside json_int_t is an error ("too big integer") unless
 *     JSON_DECODE_INT_AS_REAL; a real that overflows a double is an error;
 *   - strings must be valid UTF-8 (no overlongs, surrogates or > U+10FFFF),
 *     \u escapes must pair surrogates, \u0000 needs JSON_ALLOW_NUL and is
 *     never allowed in an object key;
 *   - duplicate keys: the last value wins in the first key's position;
 *   - nesting: at most JSON_PARSER_MAX_DEPTH (2048) values deep, scalars
 *     included, as jansson counts;
 *   - anything but whitespace after the value is an error unless
 *     JSON_DISABLE_EOF_CHECK;
 *   - one raw NUL byte right after a number or true/false/null is skipped
 *     (jansson cannot push a NUL back into its stream, so "[1\0]" is [1]).
 *
 * Returns a new reference the caller owns (json_decref), or NULL.
 *
 * err may be NULL.  Otherwise it is always reset first (source "<buffer>",
 * line/column -1, empty text).  On success position is the number of bytes
 * consumed (the value's end with JSON_DISABLE_EOF_CHECK, len otherwise);
 * jansson counts one less per skipped NUL, this does not.  On failure err
 * is exactly what json_loadb(buf, len, flags, err) reports: the same error
 * code (json_error_code), text, line, column and position, because the
 * report is jansson's own: a rejection costs one json_loadb() of the same
 * bytes on top of the attempt here (rejections are the cold path; accepted
 * input never pays it, nor a call with err NULL).  The one exception would
 * be a fastjson bug, an input jansson accepts and fastjson rejects: err
 * then holds fastjson's own report.
 *
 * Thread safety: reentrant, no global state besides a C locale created once
 * (pthread_once) to read reals independently of setlocale(). */
json_t *fj_parse(const char *buf, size_t len, size_t flags, json_error_t *err);

#endif
