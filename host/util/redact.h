/*
 * redact — masks secrets in text meant for people (logs, errors shown by
 * tools), so no call site has to remember to.
 *
 * What is masked, anywhere in the text, with "***":
 *  - the password of a URL's userinfo: scheme://user:PASSWORD@host
 *    (redis://:pw@…, postgres://u:pw@…); for redis:// and rediss://, a
 *    userinfo without ':' is itself the password (redis://PASSWORD@host)
 *    and is masked whole;
 *  - a libpq keyword value password=VALUE (or 'quoted value'), also as a
 *    URL query parameter;
 *  - a bearer token: "Bearer TOKEN".
 * Everything else is copied as it is.  It recognises forms, it does not
 * know secrets: a password written in free text is not found.
 *
 * Thread rules: pure functions, any thread.
 */
#ifndef EVBUS_UTIL_REDACT_H
#define EVBUS_UTIL_REDACT_H

#include <stddef.h>

/*
 * Copy the first `len` bytes of `in` into out (at most outlen bytes, NUL
 * included, truncated when longer) with the secrets masked.  Returns the
 * length written, without the NUL.
 */
size_t redact_secrets(const char *in, size_t len, char *out, size_t outlen);

#endif
