/*
 * fuzz_admin — the admin API's request-text parsers (host/admin/admin_parse.h):
 * the first input byte picks the parser, the rest is its input.
 *   0  path: percent-decoding, then matching against every real route
 *      pattern; a captured parameter must pass the parameter check
 *   1  cursor: base64url decoding into a bounded buffer, and the
 *      encode/decode round trip of the decoded bytes
 *   2  query values: integer within bounds, RFC 3339 time, word
 *   3  body: the nesting-depth pre-check against jansson's own verdict
 *      (anything jansson parses must get a depth no smaller than its
 *      real nesting: the check may not let deep bodies through)
 *   4  Content-Type
 * Unescaping is also checked against a reference decoder.
 */
#include <jansson.h>
#include <stdbool.h>

#include "admin/admin_parse.h"
#include "admin/api.h"
#include "fuzz_util.h"

static const admin_route_t *const tables[] = {admin_routes_core, admin_routes_dlq,
                                              admin_routes_data, admin_routes_ops};

static int hex(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static void fuzz_path(char *s)
{
    char *ref = strdup(s);
    if (!ref)
        abort();
    size_t w = 0;
    for (size_t i = 0; ref[i]; i++) {
        bool esc = ref[i] == '%' && ref[i + 1] && ref[i + 2] && hex(ref[i + 1]) >= 0 &&
                   hex(ref[i + 2]) >= 0 && (hex(ref[i + 1]) | hex(ref[i + 2]));
        if (esc) {
            ref[w++] = (char)(hex(ref[i + 1]) * 16 + hex(ref[i + 2]));
            i += 2;
        } else {
            ref[w++] = ref[i];
        }
    }
    ref[w] = '\0';
    size_t n = admin__unescape(s);
    if (n != w || strcmp(s, ref) != 0)
        fuzz_fail("unescape gives \"%s\" (%zu), reference \"%s\" (%zu)", s, n, ref, w);
    free(ref);
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
        for (const admin_route_t *rt = tables[t]; rt->pattern; rt++) {
            char params[ADMIN_MAX_PARAMS][129];
            size_t np = 99;
            if (!admin__path_match(rt->pattern, s, params, &np))
                continue;
            if (np > ADMIN_MAX_PARAMS)
                fuzz_fail("%zu params from %s", np, rt->pattern);
            for (size_t i = 0; i < np; i++)
                if (!admin__param_ok(params[i], strlen(params[i])))
                    fuzz_fail("param \"%s\" of %s fails the parameter check", params[i],
                              rt->pattern);
        }
    }
}

static void fuzz_cursor(const char *s, size_t n)
{
    unsigned char buf[512];
    long m = admin__b64u_decode(s, n, buf, sizeof buf - 1);
    if (m < -1 || m > (long)sizeof buf - 1)
        fuzz_fail("b64u_decode returned %ld", m);
    if (m < 0)
        return;
    char enc[700];
    admin__b64u_encode(buf, (size_t)m, enc);
    unsigned char back[512];
    long m2 = admin__b64u_decode(enc, strlen(enc), back, sizeof back);
    if (m2 != m || memcmp(buf, back, (size_t)m) != 0)
        fuzz_fail("base64url round trip changed %ld bytes into %ld", m, m2);
}

static void fuzz_query(const char *s)
{
    long v;
    if (admin__parse_long(s, -5, 1000, &v) == 0 && (v < -5 || v > 1000))
        fuzz_fail("parse_long accepted %ld out of bounds", v);
    int64_t ms;
    if (admin__parse_time(s, &ms) == 0 && ms <= 0)
        fuzz_fail("parse_time accepted %lld", (long long)ms);
    if (admin__word_ok(s, 64))
        for (const char *p = s; *p; p++)
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
                fuzz_fail("word_ok accepted byte %#x", (unsigned char)*p);
}

static int nesting(const json_t *j)
{
    int d = 0;
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) {
            int c = nesting(v);
            d = c > d ? c : d;
        }
        return d + 1;
    }
    if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            int c = nesting(v);
            d = c > d ? c : d;
        }
        return d + 1;
    }
    return 0;
}

static void fuzz_body(const char *s, size_t n)
{
    int depth = admin__json_depth(s, n);
    json_t *j = json_loadb(s, n, JSON_REJECT_DUPLICATES, NULL);
    if (j && nesting(j) > depth)
        fuzz_fail("depth check says %d, the body nests %d deep", depth, nesting(j));
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    char *s = fuzz_strndup(in, n);
    switch (data[0] % 5) {
    case 0: fuzz_path(s); break;
    case 1: fuzz_cursor(in, n); break;
    case 2: fuzz_query(s); break;
    case 3: fuzz_body(in, n); break;
    default: {
        bool json = admin__is_json_ctype(s);
        if (json && strncasecmp(s, "application/json", 16) != 0)
            fuzz_fail("\"%s\" taken for application/json", s);
        break;
    }
    }
    free(s);
    return 0;
}
