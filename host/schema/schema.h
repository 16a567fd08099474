/*
 * schema — the catalog of event schemas the host validates against.
 *
 * A schema directory (EVBUS_SCHEMA_DIR, or `schemas.dir` in the config) holds
 *   cloudevents/1.0.json      the envelope every event must satisfy
 *   <type>/<N>.json           the `data` schema of event type <type>, version N
 *   <type>/examples/...       sample payloads (ignored by the catalog)
 * Versions of a type must be 1..N without gaps, because upcasters chain
 * vN -> vN+1.  A schema's $id, when present, must end in "/<type>/<N>.json";
 * documents are registered under their $id (or
 * https://schemas.evbus.dev/<type>/<N>.json without one), so schemas may $ref
 * each other.
 *
 * An event names the version of its data with the CloudEvents `dataschema`
 * attribute (a URI ending in "/<type>/<N>.json") or the `schemaversion`
 * extension (integer, or decimal string); with neither, the latest version
 * applies.  See docs/schemas.md.
 *
 * This module does not upcast payloads, decide what happens to invalid
 * events (schema mode, dead-lettering) or watch the directory for changes:
 * the caller loads a new catalog and swaps it whole on reload.
 *
 * Threads: schema_catalog_load/free and schema_load_file on any thread.  A
 * loaded catalog is immutable: every other catalog function may run on any
 * number of threads at once.  A schema_stream_t belongs to one thread.
 *
 * Errors: load functions append to a cfg_errors_t (host/config/config.h).  Only
 * its layout is used: each message is a malloc'd string appended to `msgs`,
 * which grows with realloc; release it with cfg_errors_free().
 */
#ifndef EVBUS_SCHEMA_H
#define EVBUS_SCHEMA_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"
#include "jsonschema/jsonschema.h"

/* Prefix of the canonical schema URIs: SCHEMA_URI_BASE "/<type>/<N>.json". */
#define SCHEMA_URI_BASE "https://schemas.evbus.dev"

/* js_error_t keywords for the checks this module makes itself. */
#define SCHEMA_KW_UNKNOWN_TYPE "unknownType"       /* no schema for the type */
#define SCHEMA_KW_UNKNOWN_VERSION "unknownVersion" /* type known, version not */
#define SCHEMA_KW_VERSION "schemaVersion"          /* malformed/contradicting claim */
#define SCHEMA_KW_PARSE "parse"                    /* schema_stream: bad JSON line */

typedef struct schema_catalog schema_catalog_t; /* immutable after load */

/*
 * Loads DIR: cloudevents/1.0.json and every <type>/<N>.json, then compiles
 * them all.  format_assert makes "format" an assertion (js_options_t).
 * Returns a catalog the caller frees with schema_catalog_free(), or NULL
 * after appending every problem found to errs: "file:line:col: message" for
 * JSON syntax errors, "path: message" for anything else (bad names, gaps in
 * versions, $id mismatches, compile errors, missing envelope).
 */
schema_catalog_t *schema_catalog_load(const char *dir, int format_assert, cfg_errors_t *errs);

/* NULL is fine. */
void schema_catalog_free(schema_catalog_t *c);

/* The compiled envelope schema (cloudevents/1.0.json); never NULL. */
const js_schema_t *schema_catalog_envelope(const schema_catalog_t *c);

/* Highest version of type, or 0 when the catalog has no schema for it. */
int schema_catalog_latest(const schema_catalog_t *c, const char *type);

/* The schema of type at version (1..latest), or NULL when unknown. */
const js_schema_t *schema_catalog_get(const schema_catalog_t *c, const char *type, int version);

/* Both answers with one lookup of type, for the dispatcher's every event:
 * returns schema_catalog_latest(c, type) and sets *schema to
 * schema_catalog_get(c, type, version), or to the latest version's schema
 * when version is 0. */
int schema_catalog_find(const schema_catalog_t *c, const char *type, int version,
                        const js_schema_t **schema);

/* Number of types, and the i-th type name in lexical order (NULL past the
 * end).  The name lives as long as the catalog. */
size_t schema_catalog_count(const schema_catalog_t *c);
const char *schema_catalog_type_at(const schema_catalog_t *c, size_t i);

/*
 * The version an event envelope claims for its data:
 *   N  from `schemaversion` (integer >= 1, or a decimal string without
 *      leading zeros) and/or `dataschema` (a string ending in
 *      "/<type>/<N>.json" whose <type> equals the event's `type`);
 *   0  when the envelope has neither (the latest version applies);
 *  -1  when either is present but malformed, or both are present and differ.
 */
int schema_event_version(const json_t *envelope);

/* The same from the members themselves (NULL when absent) and the event's
 * type, for a caller that has them already: the dispatcher reads them in
 * its one walk over the envelope. */
int schema_claimed_version(const json_t *schemaversion, const json_t *dataschema,
                           const char *type);

/*
 * Validates a parsed event: the envelope, then `data` (null when absent)
 * against its type's schema at the claimed version.  Returns
 *   1  valid;
 *   0  invalid: the envelope is invalid, the version claim is malformed
 *      (keyword SCHEMA_KW_VERSION) or data does not match;
 *  -1  the envelope is valid but the catalog has no schema for its type
 *      (SCHEMA_KW_UNKNOWN_TYPE) or not that version (SCHEMA_KW_UNKNOWN_VERSION).
 * errs and all are as for js_validate(): errs may be NULL (fastest).  Payload
 * errors have instance paths prefixed with "/data"; every schema path is
 * prefixed with its document's URI.  When the envelope is invalid, data is
 * still checked if all is set and the type and version resolve.
 */
int schema_catalog_validate_event(const schema_catalog_t *c, const json_t *envelope,
                                  js_errors_t *errs, int all);

/*
 * Loads one standalone schema file (for `evbusctl validate --schema`).  It is
 * registered under its $id, or file://<absolute path> without one.  $refs to
 * other documents are followed to files: a file:// URI (what a relative $ref
 * of a schema without $id becomes) is that file, and
 * SCHEMA_URI_BASE/<type>/<N>.json is <type>/<N>.json in the tree the file
 * itself sits in (<root>/<type>/<N>.json), as the daemon's catalog resolves
 * it.  The registry resolves only during this call.  Returns the registry
 * that owns *out (free it with js_registry_free()), or NULL after appending
 * messages to errs.
 */
js_registry_t *schema_load_file(const char *path, int format_assert, const js_schema_t **out,
                                cfg_errors_t *errs);

/*
 * Validation of NDJSON streams, the engine of `evbusctl validate`.  One
 * stream object runs over any number of inputs and keeps the totals; its
 * line buffer and error list are reused from line to line, so the cost per
 * line is parsing plus validation.
 *
 * Each non-blank line is one instance: a whole event (catalog mode) or a
 * value checked against one schema (schema mode).  Output per instance:
 *   text: nothing when valid; one "NAME:LINE: INSTANCE_PATH: MESSAGE" line
 *         per error when invalid (the root path prints as "(root)");
 *   json: {"line":n,"file":NAME,"valid":bool,"errors":[{"instancePath",
 *         "schemaPath","keyword","message"}]} per instance.
 * A line that is not JSON is invalid with keyword SCHEMA_KW_PARSE; in catalog
 * mode an event of unknown type or version is invalid too.
 */
typedef struct schema_stream {
    /* public, read-only after init */
    const schema_catalog_t *catalog; /* catalog mode when non-NULL */
    const js_schema_t *schema;       /* schema mode otherwise */
    int json;
    FILE *out;
    /* public, read: running totals */
    size_t valid;
    size_t invalid;
    /* public, optional: called every 65536 lines and at the end of a run
     * with the bytes read so far in this run (progress bars) */
    void (*progress)(void *ud, uint64_t bytes);
    void *progress_ud;
    /* private */
    char *line;
    size_t line_cap;
    js_errors_t errs;
} schema_stream_t;

/* Exactly one of catalog and schema is non-NULL. */
void schema_stream_init(schema_stream_t *st, const schema_catalog_t *catalog,
                        const js_schema_t *schema, int json, FILE *out);

/* Validates every line of in, reporting under name.  Returns 0, or -1 with
 * err filled when reading fails (totals then cover the lines read). */
int schema_stream_run(schema_stream_t *st, FILE *in, const char *name, char *err, size_t errlen);

/* Writes the totals: "N valid, M invalid" or {"summary":{"valid":N,"invalid":M}}. */
void schema_stream_summary(const schema_stream_t *st);

/* Frees the scratch buffers; the totals stay readable. */
void schema_stream_release(schema_stream_t *st);

#endif /* EVBUS_SCHEMA_H */
