/* js_internal.h - structures shared by the jsonschema compiler and validator.
 *
 * Not part of the contract (that is jsonschema.h).  A compiled node is a flat
 * record of the keywords a schema object uses, with every reference already
 * pointing at its compiled target, so validation never looks anything up by
 * name except instance keys in precomputed property tables.
 */
#ifndef EVBUS_JS_INTERNAL_H
#define EVBUS_JS_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>

#include "jsonschema/jsonschema.h"

/* instance type bits; an integral number has both JS_T_NUMBER and JS_T_INTEGER */
enum {
    JS_T_NULL = 1,
    JS_T_BOOLEAN = 2,
    JS_T_OBJECT = 4,
    JS_T_ARRAY = 8,
    JS_T_NUMBER = 16,
    JS_T_STRING = 32,
    JS_T_INTEGER = 64,
};

/* vocabularies a metaschema can switch off */
enum {
    JS_V_APPLICATOR = 1,
    JS_V_VALIDATION = 2,
    JS_V_UNEVALUATED = 4,
    JS_V_FORMAT = 8,
    JS_V_ALL = 15,
};

typedef struct js_node js_node_t;

/* A number kept exactly when it is integral and fits in 64 bits. */
typedef struct js_num {
    int is_int;
    long long i;
    double d;
} js_num_t;

/* Run-time view of a schema resource, for $dynamicRef: the dynamic anchors it
 * defines, each already compiled. */
typedef struct js_resource {
    const char *uri;
    size_t n_dyn;
    const char **dyn_names;
    js_node_t **dyn_nodes;
} js_resource_t;

typedef struct js_prop {
    const char *name;
    size_t len;
    uint32_t hash;
    int required_idx; /* index in the node's "required" list, -1 if not required */
    js_node_t *schema;
} js_prop_t;

typedef struct js_pattern_prop {
    pcre2_code *re;
    js_node_t *schema;
} js_pattern_prop_t;

typedef struct js_dep_required {
    const char *name;
    size_t len;
    size_t n;
    const char **names;
    size_t *lens;
} js_dep_required_t;

typedef struct js_dep_schema {
    const char *name;
    size_t len;
    js_node_t *schema;
} js_dep_schema_t;

/* returns 1 when s (len bytes, UTF-8) conforms to the format */
typedef int (*js_format_fn)(const char *s, size_t len);

enum { JS_K_TRUE, JS_K_FALSE, JS_K_OBJECT };

/* flags: which groups of keywords a node has, so validation skips whole
 * sections with one test */
enum {
    JS_F_OBJECT_ITER = 1, /* properties/patternProperties/additional/propertyNames */
    JS_F_OBJECT_OTHER = 2,
    JS_F_ARRAY = 4,
    JS_F_STRING = 8,
    JS_F_NUMBER = 16,
    JS_F_APPLICATORS = 32,
    JS_F_UNEVALUATED = 64,
};

struct js_node {
    int kind;
    unsigned flags;
    const char *doc_uri; /* owned by the registry's document record */
    const char *ptr;     /* JSON pointer of this schema inside that document */
    js_resource_t *owner;

    unsigned types; /* 0 = no "type" keyword */
    const json_t *const_value;
    const json_t *enum_values;

    /* $ref / $dynamicRef */
    js_node_t *ref;
    js_node_t *dynref;            /* static target */
    const char *dynref_anchor;    /* non-NULL: resolve dynamically by this name */

    /* applicators */
    size_t n_all, n_any, n_one;
    js_node_t **all_of, **any_of, **one_of;
    js_node_t *not_, *if_, *then_, *else_;

    /* object */
    size_t n_props;
    js_prop_t *props;
    uint32_t prop_mask;
    js_prop_t **prop_slots;
    size_t n_pattern_props;
    js_pattern_prop_t *pattern_props;
    js_node_t *additional_props;
    js_node_t *property_names;
    size_t n_required;
    const char **required;
    size_t *required_lens;
    /* all required names are declared properties (at most 64): the
     * property walk proves presence with a bit mask, no hash lookups */
    int required_by_mask;
    uint64_t required_mask;
    size_t n_dep_required;
    js_dep_required_t *dep_required;
    size_t n_dep_schemas;
    js_dep_schema_t *dep_schemas;
    long long min_props, max_props; /* -1 = absent */

    /* array */
    size_t n_prefix;
    js_node_t **prefix_items;
    js_node_t *items;
    js_node_t *contains;
    long long min_contains, max_contains; /* min defaults to 1; max -1 */
    long long min_items, max_items;
    int unique_items;

    /* string */
    long long min_len, max_len;
    pcre2_code *pattern;
    const char *pattern_src;
    js_format_fn format;
    const char *format_name;

    /* number */
    int has_min, has_max, has_xmin, has_xmax, has_mult;
    js_num_t min, max, xmin, xmax, mult;

    js_node_t *unevaluated_props;
    js_node_t *unevaluated_items;
};

struct js_schema {
    js_node_t *root;
    const char *doc_uri;
};

js_num_t js_num_of(const json_t *v);
int js_num_cmp(js_num_t a, js_num_t b);

/* the format checker for name, or NULL when evbus does not know it */
js_format_fn js_format_lookup(const char *name);

/* 1 when s (n octets of UTF-8) is a host name: LDH labels, where a label with
 * "--" in positions 3-4 must be an IDNA2008 A-label whose U-label passes the
 * RFC 5891/5892/5893 rules js_idna.c lists.  unicode != 0 ("idn-hostname")
 * also accepts U-labels and the U+3002, U+FF0E, U+FF61 separators.
 * Thread-safe. */
int js_idna_hostname_ok(const char *s, size_t n, int unicode);

/* This thread's PCRE2 match block (one capture pair), freed at thread exit;
 * NULL when out of memory. */
pcre2_match_data *js_match_data(void);

/* A new reference to evbus's own equivalent of the draft 2020-12 metaschema
 * (js_meta.c), or NULL when out of memory. */
json_t *js_meta_2020_doc(void);

/* ECMA-262 pattern -> PCRE2 pattern (malloc'd, NULL when out of memory) */
char *js_regex_translate(const char *src, size_t len, size_t *out_len);

/* PCRE2 options for schema patterns and the "regex" format */
#define JS_PCRE2_OPTIONS (PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY)

#endif
