/* jsonschema.h - evbus's JSON Schema (draft 2020-12) validator: the whole contract.
 *
 * Model: compile, then validate.  Schema documents are added to a registry,
 * which indexes their $id / $anchor / $dynamicAnchor identifiers.  js_compile()
 * turns one of them (or a fragment of one) into an immutable js_schema_t, with
 * every $ref resolved, every regex compiled and every property table built.
 * js_validate() then checks jansson values against it.
 *
 * Ownership
 *   - The registry owns everything it compiles; a js_schema_t lives until
 *     js_registry_free().  Documents added take their own jansson reference.
 *   - js_errors_t items are heap strings owned by the js_errors_t; release them
 *     with js_errors_clear().
 *
 * Threads
 *   - js_registry_new/add/add_file/compile/free: one thread at a time per
 *     registry (build the registry, then publish the compiled schemas).
 *   - js_validate: any number of threads at once on the same js_schema_t, as
 *     long as the registry is not modified meanwhile.  It mutates nothing
 *     shared: all scratch is on the caller's stack (plus a per-thread PCRE2
 *     match block, released at thread exit).  The instance must not be
 *     modified during the call.
 *
 * Dialect: draft 2020-12 (core, applicator, unevaluated, validation,
 * format-annotation, meta-data and content as annotations).  A metaschema's
 * $vocabulary can switch the applicator/validation/unevaluated vocabularies
 * off.  Numbers: 1 and 1.0 are equal, and an integral real is an "integer".
 * "format" asserts only with js_options_t.format_assert (see docs/validation.md
 * for the list).  Patterns are PCRE2 with UTF+UCP, compiled once.
 *
 * Errors: functions returning int give 0 / -1 and fill err (always
 * NUL-terminated, truncated to errlen) with where and why.
 */
#ifndef EVBUS_JSONSCHEMA_H
#define EVBUS_JSONSCHEMA_H

#include <jansson.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Loaded schema documents by URI; owns the compiled schemas. */
typedef struct js_registry js_registry_t;
/* A compiled, immutable schema, owned by its registry. */
typedef struct js_schema js_schema_t;

typedef struct js_options {
    /* non-zero: "format" is an assertion for the formats evbus knows */
    int format_assert;
    /* Called for a $ref / $schema URI (without fragment) no added document
     * has.  Return a NEW reference to the document, or NULL if unknown.
     * Called only from js_compile(), on the compiling thread. */
    json_t *(*resolve)(const char *uri, void *ud);
    void *resolve_ud;
} js_options_t;

typedef struct js_error {
    char *instance_path; /* JSON Pointer into the instance, "" = root */
    char *schema_path;   /* keyword location: "#/properties/a/type"; prefixed
                          * by the document URI when the keyword lives in
                          * another document than the validated schema */
    char *keyword;       /* "type", "required", ... */
    char *message;       /* human readable */
} js_error_t;

typedef struct js_errors {
    js_error_t *items;
    size_t count;
    size_t cap;
} js_errors_t;

/* NULL opts = defaults (no format assertion, no remote resolution).
 * Returns NULL only when out of memory. */
js_registry_t *js_registry_new(const js_options_t *opts);

/* Frees the registry, its documents and every js_schema_t it compiled. */
void js_registry_free(js_registry_t *reg);

/* Adds a document.  uri may be NULL: then the document's absolute $id names
 * it (no $id is an error).  When both are given, the document is known under
 * both.  Takes its own reference to doc.  Adding a URI twice is an error. */
int js_registry_add(js_registry_t *reg, const char *uri, json_t *doc, char *err, size_t errlen);

/* Loads a JSON file and adds it (uri as for js_registry_add; NULL and no $id
 * => "file://<absolute path>").  Syntax errors read "path:line:column: msg". */
int js_registry_add_file(js_registry_t *reg, const char *path, const char *uri, char *err,
                         size_t errlen);

/* Compiles (or returns the already compiled) schema at uri, which may carry a
 * "#/json/pointer" or "#anchor" fragment.  NULL + err on failure: unknown
 * document, unresolvable $ref, bad regex, bad keyword value, unknown required
 * vocabulary. */
const js_schema_t *js_compile(js_registry_t *reg, const char *uri, char *err, size_t errlen);

/* Returns 1 valid, 0 invalid.
 *   errs == NULL          fastest path: boolean answer, stops at first failure
 *   errs != NULL, all=0   appends the first error
 *   errs != NULL, all=1   appends every error (subschemas of anyOf/oneOf/not/
 *                         if report through their own keyword)
 * Errors are appended to errs (its previous content is kept).  Thread-safe.
 * Returns -1 only if an error could not be allocated (errs is then partial). */
int js_validate(const js_schema_t *s, const json_t *instance, js_errors_t *errs, int all);

/* Frees the items and zeroes the struct, which can then be reused. */
void js_errors_clear(js_errors_t *e);

/* Equality as JSON Schema defines it (1 == 1.0, objects unordered). */
int js_json_equal(const json_t *a, const json_t *b);

#ifdef __cplusplus
}
#endif
#endif
