/*
 * fuzz_router — the pattern compiler and matcher against a reference
 * written from router.h's contract alone (differential).
 *
 * Input: lines.  Every line but the last is a pattern (at most 16), the
 * last is an event type.  Checked:
 *   - router_pattern_check / router_type_check accept exactly what the
 *     reference grammar accepts (segments of [a-z0-9_-]+, or `*` / `**`
 *     as a whole segment in patterns);
 *   - router_pattern_match agrees with the reference matcher (`*` one
 *     segment, `**` zero or more), a dynamic program so `**` chains stay
 *     linear;
 *   - a router built from the valid patterns (each its own target) returns
 *     exactly the matching targets, in (priority, seq) order, and the same
 *     again from its cache.
 */
#include <stdbool.h>

#include "fuzz_util.h"
#include "router/router.h"

#define MAX_PATTERNS 16
#define MAX_SEGS 128

typedef struct {
    const char *s[MAX_SEGS];
    size_t n[MAX_SEGS];
    size_t count;
} segs_t;

static bool ref_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* Splits at '.', checking the grammar; false when invalid or too long for
 * the reference's tables. */
static bool ref_split(const char *t, bool wildcards, segs_t *out)
{
    out->count = 0;
    if (!*t)
        return false;
    const char *p = t;
    for (;;) {
        const char *e = strchr(p, '.');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0 || out->count == MAX_SEGS)
            return false;
        bool star = wildcards && ((n == 1 && p[0] == '*') || (n == 2 && p[0] == '*' && p[1] == '*'));
        for (size_t i = 0; i < n && !star; i++)
            if (!ref_char(p[i]))
                return false;
        out->s[out->count] = p;
        out->n[out->count++] = n;
        if (!e)
            return true;
        p = e + 1;
    }
}

static bool seg_is(const segs_t *s, size_t i, const char *w)
{
    return s->n[i] == strlen(w) && memcmp(s->s[i], w, s->n[i]) == 0;
}

/* m[i][j]: pattern segments i.. match type segments j.. */
static bool ref_match(const segs_t *p, const segs_t *t)
{
    static bool m[MAX_SEGS + 1][MAX_SEGS + 1];
    for (size_t i = p->count + 1; i-- > 0;) {
        for (size_t j = t->count + 1; j-- > 0;) {
            bool r;
            if (i == p->count)
                r = j == t->count;
            else if (seg_is(p, i, "**"))
                r = m[i + 1][j] || (j < t->count && m[i][j + 1]);
            else if (j == t->count)
                r = false;
            else if (seg_is(p, i, "*"))
                r = m[i + 1][j + 1];
            else
                r = p->n[i] == t->n[j] && memcmp(p->s[i], t->s[j], p->n[i]) == 0 && m[i + 1][j + 1];
            m[i][j] = r;
        }
    }
    return m[0][0];
}

static router_cache_t *cache; /* kept across inputs: routers differ, the cache must notice */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cache && !(cache = router_cache_new()))
        abort();
    char *text = fuzz_strndup((const char *)data, size);
    char *lines[MAX_PATTERNS + 1];
    size_t n = 0;
    for (char *p = text; n < MAX_PATTERNS + 1;) {
        lines[n++] = p;
        char *nl = strchr(p, '\n');
        if (!nl)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    const char *type = lines[n - 1];
    size_t np = n - 1;

    char err[256];
    segs_t ts, ps;
    bool type_ok = ref_split(type, false, &ts);
    if ((router_type_check(type, err, sizeof err) == 0) != type_ok && ts.count < MAX_SEGS)
        fuzz_fail("router_type_check(\"%s\") disagrees with the grammar (ref %d)", type, type_ok);

    router_t *r = router_new();
    if (!r)
        abort();
    bool want[MAX_PATTERNS] = {0};
    bool added[MAX_PATTERNS] = {0};
    for (size_t i = 0; i < np; i++) {
        const char *pat = lines[i];
        bool ok = ref_split(pat, true, &ps);
        bool long_pat = !ok && ps.count == MAX_SEGS; /* beyond the reference's tables */
        int rc = router_pattern_check(pat, err, sizeof err);
        if (!long_pat && (rc == 0) != ok)
            fuzz_fail("router_pattern_check(\"%s\") = %d, the grammar says %s", pat, rc,
                      ok ? "valid" : "invalid");
        int arc = router_add(r, pat, (int)(i % 3), (uint32_t)i, (void *)(uintptr_t)(i + 1), err,
                             sizeof err);
        if ((arc == 0) != (rc == 0))
            fuzz_fail("router_add(\"%s\") = %d but router_pattern_check = %d", pat, arc, rc);
        added[i] = arc == 0;
        if (ok && type_ok) {
            want[i] = ref_match(&ps, &ts);
            if (router_pattern_match(pat, type) != want[i])
                fuzz_fail("router_pattern_match(\"%s\", \"%s\") = %d, reference %d", pat, type,
                          !want[i], want[i]);
        } else if (!long_pat && (!ok || ts.count < MAX_SEGS) && router_pattern_match(pat, type)) {
            /* an invalid pattern never matches; an invalid type neither, but
             * the reference calls every type beyond its tables invalid */
            fuzz_fail("router_pattern_match(\"%s\", \"%s\") matched an invalid input", pat, type);
        }
    }
    router_freeze(r);
    bool type_checked = type_ok || ts.count < MAX_SEGS;
    for (int round = 0; round < 2 && type_checked; round++) {
        router_list_t l = router_match(r, cache, type);
        size_t expect = 0;
        for (size_t i = 0; i < np; i++)
            expect += added[i] && want[i];
        if (!type_ok && l.count)
            fuzz_fail("router_match(\"%s\") matched an invalid type", type);
        if (type_ok && l.count != expect)
            fuzz_fail("router_match(\"%s\") round %d: %zu handlers, reference %zu", type, round,
                      l.count, expect);
        for (size_t k = 0; k < l.count; k++) {
            size_t i = (size_t)(uintptr_t)l.items[k].target - 1;
            if (i >= np || !want[i])
                fuzz_fail("router_match(\"%s\"): target %zu does not match", type, i);
            if (k && (l.items[k - 1].priority > l.items[k].priority ||
                      (l.items[k - 1].priority == l.items[k].priority &&
                       l.items[k - 1].seq >= l.items[k].seq)))
                fuzz_fail("router_match(\"%s\"): not in (priority, seq) order at %zu", type, k);
        }
    }
    router_free(r);
    free(text);
    return 0;
}
