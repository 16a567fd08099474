/*
 * stream.c — validates NDJSON input line by line and reports per instance,
 * as `evbusctl validate` prints it.
 *
 * Throughput is bounded by parsing: the line buffer and the error list are
 * reused, valid instances are checked on the validator's boolean fast path,
 * and only invalid ones are validated a second time to collect every error.
 *
 * Not here: argument parsing, opening files, exit codes (host/ctl).
 */
#include "schema/schema.h"
#include "schema/errs.h"
#include "fastjson/fastjson.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void schema_stream_init(schema_stream_t *st, const schema_catalog_t *catalog,
                        const js_schema_t *schema, int json, FILE *out)
{
    memset(st, 0, sizeof *st);
    st->catalog = catalog;
    st->schema = catalog ? NULL : schema;
    st->json = json;
    st->out = out;
}

void schema_stream_release(schema_stream_t *st)
{
    free(st->line);
    st->line = NULL;
    st->line_cap = 0;
    js_errors_clear(&st->errs);
}

/* Writes s as a JSON string literal. */
static void put_json_string(FILE *out, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    putc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (*p < 0x20) {
                fputs("\\u00", out);
                putc(hex[*p >> 4], out);
                putc(hex[*p & 15], out);
            } else {
                putc(*p, out);
            }
        }
    }
    putc('"', out);
}

static void report(schema_stream_t *st, const char *name, size_t lineno, int valid)
{
    const js_errors_t *e = &st->errs;
    if (st->json) {
        fprintf(st->out, "{\"line\":%zu,\"file\":", lineno);
        put_json_string(st->out, name);
        fputs(valid ? ",\"valid\":true,\"errors\":[" : ",\"valid\":false,\"errors\":[", st->out);
        for (size_t i = 0; i < e->count; i++) {
            fputs(i ? ",{\"instancePath\":" : "{\"instancePath\":", st->out);
            put_json_string(st->out, e->items[i].instance_path);
            fputs(",\"schemaPath\":", st->out);
            put_json_string(st->out, e->items[i].schema_path);
            fputs(",\"keyword\":", st->out);
            put_json_string(st->out, e->items[i].keyword);
            fputs(",\"message\":", st->out);
            put_json_string(st->out, e->items[i].message);
            putc('}', st->out);
        }
        fputs("]}\n", st->out);
        return;
    }
    for (size_t i = 0; i < e->count; i++) {
        const char *ip = e->items[i].instance_path;
        fprintf(st->out, "%s:%zu: %s: %s\n", name, lineno, ip[0] ? ip : "(root)",
                e->items[i].message);
    }
}

/* 1 valid, 0 invalid; errors (only for invalid instances) in st->errs. */
static int check(schema_stream_t *st, const json_t *v)
{
    int r;
    if (st->catalog) {
        r = schema_catalog_validate_event(st->catalog, v, NULL, 0);
        if (r != 1)
            schema_catalog_validate_event(st->catalog, v, &st->errs, 1);
    } else {
        r = js_validate(st->schema, v, NULL, 0);
        if (r != 1)
            js_validate(st->schema, v, &st->errs, 1);
    }
    return r == 1;
}

int schema_stream_run(schema_stream_t *st, FILE *in, const char *name, char *err, size_t errlen)
{
    size_t lineno = 0;
    uint64_t bytes = 0;
    ssize_t len;
    errno = 0;
    while ((len = getline(&st->line, &st->line_cap, in)) >= 0) {
        lineno++;
        bytes += (uint64_t)len;
        if (st->progress && (lineno & 0xffff) == 0)
            st->progress(st->progress_ud, bytes);
        while (len > 0 && (st->line[len - 1] == '\n' || st->line[len - 1] == '\r'))
            len--;
        size_t start = strspn(st->line, " \t");
        if ((ssize_t)start >= len)
            continue; /* blank lines separate nothing in NDJSON; skip them */

        json_error_t jerr;
        json_t *v = fj_parse(st->line, (size_t)len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        int valid = 0;
        if (v) {
            valid = check(st, v);
            json_decref(v);
        } else {
            char msg[256];
            snprintf(msg, sizeof msg, "invalid JSON at column %d: %s", jerr.column, jerr.text);
            schema__err_push(&st->errs, "", "", SCHEMA_KW_PARSE, msg);
        }
        if (valid)
            st->valid++;
        else
            st->invalid++;
        if (st->json || !valid)
            report(st, name, lineno, valid);
        if (st->errs.count)
            js_errors_clear(&st->errs);
        errno = 0;
    }
    if (st->progress)
        st->progress(st->progress_ud, bytes);
    if (ferror(in)) {
        snprintf(err, errlen, "%s: read error after line %zu: %s", name, lineno,
                 strerror(errno ? errno : EIO));
        return -1;
    }
    return 0;
}

void schema_stream_summary(const schema_stream_t *st)
{
    if (st->json)
        fprintf(st->out, "{\"summary\":{\"valid\":%zu,\"invalid\":%zu}}\n", st->valid, st->invalid);
    else
        fprintf(st->out, "%zu valid, %zu invalid\n", st->valid, st->invalid);
}
