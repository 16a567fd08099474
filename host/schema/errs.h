/*
 * errs.h — private to host/schema: appending this module's own findings to a
 * js_errors_t.  Not part of the contract (schema.h is).
 */
#ifndef EVBUS_SCHEMA_ERRS_H
#define EVBUS_SCHEMA_ERRS_H

#include "jsonschema/jsonschema.h"

/* Appends one error the way the validator does (heap strings, items grown
 * with realloc), so js_errors_clear() releases it.  errs may be NULL; out of
 * memory drops the error. */
void schema__err_push(js_errors_t *errs, const char *ipath, const char *spath, const char *kw,
                      const char *msg);

#endif
