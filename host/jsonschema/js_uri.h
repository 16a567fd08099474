/* js_uri.h - internal URI helpers for the jsonschema compiler (RFC 3986). */
#ifndef EVBUS_JS_URI_H
#define EVBUS_JS_URI_H

/* ref resolved against base (which may be NULL or relative); malloc'd,
 * NULL when out of memory */
char *js_uri_resolve(const char *base, const char *ref);
/* 1 when s has a scheme */
int js_uri_is_absolute(const char *s);
/* decodes %XX escapes in place */
void js_uri_percent_decode(char *s);

#endif
