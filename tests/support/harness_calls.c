/*
 * harness_calls — see harness_calls.h.
 */
#include "harness_calls.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

void harness_calls_read(harness_calls_t *c, const char *path, int host)
{
    char *text = harness_read_file(path);
    if (!text)
        return;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (c->n == c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 1024;
            harness_call_t *v = realloc(c->v, cap * sizeof *v);
            if (!v)
                break;
            c->v = v;
            c->cap = cap;
        }
        harness_call_t *k = &c->v[c->n];
        if (sscanf(line, "%31s %d %d %lld %lld %7s", k->key, &k->seq, &k->attempt, &k->start,
                   &k->end, k->result) == 6) {
            k->host = host;
            c->n++;
        }
    }
    free(text);
}

void harness_calls_free(harness_calls_t *c)
{
    free(c->v);
    memset(c, 0, sizeof *c);
}

size_t harness_calls_distinct_ok(const harness_calls_t *c, int nkeys, int nseq)
{
    char *seen = calloc((size_t)nkeys * (size_t)nseq, 1);
    size_t n = 0;
    for (size_t i = 0; seen && i < c->n; i++) {
        int k = atoi(c->v[i].key + 1);
        if (strcmp(c->v[i].result, "ok") || k < 0 || k >= nkeys || c->v[i].seq < 0 ||
            c->v[i].seq >= nseq)
            continue;
        char *s = &seen[(size_t)k * (size_t)nseq + (size_t)c->v[i].seq];
        n += !*s;
        *s = 1;
    }
    free(seen);
    return n;
}

static int by_key_then_start(const void *a, const void *b)
{
    const harness_call_t *x = a, *y = b;
    int k = strcmp(x->key, y->key);
    if (k)
        return k;
    return x->start < y->start ? -1 : x->start > y->start;
}

size_t harness_calls_order(harness_calls_t *c, size_t *dups, char *msg, size_t msglen)
{
    qsort(c->v, c->n, sizeof *c->v, by_key_then_start);
    size_t bad = 0, off = 0;
    *dups = 0;
    if (msglen)
        msg[0] = '\0';
    int max_seen = -1;
    for (size_t i = 0; i < c->n; i++) {
        const harness_call_t *k = &c->v[i], *prev = i ? &c->v[i - 1] : NULL;
        bool first = !prev || strcmp(k->key, prev->key) != 0;
        if (first)
            max_seen = -1;
        char what[200] = "";
        if (!first && k->start < prev->end)
            snprintf(what, sizeof what, "key %s: seq %d (h%d) started before seq %d (h%d) ended; ",
                     k->key, k->seq, k->host, prev->seq, prev->host);
        else if (k->seq > max_seen + 1)
            snprintf(what, sizeof what, "key %s: seq %d handled (h%d) before seq %d ever was; ",
                     k->key, k->seq, k->host, max_seen + 1);
        if (what[0] && bad++ < 5 && off < msglen) {
            int w = snprintf(msg + off, msglen - off, "%s", what);
            off += w > 0 ? (size_t)w : 0;
        }
        if (k->seq <= max_seen)
            (*dups)++;
        else
            max_seen = k->seq;
    }
    return bad;
}
