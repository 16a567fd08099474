/* ndjson — the NDJSON input of `evbusctl publish`; see ndjson.h. */
#include "ctl/ndjson.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Files at least this big are checked by several threads: Redis has
 * nothing to do until the first pass ends, so its core checks too. */
#define SPLIT_MIN (4u << 20)

_Static_assert(NDJSON_MAX_PARTS <= UCHAR_MAX + 1, "a partition is kept in one byte");

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

/* ------------------------------------------------------------- reading */

ssize_t ndjson_read_line(ndjson_reader_t *r, const char **line)
{
    for (;;) {
        char *nl = r->len > r->pos ? memchr(r->buf + r->pos, '\n', r->len - r->pos) : NULL;
        if (nl) {
            *line = r->buf + r->pos;
            size_t n = (size_t)(nl + 1 - *line);
            r->pos += n;
            return (ssize_t)n;
        }
        if (r->pos > 0) {
            memmove(r->buf, r->buf + r->pos, r->len - r->pos);
            r->len -= r->pos;
            r->pos = 0;
        }
        if (r->len == r->cap) {
            size_t ncap = r->cap ? 2 * r->cap : 1 << 20;
            char *b = realloc(r->buf, ncap);
            if (!b)
                return -1;
            r->buf = b;
            r->cap = ncap;
        }
        if (r->idle) {
            struct pollfd pfd = {r->fd, POLLIN, 0};
            if (poll(&pfd, 1, 0) == 0) {
                r->idle(r->idle_ud);
                /* wait here rather than in read(): poll is never restarted
                 * after a signal, so a stop request is seen at once */
                while (!(r->stop && *r->stop) && poll(&pfd, 1, -1) < 0 && errno == EINTR)
                    ;
            }
        }
        if (r->stop && *r->stop)
            return 0; /* an unfinished last line is left in the buffer */
        ssize_t k = r->seq ? read(r->fd, r->buf + r->len, r->cap - r->len)
                           : pread(r->fd, r->buf + r->len, r->cap - r->len, r->off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        if (k == 0) {
            *line = r->buf;
            size_t n = r->len;
            r->pos = r->len;
            return (ssize_t)n;
        }
        r->off += k;
        r->len += (size_t)k;
    }
}

size_t ndjson_reader_unread(const ndjson_reader_t *r)
{
    return r->len - r->pos;
}

void ndjson_reader_free(ndjson_reader_t *r)
{
    free(r->buf);
    memset(r, 0, sizeof *r);
}

int ndjson_lines_next(ndjson_lines_t *l, size_t *len)
{
    for (;;) {
        ssize_t n = ndjson_read_line(l->rd, &l->cur);
        if (n < 0)
            l->read_errno = errno ? errno : EIO;
        if (n <= 0)
            return 0;
        l->lineno++;
        if (blank(l->cur, (size_t)n))
            continue;
        *len = (size_t)n;
        l->event++;
        return 1;
    }
}

/* --------------------------------------------------- first-pass results */

/* Appends n partition bytes; -1 when memory runs out (nothing appended). */
static int parts_append(ndjson_parts_t *parts, const unsigned char *of, size_t n)
{
    if (n == 0)
        return 0; /* of may be NULL then */
    if (parts->cap - parts->len < n) {
        size_t ncap = parts->cap ? parts->cap : 1 << 16;
        while (ncap - parts->len < n)
            ncap *= 2;
        unsigned char *o = realloc(parts->of, ncap);
        if (!o)
            return -1;
        parts->of = o;
        parts->cap = ncap;
    }
    memcpy(parts->of + parts->len, of, n);
    parts->len += n;
    return 0;
}

/* Keeps one event's findings unless the cap is reached; -1 when memory
 * runs out. */
static int note(struct ndjson_chkarr *chks, const evbus_text_checked_t *chk)
{
    if (chks->len == NDJSON_MAX_CHECKED)
        return 0;
    if (chks->len == chks->cap) {
        size_t ncap = chks->cap ? 2 * chks->cap : 1 << 12;
        evbus_text_checked_t *o = realloc(chks->of, ncap * sizeof *o);
        if (!o)
            return -1;
        chks->of = o;
        chks->cap = ncap;
    }
    chks->of[chks->len++] = *chk;
    return 0;
}

const evbus_text_checked_t *ndjson_checked(const ndjson_checks_t *chks, size_t i)
{
    /* cppcheck-suppress nullPointerRedundantCheck ; the step runs only after the test passed */
    for (size_t k = 0; chks && k < chks->nseg; i -= chks->seg[k++].len)
        if (i < chks->seg[k].len)
            return &chks->seg[k].of[i];
    return NULL;
}

/* Partition of a key hash: the high bits mixed in, since FNV-1a's low bits
 * alone spread short similar keys unevenly. */
static unsigned char partition(uint64_t hash, size_t n)
{
    return (unsigned char)((hash ^ (hash >> 29) ^ (hash >> 47)) % n);
}

/* ------------------------------------------------------------ first pass */

/* What checking a run of lines found (local line numbers), merged in
 * input order once every run is checked. */
struct found {
    struct ndjson_chkarr chks;
    ndjson_parts_t parts; /* parts.n == 0: no partitions wanted */
    size_t lines, events, bad;
    struct {
        size_t line;
        char msg[256];
    } rep[NDJSON_MAX_REPORTED];
    size_t n_rep;
    bool oom;
    int read_errno; /* reading the file failed (0: it did not) */
};

/* Checks one line.  The checks need no client (c only records the last
 * error), so runs can be checked on several threads at once. */
static void found_line(struct found *f, const char *line, size_t len)
{
    size_t lineno = ++f->lines;
    if (blank(line, len))
        return;
    char err[256];
    uint64_t hash;
    evbus_text_checked_t chk;
    if (evbus_event_text_check_keep(NULL, line, len, f->parts.n ? &hash : NULL, &chk, err,
                                    sizeof err) != 0) {
        if (f->n_rep < NDJSON_MAX_REPORTED) {
            f->rep[f->n_rep].line = lineno;
            snprintf(f->rep[f->n_rep++].msg, sizeof f->rep[0].msg, "%s", err);
        }
        f->bad++;
        return;
    }
    f->events++;
    if (f->bad || f->oom)
        return; /* nothing will be published: keep nothing more */
    if (note(&f->chks, &chk) != 0) {
        f->oom = true;
        return;
    }
    if (!f->parts.n)
        return;
    unsigned char part = partition(hash, f->parts.n);
    if (parts_append(&f->parts, &part, 1) != 0)
        f->oom = true;
}

static void found_free(struct found *f)
{
    free(f->chks.of);
    free(f->parts.of);
}

/* One thread's share of a regular file: the lines that start in
 * [from, to), where both are line starts (or the end). */
struct run {
    int fd;
    off_t from, to;
    struct found found;
};

static void *run_check(void *arg)
{
    struct run *r = arg;
    ndjson_reader_t rd = {.fd = r->fd, .off = r->from};
    off_t at = r->from;
    const char *line;
    ssize_t len;
    while (at < r->to && (len = ndjson_read_line(&rd, &line)) > 0) {
        /* a run ends at a line start, so no line crosses it */
        size_t keep = (size_t)len;
        if (at + len > r->to)
            keep = (size_t)(r->to - at);
        found_line(&r->found, line, keep);
        at += len;
    }
    if (len < 0 && at < r->to)
        r->found.read_errno = errno ? errno : EIO;
    ndjson_reader_free(&rd);
    return NULL;
}

/* The start of the line after offset `at` (the end when there is none). */
static off_t line_after(int fd, off_t at, off_t size)
{
    char buf[4096];
    while (at < size) {
        ssize_t k = pread(fd, buf, sizeof buf, at);
        if (k <= 0)
            return size;
        char *nl = memchr(buf, '\n', (size_t)k);
        if (nl)
            return at + (nl - buf) + 1;
        at += k;
    }
    return size;
}

/* ------------------------------------------------------------ the input */

int ndjson_input_open(ndjson_input_t *in, const char *path)
{
    memset(in, 0, sizeof *in);
    bool use_stdin = !path || strcmp(path, "-") == 0;
    in->name = use_stdin ? "stdin" : path;
    in->in = use_stdin ? stdin : fopen(path, "r");
    if (!in->in)
        return -1;
    in->own_in = !use_stdin;
    return 0;
}

int ndjson_input_fd(const ndjson_input_t *in)
{
    return fileno(in->in);
}

int ndjson_input_spool(ndjson_input_t *in)
{
    struct stat st;
    if (fstat(fileno(in->in), &st) == 0 && S_ISREG(st.st_mode))
        return 0; /* a regular file is read again in place */
    in->spool = tmpfile();
    return in->spool ? 0 : -1;
}

/*
 * A big regular file is split at line starts and checked by up to
 * NDJSON_SPLIT_MAX threads (the calling one among them); their findings
 * are merged in input order.
 */
int ndjson_input_check(ndjson_input_t *in, size_t nparts)
{
    /* From the start of the spool, or where the input began (a file given
     * on stdin may start past its first byte). */
    in->start = in->spool ? 0 : ftello(in->in);
    if (in->start < 0)
        in->start = 0;
    ndjson_checks_t *chks = &in->checks;
    ndjson_parts_t *parts = nparts > 1 ? &in->parts : NULL;
    if (parts)
        parts->n = nparts;
    struct run runs[NDJSON_SPLIT_MAX];
    memset(runs, 0, sizeof runs);
    size_t nruns = 1;
    struct stat st;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (!in->spool && fstat(fileno(in->in), &st) == 0 && S_ISREG(st.st_mode) &&
        (size_t)st.st_size >= SPLIT_MIN && ncpu > 1)
        nruns = ncpu < NDJSON_SPLIT_MAX ? (size_t)ncpu : NDJSON_SPLIT_MAX;
    for (size_t k = 0; k < nruns; k++)
        runs[k].found.parts.n = parts ? parts->n : 0;
    if (nruns == 1) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while ((len = getline(&line, &cap, in->in)) >= 0) {
            if (in->spool)
                fwrite(line, 1, (size_t)len, in->spool);
            found_line(&runs[0].found, line, (size_t)len);
        }
        free(line);
    } else {
        int fd = fileno(in->in);
        off_t start = in->start;
        pthread_t tids[NDJSON_SPLIT_MAX];
        bool started[NDJSON_SPLIT_MAX] = {false};
        for (size_t k = 0; k < nruns; k++) {
            runs[k].fd = fd;
            runs[k].from = k == 0 ? start : runs[k - 1].to;
            runs[k].to = k + 1 == nruns
                             ? st.st_size
                             : line_after(fd, start + (st.st_size - start) * (off_t)(k + 1) /
                                                      (off_t)nruns - 1,
                                          st.st_size);
            if (runs[k].to < runs[k].from)
                runs[k].to = runs[k].from;
        }
        for (size_t k = 1; k < nruns; k++)
            started[k] = pthread_create(&tids[k], NULL, run_check, &runs[k]) == 0;
        for (size_t k = 0; k < nruns; k++)
            if (k == 0 || !started[k])
                run_check(&runs[k]); /* here when a thread would not start */
        for (size_t k = 1; k < nruns; k++)
            if (started[k])
                pthread_join(tids[k], NULL);
    }

    /* Merge in input order. */
    ndjson_report_t *rep = &in->report;
    size_t lines = 0, events = 0;
    bool oom = false, capped = false;
    for (size_t k = 0; k < nruns; k++) {
        struct found *f = &runs[k].found;
        for (size_t i = 0; i < f->n_rep && rep->n_shown < NDJSON_MAX_REPORTED; i++) {
            rep->shown[rep->n_shown].line = lines + f->rep[i].line;
            memcpy(rep->shown[rep->n_shown++].msg, f->rep[i].msg, sizeof f->rep[i].msg);
        }
        rep->bad += f->bad;
        oom = oom || f->oom;
        if (!rep->read_errno)
            rep->read_errno = f->read_errno;
        if (!rep->bad && !oom) {
            /* findings are kept for the first NDJSON_MAX_CHECKED events
             * only: once a run stopped keeping them, later runs' cannot
             * follow */
            size_t kept = f->chks.len;
            if (!capped && kept) {
                size_t take = NDJSON_MAX_CHECKED - chks->len;
                if (take > kept)
                    take = kept;
                chks->seg[chks->nseg] = f->chks;
                chks->seg[chks->nseg++].len = take;
                chks->len += take;
                f->chks = (struct ndjson_chkarr){0};
            }
            capped = capped || kept < f->events || chks->len == NDJSON_MAX_CHECKED;
            if (parts && !oom && parts_append(parts, f->parts.of, f->parts.len) != 0)
                oom = true;
        }
        lines += f->lines;
        events += f->events;
        found_free(f);
    }
    if (rep->bad)
        return NDJSON_EINVAL;
    if (rep->read_errno)
        return NDJSON_EREAD;
    if (oom)
        return NDJSON_ENOMEM;
    in->events = events;
    return NDJSON_OK;
}

int ndjson_input_rewind(ndjson_input_t *in, ndjson_reader_t *rd)
{
    memset(rd, 0, sizeof *rd);
    FILE *src = in->spool ? in->spool : in->in;
    rd->fd = fileno(src);
    rd->off = in->spool ? 0 : in->start;
    if (in->spool && fflush(in->spool) != 0)
        return -1;
    return 0;
}

void ndjson_input_close(ndjson_input_t *in)
{
    for (size_t k = 0; k < in->checks.nseg; k++)
        free(in->checks.seg[k].of);
    free(in->parts.of);
    if (in->spool)
        fclose(in->spool);
    if (in->own_in && in->in)
        fclose(in->in);
    memset(in, 0, sizeof *in);
}
