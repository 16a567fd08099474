/* js_meta.c - evbus's own schema for the URI of the draft 2020-12 metaschema.
 *
 * The registry uses it for https://json-schema.org/draft/2020-12/schema when
 * no document was added under that URI and the resolve callback has none, so
 * "$ref" to the metaschema works offline.  It is written for evbus from the
 * keyword definitions of the 2020-12 core and validation specifications, as
 * one document: it constrains the value of every 2020-12 keyword (boolean
 * schemas allowed everywhere a schema is).  It is not the official document
 * set: it has no per-vocabulary sub-documents and no draft-07 compatibility
 * keywords.  Subschemas go through "$dynamicRef": "#meta", so a metaschema
 * that extends it with its own "$dynamicAnchor": "meta" is honoured.
 */
#include "jsonschema/js_internal.h"

static const char meta_2020_text[] =
    "{"
    "\"$schema\":\"https://json-schema.org/draft/2020-12/schema\","
    "\"$id\":\"https://json-schema.org/draft/2020-12/schema\","
    "\"$dynamicAnchor\":\"meta\","
    "\"$vocabulary\":{"
    "\"https://json-schema.org/draft/2020-12/vocab/core\":true,"
    "\"https://json-schema.org/draft/2020-12/vocab/applicator\":true,"
    "\"https://json-schema.org/draft/2020-12/vocab/unevaluated\":true,"
    "\"https://json-schema.org/draft/2020-12/vocab/validation\":true,"
    "\"https://json-schema.org/draft/2020-12/vocab/meta-data\":true,"
    "\"https://json-schema.org/draft/2020-12/vocab/format-annotation\":true,"
    "\"https://json-schema.org/draft/2020-12/vocab/content\":true},"
    "\"title\":\"draft 2020-12 schema (evbus offline equivalent)\","
    "\"type\":[\"object\",\"boolean\"],"
    "\"properties\":{"
    /* core */
    "\"$id\":{\"$ref\":\"#/$defs/uriReference\",\"pattern\":\"^[^#]*#?$\"},"
    "\"$schema\":{\"type\":\"string\",\"format\":\"uri\"},"
    "\"$ref\":{\"$ref\":\"#/$defs/uriReference\"},"
    "\"$dynamicRef\":{\"$ref\":\"#/$defs/uriReference\"},"
    "\"$anchor\":{\"$ref\":\"#/$defs/anchorName\"},"
    "\"$dynamicAnchor\":{\"$ref\":\"#/$defs/anchorName\"},"
    "\"$vocabulary\":{\"type\":\"object\",\"propertyNames\":{\"format\":\"uri\"},"
    "\"additionalProperties\":{\"type\":\"boolean\"}},"
    "\"$comment\":{\"type\":\"string\"},"
    "\"$defs\":{\"$ref\":\"#/$defs/schemaMap\"},"
    /* applicator */
    "\"prefixItems\":{\"$ref\":\"#/$defs/schemaArray\"},"
    "\"items\":{\"$dynamicRef\":\"#meta\"},"
    "\"contains\":{\"$dynamicRef\":\"#meta\"},"
    "\"additionalProperties\":{\"$dynamicRef\":\"#meta\"},"
    "\"properties\":{\"$ref\":\"#/$defs/schemaMap\"},"
    "\"patternProperties\":{\"$ref\":\"#/$defs/schemaMap\","
    "\"propertyNames\":{\"format\":\"regex\"}},"
    "\"dependentSchemas\":{\"$ref\":\"#/$defs/schemaMap\"},"
    "\"propertyNames\":{\"$dynamicRef\":\"#meta\"},"
    "\"if\":{\"$dynamicRef\":\"#meta\"},"
    "\"then\":{\"$dynamicRef\":\"#meta\"},"
    "\"else\":{\"$dynamicRef\":\"#meta\"},"
    "\"allOf\":{\"$ref\":\"#/$defs/schemaArray\"},"
    "\"anyOf\":{\"$ref\":\"#/$defs/schemaArray\"},"
    "\"oneOf\":{\"$ref\":\"#/$defs/schemaArray\"},"
    "\"not\":{\"$dynamicRef\":\"#meta\"},"
    /* unevaluated */
    "\"unevaluatedItems\":{\"$dynamicRef\":\"#meta\"},"
    "\"unevaluatedProperties\":{\"$dynamicRef\":\"#meta\"},"
    /* validation */
    "\"type\":{\"anyOf\":[{\"$ref\":\"#/$defs/simpleTypes\"},"
    "{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/simpleTypes\"},"
    "\"minItems\":1,\"uniqueItems\":true}]},"
    "\"const\":true,"
    "\"enum\":{\"type\":\"array\"},"
    "\"multipleOf\":{\"type\":\"number\",\"exclusiveMinimum\":0},"
    "\"maximum\":{\"type\":\"number\"},"
    "\"exclusiveMaximum\":{\"type\":\"number\"},"
    "\"minimum\":{\"type\":\"number\"},"
    "\"exclusiveMinimum\":{\"type\":\"number\"},"
    "\"maxLength\":{\"$ref\":\"#/$defs/nonNegativeInteger\"},"
    "\"minLength\":{\"$ref\":\"#/$defs/nonNegativeInteger\"},"
    "\"pattern\":{\"type\":\"string\",\"format\":\"regex\"},"
    "\"maxItems\":{\"$ref\":\"#/$defs/nonNegativeInteger\"},"
    "\"minItems\":{\"$ref\":\"#/$defs/nonNegativeInteger\"},"
    "\"uniqueItems\":{\"type\":\"boolean\"},"
    "\"maxContains\":{\"$ref\":\"#/$defs/nonNegativeInteger\"},"
    "\"minContains\":{\"$ref\":\"#/$defs/nonNegativeInteger\"},"
    "\"maxProperties\":{\"$ref\":\"#/$defs/nonNegativeInteger\"},"
    "\"minProperties\":{\"$ref\":\"#/$defs/nonNegativeInteger\"},"
    "\"required\":{\"$ref\":\"#/$defs/stringArray\"},"
    "\"dependentRequired\":{\"type\":\"object\","
    "\"additionalProperties\":{\"$ref\":\"#/$defs/stringArray\"}},"
    /* format-annotation, content, meta-data */
    "\"format\":{\"type\":\"string\"},"
    "\"contentEncoding\":{\"type\":\"string\"},"
    "\"contentMediaType\":{\"type\":\"string\"},"
    "\"contentSchema\":{\"$dynamicRef\":\"#meta\"},"
    "\"title\":{\"type\":\"string\"},"
    "\"description\":{\"type\":\"string\"},"
    "\"default\":true,"
    "\"deprecated\":{\"type\":\"boolean\"},"
    "\"readOnly\":{\"type\":\"boolean\"},"
    "\"writeOnly\":{\"type\":\"boolean\"},"
    "\"examples\":{\"type\":\"array\"}"
    "},"
    "\"$defs\":{"
    "\"schemaArray\":{\"type\":\"array\",\"minItems\":1,\"items\":{\"$dynamicRef\":\"#meta\"}},"
    "\"schemaMap\":{\"type\":\"object\",\"additionalProperties\":{\"$dynamicRef\":\"#meta\"}},"
    "\"nonNegativeInteger\":{\"type\":\"integer\",\"minimum\":0},"
    "\"simpleTypes\":{\"enum\":[\"array\",\"boolean\",\"integer\",\"null\",\"number\","
    "\"object\",\"string\"]},"
    "\"stringArray\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"uniqueItems\":true},"
    /* core 8.2.2: a letter or '_', then letters, digits, '-', '_', '.' */
    "\"anchorName\":{\"type\":\"string\",\"pattern\":\"^[A-Za-z_][-A-Za-z0-9._]*$\"},"
    "\"uriReference\":{\"type\":\"string\",\"format\":\"uri-reference\"}"
    "}"
    "}";

json_t *js_meta_2020_doc(void)
{
    return json_loads(meta_2020_text, 0, NULL);
}
