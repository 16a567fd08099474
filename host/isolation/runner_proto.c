/*
 * runner_proto — frame writing and payload reading shared by evbusd and
 * evbus-plugin-runner (see runner_proto.h).  No I/O here.
 */
#include "isolation/runner_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The buffer's capacity to exactly cap bytes (never less than len). */
static void runner_buf_resize(runner_buf_t *b, size_t cap)
{
    char *p = realloc(b->data, cap);
    if (!p) {
        fprintf(stderr, "evbus runner protocol: out of memory\n");
        abort();
    }
    b->data = p;
    b->cap = cap;
}

static void runner_buf_room(runner_buf_t *b, size_t more)
{
    if (b->len + more <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    runner_buf_resize(b, cap);
}

void runner_buf_reserve(runner_buf_t *b, size_t total)
{
    if (b->cap < total)
        runner_buf_resize(b, total);
}

void runner_buf_put(runner_buf_t *b, const void *bytes, size_t len)
{
    runner_buf_room(b, len);
    if (len)
        memcpy(b->data + b->len, bytes, len);
    b->len += len;
}

size_t runner_buf_begin_frame(runner_buf_t *b, runner_kind_t kind, uint64_t seq)
{
    size_t at = b->len;
    runner_frame_hdr_t h = {.len = 0, .kind = (uint32_t)kind, .seq = seq};
    runner_buf_put(b, &h, sizeof h);
    return at;
}

void runner_buf_put_str(runner_buf_t *b, const char *s, size_t len)
{
    uint32_t n = s ? (uint32_t)len : 0;
    runner_buf_put(b, &n, sizeof n);
    runner_buf_put(b, s ? s : "", n);
    runner_buf_put(b, "", 1);
}

void runner_buf_end_frame(runner_buf_t *b, size_t at)
{
    uint32_t len = (uint32_t)(b->len - at - sizeof(runner_frame_hdr_t));
    memcpy(b->data + at + offsetof(runner_frame_hdr_t, len), &len, sizeof len);
}

void runner_buf_free(runner_buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

void runner_reader_init(runner_reader_t *r, const void *payload, size_t len)
{
    r->p = payload;
    r->end = r->p + len;
    r->bad = false;
}

void runner_read(runner_reader_t *r, void *dst, size_t len)
{
    if ((size_t)(r->end - r->p) < len) {
        memset(dst, 0, len);
        r->bad = true;
        r->p = r->end;
        return;
    }
    memcpy(dst, r->p, len);
    r->p += len;
}

const char *runner_read_str(runner_reader_t *r, size_t *len)
{
    uint32_t n = 0;
    runner_read(r, &n, sizeof n);
    if (r->bad || (size_t)(r->end - r->p) < (size_t)n + 1 || r->p[n] != '\0') {
        r->bad = true;
        r->p = r->end;
        if (len)
            *len = 0;
        return "";
    }
    const char *s = r->p;
    r->p += (size_t)n + 1;
    if (len)
        *len = n;
    return s;
}
