/* test_fastjson.c: fj_parse must build what json_loadb builds.
 *
 * jansson is the oracle: for every input below both parsers run and must
 * agree on success or failure, on the value (json_equal), on key order and
 * number spelling (json_dumps with JSON_PRESERVE_ORDER) and on the position
 * reported after a success.  Inputs are copied into buffers of their exact
 * size, without a terminating NUL, so ASan catches any read past len.  A few
 * behaviours are also asserted directly, so the suite would notice the oracle
 * and fastjson being wrong the same way. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fastjson/fastjson.h"

#define FJT_ANY JSON_DECODE_ANY

static const size_t fjt_flag_sets[] = {
    0,
    FJT_ANY,
    FJT_ANY | JSON_DISABLE_EOF_CHECK,
    FJT_ANY | JSON_ALLOW_NUL,
    FJT_ANY | JSON_DECODE_INT_AS_REAL,
    FJT_ANY | JSON_REJECT_DUPLICATES,
    JSON_REJECT_DUPLICATES | JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY |
        JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL,
};
#define FJT_NFLAG_SETS (sizeof fjt_flag_sets / sizeof fjt_flag_sets[0])

/* C-escaped, truncated rendering of an input for failure messages. */
static const char *fjt_render(const char *buf, size_t len) {
    static char out[700];
    size_t o = 0;
    for (size_t i = 0; i < len && o + 8 < sizeof out; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c >= 0x20 && c < 0x7F && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, sizeof out - o, "\\x%02x", c);
    }
    out[o] = '\0';
    return out;
}

static char *fjt_dump(const json_t *v) {
    return json_dumps(v, JSON_ENCODE_ANY | JSON_PRESERVE_ORDER | JSON_COMPACT);
}

/* NULL when both parsers agree on buf[0..len) under flags, else why not
 * (static storage). */
static const char *fjt_disagreement(const char *buf, size_t len, size_t flags) {
    static char why[400];
    char *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    memcpy(copy, buf, len);
    json_error_t ej, ef;
    json_t *j = json_loadb(copy, len, flags, &ej);
    json_t *f = fj_parse(copy, len, flags, &ef);
    const char *res = NULL;
    if (!j != !f) {
        snprintf(why, sizeof why, "jansson: %s / fastjson: %s", j ? "accepted" : ej.text,
                 f ? "accepted" : ef.text);
        res = why;
    } else if (j) {
        char *dj = fjt_dump(j), *df = fjt_dump(f);
        if (!json_equal(j, f)) {
            snprintf(why, sizeof why, "values differ: %.150s vs %.150s", dj, df);
            res = why;
        } else if (!dj || !df || strcmp(dj, df) != 0) {
            snprintf(why, sizeof why, "dumps differ: %.150s vs %.150s", dj, df);
            res = why;
        } else if (ej.position != ef.position && !memchr(buf, '\0', len)) {
            /* jansson undercounts by one per NUL it skips (see fastjson.h). */
            snprintf(why, sizeof why, "end position %d vs %d", ej.position, ef.position);
            res = why;
        }
        free(dj);
        free(df);
    } else if (json_error_code(&ej) != json_error_code(&ef) || strcmp(ej.text, ef.text) != 0 ||
               ej.line != ef.line || ej.column != ef.column || ej.position != ef.position ||
               strcmp(ej.source, ef.source) != 0) {
        /* fastjson.h: a rejection is reported exactly as jansson reports it */
        snprintf(why, sizeof why, "error reports differ: jansson code %d '%s' %d:%d@%d, "
                 "fastjson code %d '%s' %d:%d@%d", (int)json_error_code(&ej), ej.text, ej.line,
                 ej.column, ej.position, (int)json_error_code(&ef), ef.text, ef.line, ef.column,
                 ef.position);
        res = why;
    }
    json_decref(j);
    json_decref(f);
    free(copy);
    return res;
}

static void fjt_assert_agree(const char *buf, size_t len, size_t flags) {
    const char *why = fjt_disagreement(buf, len, flags);
    cr_assert_null(why, "flags 0x%zx, input '%s': %s", flags, fjt_render(buf, len), why);
}

static void fjt_assert_agree_all_flags(const char *buf, size_t len) {
    for (size_t i = 0; i < FJT_NFLAG_SETS; i++)
        fjt_assert_agree(buf, len, fjt_flag_sets[i]);
}

/* ---- JSON-Schema-Test-Suite corpus --------------------------------- */

static char **fjt_files;
static size_t fjt_nfiles;

static int fjt_collect(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    size_t n = strlen(path);
    if (type == FTW_F && n > 5 && strcmp(path + n - 5, ".json") == 0) {
        fjt_files = realloc(fjt_files, (fjt_nfiles + 1) * sizeof *fjt_files);
        fjt_files[fjt_nfiles++] = strdup(path);
    }
    return 0;
}

static char *fjt_read_file(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

static void fjt_load_corpus(void) {
    if (!fjt_nfiles)
        nftw(FJ_TEST_JSTS_DIR, fjt_collect, 16, FTW_PHYS);
    cr_assert_geq(fjt_nfiles, 100, "JSON-Schema-Test-Suite not found under %s",
                  FJ_TEST_JSTS_DIR);
}

Test(fastjson, matches_jansson_on_every_jsts_file) {
    fjt_load_corpus();
    size_t accepted = 0;
    for (size_t i = 0; i < fjt_nfiles; i++) {
        size_t len;
        char *buf = fjt_read_file(fjt_files[i], &len);
        for (size_t k = 0; k < FJT_NFLAG_SETS; k++) {
            const char *why = fjt_disagreement(buf, len, fjt_flag_sets[k]);
            cr_assert_null(why, "%s flags 0x%zx: %s", fjt_files[i], fjt_flag_sets[k], why);
        }
        json_t *v = fj_parse(buf, len, JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, NULL);
        accepted += v != NULL;
        json_decref(v);
        free(buf);
    }
    cr_assert_eq(accepted, fjt_nfiles, "only %zu of %zu files parsed", accepted, fjt_nfiles);
}

static size_t fjt_values_checked;

/* Re-serialise every "data" and "schema" value, compact and indented. */
static void fjt_check_members(const json_t *v) {
    if (json_is_object(v)) {
        const char *key;
        json_t *member;
        json_object_foreach((json_t *)v, key, member) {
            if (strcmp(key, "data") == 0 || strcmp(key, "schema") == 0) {
                size_t dump_flags[] = {JSON_COMPACT, JSON_INDENT(2), JSON_ENSURE_ASCII};
                for (size_t d = 0; d < 3; d++) {
                    char *s = json_dumps(member, JSON_ENCODE_ANY | JSON_PRESERVE_ORDER |
                                                     dump_flags[d]);
                    cr_assert_not_null(s);
                    fjt_assert_agree(s, strlen(s), JSON_DECODE_ANY);
                    fjt_assert_agree(s, strlen(s), 0);
                    fjt_values_checked++;
                    free(s);
                }
            }
            fjt_check_members(member);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) fjt_check_members(e);
    }
}

Test(fastjson, matches_jansson_on_every_jsts_data_and_schema_value) {
    fjt_load_corpus();
    for (size_t i = 0; i < fjt_nfiles; i++) {
        json_error_t e;
        json_t *doc = json_load_file(fjt_files[i], JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &e);
        cr_assert_not_null(doc, "%s: %s", fjt_files[i], e.text);
        fjt_check_members(doc);
        json_decref(doc);
    }
    cr_assert_geq(fjt_values_checked, 3000, "only %zu values checked", fjt_values_checked);
}

/* ---- tricky inputs --------------------------------------------------- */

typedef struct {
    const char *s;
    size_t len;
} fjt_input;

#define S(lit) {lit, sizeof(lit) - 1}

static const fjt_input fjt_strings[] = {
    S("[\"a\\\"b\"]"), S("[\"\\\\\"]"), S("[\"\\/\"]"), S("[\"\\b\\f\\n\\r\\t\"]"),
    S("[\"\\u0041\"]"), S("[\"\\u00e9\\u00E9\"]"), S("[\"\\u20AC\"]"), S("[\"\\uFFFF\"]"),
    S("[\"\\uD83D\\uDE00\"]"), S("[\"\\ud83d\\ude00\"]"), S("[\"\\uDBFF\\uDFFF\"]"),
    S("[\"\\uD83D\"]"), S("[\"\\uD83Dx\"]"), S("[\"\\uD83D\\u0041\"]"), S("[\"\\uDE00\"]"),
    S("[\"\\uDE00\\uD83D\"]"), S("[\"\\uD83D\\uD83D\"]"), S("[\"\\uD83D\\u12\"]"),
    S("[\"\\uD83D\\uDE0G\"]"), S("[\"\\uD83D\\n\"]"), S("[\"\\uD83D\\"), S("[\"\\uD83D\\u"),
    S("[\"\\u12G4\"]"), S("[\"\\u123\"]"), S("[\"\\u12"), S("[\"\\x41\"]"), S("[\"\\a\"]"),
    S("[\"\\\"]"), S("[\"\\"), S("[\"\\ \"]"), S("[\"\\u0000\"]"), S("[\"a\\u0000b\"]"),
    S("{\"a\\u0000b\":1}"), S("{\"\\u0000\":1}"), S("[\"a\x01" "b\"]"), S("[\"a\nb\"]"),
    S("[\"a\tb\"]"), S("[\"\x1f\"]"), S("[\"\x7f\"]"), S("[\"a\0b\"]"), S("{\"a\0\":1}"),
    S("[\"\xc3\xa9\"]"), S("[\"\xe2\x82\xac\"]"), S("[\"\xf0\x9f\x98\x80\"]"),
    S("[\"\xf4\x8f\xbf\xbf\"]"), S("[\"\xf4\x90\x80\x80\"]"), S("[\"\xc0\xaf\"]"),
    S("[\"\xc1\xbf\"]"), S("[\"\xc2\x80\"]"), S("[\"\xe0\x80\xaf\"]"), S("[\"\xe0\x9f\xbf\"]"),
    S("[\"\xe0\xa0\x80\"]"), S("[\"\xf0\x80\x80\xaf\"]"), S("[\"\xf0\x8f\xbf\xbf\"]"),
    S("[\"\xf0\x90\x80\x80\"]"), S("[\"\xed\xa0\x80\"]"), S("[\"\xed\xbf\xbf\"]"),
    S("[\"\xed\x9f\xbf\"]"), S("[\"\xee\x80\x80\"]"), S("[\"\x80\"]"), S("[\"\xbf\"]"),
    S("[\"\xc3\"]"), S("[\"\xc3\""), S("[\"\xc3"), S("[\"\xe2\x82\"]"), S("[\"\xe2\x82"),
    S("[\"\xf0\x9f\x98\"]"), S("[\"\xf5\x80\x80\x80\"]"), S("[\"\xf8\x88\x80\x80\x80\"]"),
    S("[\"\xff\"]"), S("[\"\xfe\"]"), S("[\"\xc3\x28\"]"), S("[\"\xe2\x28\xa1\"]"),
    S("{\"\xff\":1}"), S("{\"\xc3\xa9\":1}"), S("[\"abcdefghijklmnop\\nqrstuvwxyz\"]"),
    S("[\"abcdefg\xc3\xa9hijklmnop\"]"), S("[\"0123456789abcdef\"]"),
    S("[\"0123456\"]"), S("[\"01234567\"]"), S("[\"012345678\"]"), S("[\"abcdefgh\x01ijk\"]"),
    S("[\"abcdefghijklmno\\"), S("[\"abcdefghijklmno"), S("[\"abcdefghijklmno\xe2\x82\xac"),
    S("{\"abcdefghijklmnop\\u00e9qrstuvwxyz\":\"\\u00e9abcdefghijklmnopqrstuvwxyz\"}"),
    S("{\"k\\n\":{\"k\\t\":\"v\\u00e9\"},\"k\\n\":2}"), S("\"\\u00e9\""), S("\"abc\""),
};

static const fjt_input fjt_numbers[] = {
    S("[01]"), S("[-]"), S("[-a]"), S("[1.]"), S("[.5]"), S("[1e]"), S("[1e+]"), S("[1E-2]"),
    S("[1e5]"), S("[1.5e+3]"), S("[-0]"), S("[-0.0]"), S("[0]"), S("[-01]"), S("[00]"),
    S("[1.0]"), S("[9223372036854775807]"), S("[9223372036854775808]"),
    S("[-9223372036854775808]"), S("[-9223372036854775809]"),
    S("[12345678901234567890123]"), S("[-12345678901234567890123]"), S("[1E400]"),
    S("[-1E400]"), S("[1e-400]"), S("[4.9e-324]"), S("[2.2250738585072014e-308]"),
    S("[1.7976931348623157e308]"), S("[1.7976931348623159e308]"), S("[0.1]"),
    S("[123456789012345678]"), S("[1234567890123456789]"), S("[9999999999999999999]"),
    S("[+1]"), S("[1x]"), S("[1 2]"), S("[0x10]"), S("[Infinity]"), S("[NaN]"), S("[-Infinity]"),
    S("[1.5.3]"), S("[1e5e5]"), S("[--1]"), S("[1e05]"), S("[1.e5]"), S("[0.000001]"),
    S("[1" "00000000000000000000000000000000000000000000000000000000000000000000000.5]"),
    S("-"), S("1"), S("-0"), S("1."), S("1e"), S("1E+"), S("12abc"), S("1.5.3"), S("0 1"),
    S("01"), S("-01"), S("00"), S("01.5"), S("-0.5x"), S("0e1"), S("0.0e-0"),
    S("9223372036854775808"), S("1e400"), S("1\xff"), S("1\xc3\xa9"), S("-9223372036854775808 "),
};

static const fjt_input fjt_structure[] = {
    S(""), S(" "), S(" \t\r\n"), S("{}"), S("[]"), S(" {} "), S("\n[\n]\n"), S("{}x"),
    S("{} x"), S("[]]"), S("[1,]"), S("[,1]"), S("{,}"), S("{\"a\":1,}"), S("{\"a\"}"),
    S("{\"a\" 1}"), S("{\"a\":}"), S("{1:1}"), S("{\"a\":1 \"b\":2}"), S("["), S("{"), S("[1"),
    S("[1,"), S("{\"a\":1"), S("{\"a\""), S("{\"a\":"), S("{\"a\":1,"), S("{\"a"),
    S("{\"a\":1}{"), S("{\"a\":1}\0"), S("\0{}"), S("\xef\xbb\xbf{}"), S("[\xc3\xa9]"),
    S("{\"a\":1,\"a\":2}"), S("{\"a\":1,\"b\":2,\"a\":3}"), S("{\"a\":{\"x\":1},\"a\":[2]}"),
    S("{\"\":1}"), S("{\"\":1,\"\":2}"), S("[\f]"), S("[\v]"), S("/* */{}"), S("{}//"),
    S("{\"a\":[1,{\"b\":null}]}"), S("[true]"), S("[false]"), S("[null]"), S("[tru]"),
    S("[truex]"), S("[True]"), S("[nul]"), S("[nulll]"), S("[true1]"), S("[true,false,null]"),
    S("true"), S("null"), S("false"), S("true1"), S("truex"), S("tru"), S("n"),
    S("[1]xyz"), S("[1] xyz"), S("{\"a\":true} \xff"), S("\"x\"\"y\""), S("[][]"),
    S("{\"a\" : [ 1 , 2 ] ,\n\t\"b\" : { } }"), S("[\"a\",\n\"b\"\n,\"c\"]"),
    S("{\"a\":1}\n\n "), S("  [  ]  "), S("'a'"), S("['a']"), S("{a:1}"), S("[1;2]"),
    S("[\x80]"), S("\xff"), S("]"), S("}"), S(":"), S(","), S("[1\0]"), S("[1\0\0]"),
    S("[1 \0]"), S("[true\0,null\0]"), S("{\"a\":1.5\0}"), S("1\0"), S("1\0 x"),
    S("[\"a\"\0]"), S("[[]\0]"), S("[1e5\0]"), S("[-\0]"), S("[1.\0]"),
};

static void fjt_assert_table(const fjt_input *t, size_t n) {
    for (size_t i = 0; i < n; i++)
        fjt_assert_agree_all_flags(t[i].s, t[i].len);
}

Test(fastjson, agrees_with_jansson_on_tricky_strings_escapes_and_utf8) {
    fjt_assert_table(fjt_strings, sizeof fjt_strings / sizeof fjt_strings[0]);
}

Test(fastjson, agrees_with_jansson_on_tricky_numbers) {
    fjt_assert_table(fjt_numbers, sizeof fjt_numbers / sizeof fjt_numbers[0]);
}

Test(fastjson, agrees_with_jansson_on_structure_literals_and_trailing_bytes) {
    fjt_assert_table(fjt_structure, sizeof fjt_structure / sizeof fjt_structure[0]);
}

/* open^n + inner + close^n */
static char *fjt_nest(size_t n, const char *open, const char *inner, const char *close,
                      size_t *len) {
    size_t lo = strlen(open), li = strlen(inner), lc = strlen(close);
    char *s = malloc(n * (lo + lc) + li + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++, o += lo)
        memcpy(s + o, open, lo);
    memcpy(s + o, inner, li);
    o += li;
    for (size_t i = 0; i < n; i++, o += lc)
        memcpy(s + o, close, lc);
    *len = o;
    return s;
}

static void fjt_assert_nesting(size_t n, const char *open, const char *inner,
                               const char *close, int expect_ok) {
    size_t len;
    char *s = fjt_nest(n, open, inner, close, &len);
    fjt_assert_agree_all_flags(s, len);
    json_error_t e;
    json_t *v = fj_parse(s, len, 0, &e);
    cr_assert_eq(v != NULL, expect_ok, "depth %zu '%s%s%s': %s", n, open, inner, close, e.text);
    if (!v)
        cr_assert_eq(json_error_code(&e), json_error_stack_overflow);
    json_decref(v);
    free(s);
}

Test(fastjson, counts_depth_like_jansson_scalars_included) {
    fjt_assert_nesting(2048, "[", "", "]", 1);
    fjt_assert_nesting(2049, "[", "", "]", 0);
    fjt_assert_nesting(2047, "[", "1", "]", 1);
    fjt_assert_nesting(2048, "[", "1", "]", 0);
    fjt_assert_nesting(2048, "{\"a\":", "{}", "}", 0);
    fjt_assert_nesting(2047, "{\"a\":", "{}", "}", 1);
    fjt_assert_nesting(100000, "[", "", "]", 0);
}

/* ---- behaviours asserted directly ----------------------------------- */

static json_t *fjt_parse_ok(const char *s, size_t flags) {
    json_error_t e;
    json_t *v = fj_parse(s, strlen(s), flags, &e);
    cr_assert_not_null(v, "'%s': %s", s, e.text);
    fjt_assert_agree(s, strlen(s), flags);
    return v;
}

static void fjt_expect_error(const char *s, size_t flags, enum json_error_code code) {
    json_error_t e;
    json_t *v = fj_parse(s, strlen(s), flags, &e);
    cr_assert_null(v, "'%s' was accepted", s);
    cr_assert_eq(json_error_code(&e), code, "'%s': code %d, text '%s'", s,
                 (int)json_error_code(&e), e.text);
    fjt_assert_agree(s, strlen(s), flags);
}

Test(fastjson, keeps_keys_in_document_order_and_last_duplicate_value) {
    json_t *v = fjt_parse_ok("{\"z\":1,\"a\":2,\"m\":{\"y\":1,\"b\":2},\"z\":3}", 0);
    char *d = fjt_dump(v);
    cr_assert_str_eq(d, "{\"z\":3,\"a\":2,\"m\":{\"y\":1,\"b\":2}}");
    free(d);
    json_decref(v);
    fjt_expect_error("{\"z\":1,\"z\":3}", JSON_REJECT_DUPLICATES, json_error_duplicate_key);
}

/* fastjson finds a duplicate name when inserting it, after its value;
 * json_loadb right after reading the name.  A duplicate followed by a
 * missing ':' or a malformed value (or one holding a duplicate of its own)
 * must still report the first duplicate in the text, as event_parse
 * dead-letters on that code alone. */
Test(fastjson, duplicate_before_malformed_value_is_reported_first) {
    const size_t f = JSON_REJECT_DUPLICATES;
    fjt_expect_error("{\"a\":1,\"a\":[", f, json_error_duplicate_key);
    fjt_expect_error("{\"a\":1,\"a\"", f, json_error_duplicate_key);
    fjt_expect_error("{\"a\":1,\"a\" 2}", f, json_error_duplicate_key);
    fjt_expect_error("{\"a\":1,\"a\":{\"b\":tru}}", f, json_error_duplicate_key);
    fjt_expect_error("{\"x\":1,\"x\":{\"a\":1,\"a\":2}}", f, json_error_duplicate_key);
    fjt_expect_error("{\"x\":{\"a\":1,\"a\":2},\"x\":", f, json_error_duplicate_key);
    fjt_expect_error("{\"a\":1,\"b\":[", f, json_error_premature_end_of_input);
    json_decref(fjt_parse_ok("{\"a\":{\"a\":1},\"b\":{\"a\":2}}", f));
}

Test(fastjson, types_numbers_like_jansson) {
    json_t *v = fjt_parse_ok("[9223372036854775807,-9223372036854775808,-0,1.0,1e2,-0.0]", 0);
    cr_assert(json_is_integer(json_array_get(v, 0)));
    cr_assert_eq(json_integer_value(json_array_get(v, 0)), INT64_MAX);
    cr_assert_eq(json_integer_value(json_array_get(v, 1)), INT64_MIN);
    cr_assert(json_is_integer(json_array_get(v, 2)));
    cr_assert(json_is_real(json_array_get(v, 3)));
    cr_assert(json_is_real(json_array_get(v, 4)));
    cr_assert(signbit(json_real_value(json_array_get(v, 5))));
    json_decref(v);
    fjt_expect_error("[9223372036854775808]", 0, json_error_numeric_overflow);
    fjt_expect_error("[-9223372036854775809]", 0, json_error_numeric_overflow);
    fjt_expect_error("[1E400]", 0, json_error_numeric_overflow);
    v = fjt_parse_ok("[9223372036854775808]", JSON_DECODE_INT_AS_REAL);
    cr_assert(json_is_real(json_array_get(v, 0)));
    json_decref(v);
}

Test(fastjson, decodes_escapes_and_surrogate_pairs) {
    json_t *v = fjt_parse_ok("[\"\\u00e9\\uD83D\\uDE00\\n\\\"\"]", 0);
    cr_assert_str_eq(json_string_value(json_array_get(v, 0)), "\xc3\xa9\xf0\x9f\x98\x80\n\"");
    json_decref(v);
    fjt_expect_error("[\"\\uD83D\"]", 0, json_error_invalid_syntax);
    fjt_expect_error("[\"\xed\xa0\x80\"]", 0, json_error_invalid_utf8);
    fjt_expect_error("[\"\xc0\xaf\"]", 0, json_error_invalid_utf8);
}

Test(fastjson, rejects_nul_unless_allowed_and_always_in_keys) {
    fjt_expect_error("[\"a\\u0000b\"]", 0, json_error_null_character);
    json_t *v = fjt_parse_ok("[\"a\\u0000b\"]", JSON_ALLOW_NUL);
    cr_assert_eq(json_string_length(json_array_get(v, 0)), 3);
    cr_assert_eq(memcmp(json_string_value(json_array_get(v, 0)), "a\0b", 3), 0);
    json_decref(v);
    fjt_expect_error("{\"a\\u0000\":1}", JSON_ALLOW_NUL, json_error_null_byte_in_key);
}

Test(fastjson, requires_object_or_array_at_top_unless_decode_any) {
    fjt_expect_error("\"a\"", 0, json_error_invalid_syntax);
    fjt_expect_error("", 0, json_error_premature_end_of_input);
    json_t *v = fjt_parse_ok(" 42 ", JSON_DECODE_ANY);
    cr_assert_eq(json_integer_value(v), 42);
    json_decref(v);
}

Test(fastjson, rejects_trailing_bytes_unless_eof_check_disabled) {
    fjt_expect_error("{} x", 0, json_error_end_of_input_expected);
    json_error_t e;
    json_t *v = fj_parse("[1] xyz", 7, JSON_DISABLE_EOF_CHECK, &e);
    cr_assert_not_null(v);
    cr_assert_eq(e.position, 3, "consumed %d", e.position);
    json_decref(v);
}

Test(fastjson, reports_line_column_and_position_of_the_error) {
    const char *s = "{\n  \"\xc3\xa9\": tru\n}";
    json_error_t e;
    cr_assert_null(fj_parse(s, strlen(s), 0, &e));
    /* jansson's report: the end of the bad token "tru", its column counted
     * in characters (é is one), its position in bytes */
    cr_assert_eq(e.line, 2);
    cr_assert_eq(e.column, 10, "column %d", e.column);
    cr_assert_eq(e.position, 13, "position %d", e.position);
    cr_assert_str_eq(e.source, "<buffer>");
    cr_assert(strstr(e.text, "tru") != NULL, "text '%s'", e.text);
}

/* Inputs whose error codes once differed from jansson's: its tokenizer
 * reads a whole token before the parser judges it (docs/fuzzing.md). */
Test(fastjson, reports_rejections_with_janssons_code_and_text) {
    static const struct {
        const char *in;
        size_t flags;
        enum json_error_code code;
    } cases[] = {
        {"-", JSON_DECODE_ANY, json_error_invalid_syntax}, /* not a premature end */
        {"[\"\\", 0, json_error_invalid_syntax},             /* an invalid escape */
        {"[\"\\ud", 0, json_error_invalid_syntax},
        {"\"", 0, json_error_premature_end_of_input},      /* not "'[' or '{' expected" */
        {"\"\xc3", 0, json_error_invalid_utf8},
        {"1e400", 0, json_error_numeric_overflow},
        {"[2]\"", 0, json_error_premature_end_of_input},   /* not "end of file expected" */
        {"[2]\xff", 0, json_error_invalid_utf8},
        {"{\"a\":1,\"a\":2}", JSON_REJECT_DUPLICATES, json_error_duplicate_key},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_error_t ef, ej;
        size_t len = strlen(cases[i].in);
        cr_assert_null(fj_parse(cases[i].in, len, cases[i].flags, &ef), "'%s' accepted",
                       fjt_render(cases[i].in, len));
        cr_assert_null(json_loadb(cases[i].in, len, cases[i].flags, &ej));
        cr_expect_eq(json_error_code(&ef), cases[i].code, "'%s': code %d (%s)",
                     fjt_render(cases[i].in, len), (int)json_error_code(&ef), ef.text);
        cr_expect_str_eq(ef.text, ej.text);
        cr_expect_eq(ef.position, ej.position);
        cr_expect_eq(ef.line, ej.line);
        cr_expect_eq(ef.column, ej.column);
    }
}

Test(fastjson, rejects_a_null_buffer_as_jansson_does) {
    json_error_t e;
    cr_assert_null(fj_parse(NULL, 0, 0, &e));
    cr_assert_eq(json_error_code(&e), json_error_invalid_argument);
    cr_assert_null(fj_parse(NULL, 0, 0, NULL));
}

/* ---- mutation fuzz --------------------------------------------------- */

static const char *const fjt_seeds[] = {
    "{\"specversion\":\"1.0\",\"id\":\"6f1c2b1e-0000-4000-8000-000000000001\",\"source\":"
    "\"/bench/publisher\",\"type\":\"approval.item.approved\",\"time\":\"2026-11-26T10:00:00."
    "000Z\",\"tenantid\":\"tenant-0001\",\"correlationid\":\"9a8b7c6d-1234-4abc-8def-"
    "0123456789ab\",\"datacontenttype\":\"application/json\",\"data\":{\"approvalId\":"
    "\"6f1c2b1e-0000-4000-8000-000000000001\",\"spaceId\":\"3b0d6a4e-5a40-4c6c-9b1e-"
    "0d6f2f4b7a10\",\"decidedBy\":{\"id\":\"9a8b7c6d-1234-4abc-8def-0123456789ab\",\"kind\":"
    "\"user\"},\"decisionAt\":\"2026-11-26T10:00:00Z\",\"comment\":\"ok\"}}",
    "{\"s\":\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00\",\"u\":\"h\xc3\xa9llo "
    "\xe2\x82\xac\xf0\x9f\x98\x80\",\"n\":[0,-0,1,-1,12.5e3,-1.5E-3,9223372036854775807,"
    "-9223372036854775808,1e308,0.5],\"l\":[true,false,null],\"o\":{\"\":{},\"a\":[]},"
    "\"d\":{\"k\":1,\"k\":2}}",
    "[[[[[{\"a\":[1,[2,[3]]]}]]]]]",
    "{ \"a\" : [ 1 , 2.5 ] ,\n\t\"b\" : { \"c\" : \"\\u0041\\u0000\" } , \"e\":\"\" }\r\n",
    "\"just a string \\u00e9\"",
    "-12.5e-3",
    "{\"k\\n\\u00e9\":{\"\\uDBFF\\uDFFF\":[\"\\\\\",1e-2,-0.0,true]},\"k\\n\\u00e9\":null}",
};

static uint64_t fjt_rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t fjt_rand(void) {
    uint64_t x = fjt_rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    fjt_rng_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static const char fjt_interesting[] = "{}[]:,\"\\ \t\n0123456789-+.eEutfnrlaA\x7f\x80\xbf\xc0"
                                      "\xc2\xc3\xe0\xed\xef\xf0\xf4\xf5\xff";

/* FJ_FUZZ_ROUNDS and FJ_FUZZ_SEED override the defaults for longer runs by
 * hand; the suite always runs the same 200k rounds. */
Test(fastjson, agrees_with_jansson_on_200k_mutated_documents, .timeout = 600) {
    enum { CAP = 1024 };
    const char *env_rounds = getenv("FJ_FUZZ_ROUNDS"), *env_seed = getenv("FJ_FUZZ_SEED");
    const size_t ROUNDS = env_rounds ? strtoul(env_rounds, NULL, 10) : 200000;
    if (env_seed)
        fjt_rng_state = strtoull(env_seed, NULL, 0) | 1;
    static const size_t flag_bits[] = {JSON_REJECT_DUPLICATES, JSON_DISABLE_EOF_CHECK,
                                       JSON_DECODE_ANY, JSON_DECODE_INT_AS_REAL,
                                       JSON_ALLOW_NUL};
    const size_t nseeds = sizeof fjt_seeds / sizeof fjt_seeds[0];
    char buf[CAP];
    size_t accepted = 0;
    for (size_t round = 0; round < ROUNDS; round++) {
        const char *seed = fjt_seeds[fjt_rand() % nseeds];
        size_t len = strlen(seed);
        memcpy(buf, seed, len);
        if (fjt_rand() % 8 == 0) {
            /* short token soup, for top-level and tokenizer corners */
            len = fjt_rand() % 13;
            for (size_t i = 0; i < len; i++)
                buf[i] = fjt_interesting[fjt_rand() % (sizeof fjt_interesting - 1)];
        }
        int nmut = 1 + (int)(fjt_rand() % 3);
        for (int m = 0; m < nmut && len > 0; m++) {
            size_t at = fjt_rand() % len;
            char interesting = fjt_interesting[fjt_rand() % (sizeof fjt_interesting - 1)];
            switch (fjt_rand() % 6) {
            case 0: buf[at] = (char)fjt_rand(); break;
            case 1: buf[at] = interesting; break;
            case 2:
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
                break;
            case 3:
                if (len < CAP) {
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = (fjt_rand() & 1) ? interesting : (char)fjt_rand();
                    len++;
                }
                break;
            case 4: len = at; break;
            default: buf[at] = (char)(buf[at] ^ (1 << (fjt_rand() % 8))); break;
            }
        }
        size_t flags = 0;
        uint64_t pick = fjt_rand();
        for (size_t b = 0; b < 5; b++)
            if (pick & (1u << b))
                flags |= flag_bits[b];
        const char *why = fjt_disagreement(buf, len, flags);
        cr_assert_null(why, "round %zu flags 0x%zx input '%s': %s", round, flags,
                       fjt_render(buf, len), why);
        json_t *v = fj_parse(buf, len, flags, NULL);
        accepted += v != NULL;
        json_decref(v);
    }
    /* Both outcomes must be well represented for the loop to mean anything. */
    cr_assert_gt(accepted, ROUNDS / 20, "only %zu accepted", accepted);
    cr_assert_lt(accepted, ROUNDS - ROUNDS / 20, "%zu accepted", accepted);
}
