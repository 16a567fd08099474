/*
 * cmd_publish.c — `evbusctl publish`: one event from flags, or NDJSON
 * events from a file or stdin, through libevbus.
 *
 * NDJSON input is read twice: a first pass checks every line and
 * publishes nothing if any is bad (so a typo on line 9000 does not leave
 * 8999 events half-sent); a second pass streams the events through a
 * libevbus pipeline (evbus_pipeline_t), so completing the next line
 * overlaps Redis appending the previous ones.  Non-seekable input (a
 * pipe) is spooled to an anonymous temporary file during the first pass,
 * so memory stays bounded whatever the input size; a regular file of
 * PUB_SPLIT_MIN bytes or more is checked by several threads, since Redis
 * has nothing to do until the first pass ends.  Lines go through
 * libevbus' text events: a complete line is published as the bytes it
 * is, with no JSON tree built, which keeps both passes cheap.  The first
 * pass also keeps what libevbus learned about each line
 * (evbus_text_checked_t, for the first PUB_MAX_CHECKED events, so memory
 * stays bounded), and the second pass completes a line that is still what
 * was checked without scanning it again; a line that changed is checked
 * again, as are lines past the cap.  Event checks live in libevbus, not
 * here.  Stream ids are printed as replies arrive, in input order.
 *
 * --parallel N (N > 1) publishes over N connections, one pipeline each,
 * all driven by the one thread that reads the input.  Events are
 * partitioned by key (partitionkey, else tenantid; see
 * evbus_event_text_check_key) and each partition goes through one
 * connection, so events with the same key keep their relative order while
 * events with different keys may interleave.  The first pass keeps one
 * byte per event: its partition.  Ids are printed as replies arrive: in
 * input order within a partition, interleaved across partitions.  (One
 * thread is enough: Redis, not the client, bounds the rate, and several
 * connections help Redis because each event-loop turn then carries more
 * commands.)
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client/evbus_client.h"
#include "ctl/ctl.h"
#include "store/store.h"

/* Invalid lines listed before "... and N more". */
#define PUB_MAX_REPORTED 50
/* Largest --parallel: more connections than this only add contention. */
#define PUB_MAX_PARALLEL 64
/* Events whose first-pass findings are kept (64 bytes each, so at most
 * 64 MiB); later events are scanned again in the second pass. */
#define PUB_MAX_CHECKED (1u << 20)


static void pub_usage(FILE *out)
{
    fputs("usage: evbusctl publish --type TYPE --tenant TENANT --data JSON\n"
          "                        [--source S] [--correlation C] [--id ID]\n"
          "                        [--maxlen N] [--json]\n"
          "       evbusctl publish [--file FILE|-] [--parallel N | --live] [--source S]\n"
          "                        [--maxlen N] [--json]\n"
          "\n"
          "Publishes CloudEvents to the bus stream and prints each new stream id on\n"
          "its own line.  Without --type, reads NDJSON (one full or partial event\n"
          "object per line) from FILE, or from stdin when no --file is given or\n"
          "FILE is '-'.  Blank lines are skipped.  Missing specversion, id, time,\n"
          "source and correlationid are filled in; type and tenantid are required.\n"
          "If any line is invalid, nothing is published (all lines are checked first;\n"
          "stdin is kept in a temporary file meanwhile), unless --live is given.\n"
          "\n"
          "  --type TYPE         event type, e.g. order.created\n"
          "  --tenant TENANT     tenantid\n"
          "  --data JSON         the event's data (any JSON value)\n"
          "  --source S          source for events without one (default evbusctl)\n"
          "  --correlation C     correlationid (default: a new UUID)\n"
          "  --id ID             event id (default: a new UUID)\n"
          "  --maxlen N          trim the stream to about N entries (0: no trimming;\n"
          "                      default: publish_maxlen from the configuration)\n"
          "  --parallel N        publish NDJSON over N connections\n"
          "                      (default 1, at most 64).  Events are partitioned by\n"
          "                      their partitionkey attribute, else their tenantid:\n"
          "                      events with the same key keep their input order in\n"
          "                      the stream, others may interleave.  Ids are printed\n"
          "                      as replies arrive (input order within a key only)\n"
          "  --live              publish each line as it is read, without checking the\n"
          "                      whole input first: for feeds that do not end\n"
          "                      (tail -f ... | evbusctl publish --live).  When the\n"
          "                      input pauses, what was read is published and its ids\n"
          "                      printed.  An invalid line stops it: the events before\n"
          "                      it stay published (exit status 2).  SIGINT or\n"
          "                      SIGTERM stop the reading; every complete line read\n"
          "                      is still published (exit status 0; an unfinished\n"
          "                      last line is not, and stderr says so)\n"
          "  --json              print {\"id\":...,\"stream_id\":...} per event\n"
          "  -h, --help          show this help\n"
          "\n"
          "Exit status: 0 published, 1 Redis failed, 2 bad flags or invalid event.\n",
          out);
}


static void pub_print(FILE *out, const char *id, const char *stream_id, bool json)
{
    if (!json) {
        /* once per event: the unlocked calls skip stdio's lock (one thread
         * prints) */
        fputs_unlocked(stream_id, out);
        putc_unlocked('\n', out);
        return;
    }
    json_t *o = json_pack("{s:s?, s:s}", "id", id, "stream_id", stream_id);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (s)
        fprintf(out, "%s\n", s);
    free(s);
    json_decref(o);
}

/*
 * The publisher records each event as PENDING in PostgreSQL when metadata
 * is configured, so an event that never reaches a consumer is still
 * visible.  Recording is best effort: the event is already in the stream,
 * so a database failure is reported once and never fails the publish.
 */
static PGconn *pub_pg;
static bool pub_pg_off, pub_pg_atexit_done;

static void pub_pg_close(void) { PQfinish(pub_pg); }

static void pub_record(const evbus_text_event_t *evs, char (*ids)[EVBUS_STREAM_ID_LEN],
                       const int *rcs, size_t n)
{
    const ctl_env_t *env = ctl_env();
    if (pub_pg_off || !env->postgres_url || (env->cfg && !env->cfg->metadata_enabled))
        return;
    char err[512];
    if (!pub_pg && !(pub_pg = store_connect(env->postgres_url, err, sizeof err))) {
        fprintf(stderr, "evbusctl publish: warning: not recording metadata: %s\n", err);
        pub_pg_off = true;
        return;
    }
    if (!pub_pg_atexit_done) {
        atexit(pub_pg_close);
        pub_pg_atexit_done = true;
    }
    store_update_t *u = calloc(n ? n : 1, sizeof *u);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (rcs && rcs[i] != 0)
            continue;
        const evbus_text_event_t *ev = &evs[i];
        u[k++] = (store_update_t){
            .id = ev->id,
            .type = ev->type,
            .tenant = ev->tenantid,
            .correlation_id = ev->correlationid,
            .source = ev->source,
            .stream_id = ids[i],
            .status = STORE_PENDING,
            /* the XADD time: never later than the consumer's first status */
            .timestamp_ms = strtoll(ids[i], NULL, 10),
        };
    }
    if (k && store_record_published(pub_pg, u, k, err, sizeof err) < 0) {
        fprintf(stderr, "evbusctl publish: warning: not recording metadata: %s\n", err);
        pub_pg_off = true;
    }
    free(u);
}

static int pub_single(evbus_client_t *c, const char *type, const char *tenant, const char *data,
                      const char *correlation, const char *id, bool json)
{
    json_error_t jerr;
    json_t *d = json_loads(data, JSON_DECODE_ANY, &jerr);
    if (!d)
        return ctl_usage_error("publish", "--data: invalid JSON: %s (column %d)", jerr.text,
                               jerr.column);
    json_t *ev = json_pack("{s:s, s:s, s:o}", "type", type, "tenantid", tenant, "data", d);
    if (!ev)
        return ctl_fail("publish", "out of memory");
    if (correlation)
        json_object_set_new(ev, "correlationid", json_string(correlation));
    if (id)
        json_object_set_new(ev, "id", json_string(id));
    char sid[EVBUS_STREAM_ID_LEN], err[256];
    int rc = evbus_publish(c, ev, sid, sizeof sid, err, sizeof err);
    if (rc == 0) {
        /* Only the attributes pub_record reads. */
        evbus_text_event_t t = {
            .id = json_string_value(json_object_get(ev, "id")),
            .type = json_string_value(json_object_get(ev, "type")),
            .tenantid = json_string_value(json_object_get(ev, "tenantid")),
            .correlationid = json_string_value(json_object_get(ev, "correlationid")),
            .source = json_string_value(json_object_get(ev, "source")),
        };
        pub_print(stdout, t.id, sid, json);
        pub_record(&t, &sid, NULL, 1);
    }
    json_decref(ev);
    if (rc == EVBUS_CLIENT_EINVAL)
        return ctl_usage_error("publish", "invalid event: %s", err);
    if (rc != 0)
        return ctl_fail("publish", "%s", err);
    return CTL_OK;
}

static bool pub_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

/* The partition of every event, in input order, for --parallel: one byte
 * per event is all the first pass keeps. */
struct pub_parts {
    unsigned char *of;
    size_t len, cap, n;
};

/* Appends n partition bytes; -1 when memory runs out (nothing appended). */
static int pub_parts_append(struct pub_parts *parts, const unsigned char *of, size_t n)
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

/* One checking run's findings, in input order: event i of the run at of[i]. */
struct pub_chkarr {
    evbus_text_checked_t *of;
    size_t len, cap;
};

/* The first pass's findings for the first events of the input: the runs'
 * arrays one after the other (taken over, not copied: for 200,000 events
 * that copy was 12.8 MB written while Redis waited). */
#define PUB_SPLIT_MAX 4 /* checking threads at most (see pub_check) */
struct pub_checks {
    struct pub_chkarr seg[PUB_SPLIT_MAX];
    size_t nseg, len;
};

/* Keeps one event's findings unless the cap is reached; -1 when memory
 * runs out. */
static int pub_note(struct pub_chkarr *chks, const evbus_text_checked_t *chk)
{
    if (chks->len == PUB_MAX_CHECKED)
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

/* The first pass's findings about event number i, or NULL. */
static const evbus_text_checked_t *pub_checked(const struct pub_checks *chks, size_t i)
{
    for (size_t k = 0; chks && k < chks->nseg; i -= chks->seg[k++].len)
        if (i < chks->seg[k].len)
            return &chks->seg[k].of[i];
    return NULL;
}

static void pub_checks_free(struct pub_checks *chks)
{
    for (size_t k = 0; k < chks->nseg; k++)
        free(chks->seg[k].of);
    memset(chks, 0, sizeof *chks);
}

/* Partition of a key hash: the high bits mixed in, since FNV-1a's low bits
 * alone spread short similar keys unevenly. */
static unsigned char pub_partition(uint64_t hash, size_t n)
{
    return (unsigned char)((hash ^ (hash >> 29) ^ (hash >> 47)) % n);
}

static ssize_t pub_check(FILE *in, const char *name, FILE *spool, struct pub_checks *chks,
                         struct pub_parts *parts);

/*
 * Second pass: one thread reads the checked input once and streams each
 * event through a libevbus pipeline, so completing line n+1 overlaps Redis
 * appending line n (a batch call would leave Redis idle while the next
 * batch is completed, and the CLI idle while the batch's last reply comes).
 * With --parallel N there are N pipelines, one per connection, and each
 * event goes to the one its partition names.  A completed event is kept,
 * by its pipeline's sequence number, until its reply is in: its id is
 * printed then, and it is recorded as PENDING in batches.
 */
enum { PUB_RING = 32768, PUB_RECORD_BATCH = 1000 };
_Static_assert(PUB_RING >= EVBUS_PIPELINE_MAX_INFLIGHT + PUB_RECORD_BATCH,
               "events awaiting a reply or a PENDING row must fit the ring");

/* One pipeline's events in flight and its replies not yet recorded. */
struct pub_seq {
    evbus_text_event_t evs[PUB_RING];
    size_t lines[PUB_RING];
    const char *name;
    bool json;
    int *rc; /* shared by every pipeline: the first failure's exit code */
    size_t *answered;
    evbus_text_event_t rec_evs[PUB_RECORD_BATCH];
    char rec_ids[PUB_RECORD_BATCH][EVBUS_STREAM_ID_LEN];
    int rec_rcs[PUB_RECORD_BATCH];
    size_t rec_n;
};

/* Records the replies so far as PENDING rows. */
static void pub_seq_record(struct pub_seq *q)
{
    if (q->rec_n)
        pub_record(q->rec_evs, q->rec_ids, q->rec_rcs, q->rec_n);
    for (size_t i = 0; i < q->rec_n; i++)
        evbus_text_event_clear(&q->rec_evs[i]);
    q->rec_n = 0;
}

static void pub_seq_reply(void *ud, uint64_t seq, int rc, const char *text)
{
    struct pub_seq *q = ud;
    evbus_text_event_t *ev = &q->evs[seq % PUB_RING];
    if (rc == 0)
        pub_print(stdout, ev->id, text, q->json);
    else if (*q->rc == CTL_OK)
        *q->rc = ctl_fail("publish", "%s:%zu: %s", q->name, q->lines[seq % PUB_RING], text);
    size_t k = q->rec_n++;
    q->rec_evs[k] = *ev; /* moves what ev owns */
    memset(ev, 0, sizeof *ev);
    size_t idlen = rc == 0 ? strnlen(text, sizeof q->rec_ids[k] - 1) : 0;
    memcpy(q->rec_ids[k], text, idlen);
    q->rec_ids[k][idlen] = '\0';
    q->rec_rcs[k] = rc;
    if (q->rec_n == PUB_RECORD_BATCH)
        pub_seq_record(q);
    ++*q->answered;
}

/*
 * Lines read from a descriptor into one buffer: with pread from `off`
 * (every checking thread has its own position on the same file), or, for
 * --live, with read.  Before a read that would block, `idle` (if set)
 * runs: a live feed gets what it sent so far published and answered
 * before evbusctl waits for more.
 */
struct pub_reader {
    int fd;
    bool seq; /* read(2) from the current position instead of pread */
    off_t off;
    char *buf;
    size_t cap, pos, len;
    void (*idle)(void *ud);
    void *idle_ud;
    volatile sig_atomic_t *stop; /* set by a signal: read no further */
};

/* The next line (with its '\n' when there is one) at *line: its length,
 * 0 at the end, -1 on a read error or when memory runs out. */
static ssize_t pub_read_line(struct pub_reader *r, const char **line)
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

/* The lines of the input, in order, with their event's index, read
 * through `rd` (1 MiB reads: stdio's 4 KiB ones cost the publisher a
 * system call per ten events, CPU that Redis wants on a small machine). */
struct pub_lines {
    struct pub_reader *rd;
    const char *cur; /* the current line */
    size_t lineno, event;
    bool read_error;
};

/* 1 with the next non-blank line, 0 at the end (or a read error). */
static int pub_lines_next(struct pub_lines *l, size_t *len)
{
    for (;;) {
        ssize_t n = pub_read_line(l->rd, &l->cur);
        if (n < 0)
            l->read_error = true;
        if (n <= 0)
            return 0;
        l->lineno++;
        if (pub_blank(l->cur, (size_t)n))
            continue;
        *len = (size_t)n;
        return 1;
    }
}

/* What a --live idle moment flushes: every pipeline's events are
 * answered, printed and recorded. */
struct pub_flush {
    evbus_pipeline_t **pls;
    struct pub_seq **qs;
    size_t n;
};

static void pub_flush_idle(void *ud)
{
    struct pub_flush *f = ud;
    char err[256];
    for (size_t k = 0; k < f->n; k++) {
        if (f->pls[k])
            evbus_pipeline_wait(f->pls[k], err, sizeof err); /* failures: pub_seq_reply */
        if (f->qs[k])
            pub_seq_record(f->qs[k]);
    }
    fflush(stdout);
}

/*
 * Publishes every event of the input read through `rd` over the n
 * clients: event i goes to clients[parts->of[i]] (parts NULL: n is 1).
 * The input was checked by the first pass, unless `live` (--live; n is
 * 1): then each line is checked as it is completed, a bad one stops the
 * publish after the events before it, and whatever was read is published
 * whenever the input pauses.  CTL_OK or the first failure's code, its
 * message printed; whatever was queued is answered and printed before the
 * return.
 */
static int pub_send(evbus_client_t *const *clients, size_t n, struct pub_reader *rd, bool live,
                    const char *name, const struct pub_checks *chks,
                    const struct pub_parts *parts, size_t total, bool json)
{
    int rc = CTL_OK, fail = CTL_OK;
    size_t answered = 0;
    struct pub_seq **qs = calloc(n, sizeof *qs);
    evbus_pipeline_t **pls = calloc(n, sizeof *pls);
    size_t *seqs = calloc(n, sizeof *seqs);
    if (!qs || !pls || !seqs)
        rc = ctl_fail("publish", "out of memory");
    char err[256];
    for (size_t k = 0; k < n && rc == CTL_OK; k++) {
        if (!(qs[k] = calloc(1, sizeof *qs[k]))) {
            rc = ctl_fail("publish", "out of memory");
            break;
        }
        /* (fields one by one: the struct is ~1 MB, no compound literal) */
        qs[k]->name = name;
        qs[k]->json = json;
        qs[k]->rc = &fail;
        qs[k]->answered = &answered;
        if (!(pls[k] = evbus_pipeline_new(clients[k], pub_seq_reply, qs[k], err, sizeof err)))
            rc = ctl_fail("publish", "%s", err);
    }
    struct pub_lines src = {.rd = rd};
    struct pub_flush flush = {pls, qs, n};
    if (live) {
        rd->idle = pub_flush_idle;
        rd->idle_ud = &flush;
    }
    char bad[512] = ""; /* --live: the line that stopped it */
    size_t len;
    while (rc == CTL_OK && fail == CTL_OK && pub_lines_next(&src, &len)) {
        size_t i = src.event++;
        if (parts && i >= parts->len) {
            rc = ctl_usage_error("publish", "%s changed since it was checked", name);
            break;
        }
        size_t k = parts ? parts->of[i] : 0;
        struct pub_seq *q = qs[k];
        evbus_text_event_t *ev = &q->evs[seqs[k] % PUB_RING];
        const evbus_text_checked_t *chk = pub_checked(chks, i);
        int erc = chk ? evbus_event_text_complete_checked(clients[k], src.cur, len, chk, ev, err,
                                                          sizeof err)
                      : evbus_event_text_complete(clients[k], src.cur, len, ev, err, sizeof err);
        if (erc != 0 && live) {
            snprintf(bad, sizeof bad, "%s:%zu: %s", name, src.lineno, err);
            rc = CTL_USAGE;
            break;
        }
        if (erc != 0) {
            rc = ctl_usage_error("publish", "%s:%zu: %s", name, src.lineno, err);
            break;
        }
        q->lines[seqs[k] % PUB_RING] = src.lineno;
        erc = evbus_pipeline_add_text(pls[k], ev, err, sizeof err);
        if (erc == EVBUS_CLIENT_EREDIS)
            break; /* every unanswered event was reported through pub_seq_reply */
        if (erc != 0) {
            evbus_text_event_clear(ev);
            rc = ctl_fail("publish", "%s:%zu: %s", name, src.lineno, err);
            break;
        }
        seqs[k]++;
        if (src.event % EVBUS_PIPELINE_WINDOW == 0)
            ctl_progress("publish", answered, total);
    }
    if (rc == CTL_OK && fail == CTL_OK && parts && src.event != parts->len && !src.read_error)
        rc = ctl_usage_error("publish", "%s changed since it was checked", name);
    if (rc == CTL_OK && src.read_error)
        rc = live ? ctl_fail("publish", "cannot read %s: %s", name, strerror(errno))
                  : ctl_fail("publish", "cannot re-read %s", name);
    /* A connection failure is reported through pub_seq_reply. */
    for (size_t k = 0; k < n && pls; k++) {
        if (pls[k])
            evbus_pipeline_wait(pls[k], err, sizeof err);
        evbus_pipeline_free(pls[k]);
        if (qs[k])
            pub_seq_record(qs[k]);
    }
    fflush(stdout);
    ctl_progress("publish", answered, total);
    ctl_progress_end();
    if (bad[0] && fail == CTL_OK)
        ctl_usage_error("publish", "%s; stopped there: the %zu event%s before it %s published",
                        bad, answered, answered == 1 ? "" : "s",
                        answered == 1 ? "was" : "were");
    else if (bad[0])
        ctl_usage_error("publish", "%s", bad);
    for (size_t k = 0; k < n && qs; k++)
        free(qs[k]);
    free(qs);
    free(pls);
    free(seqs);
    return fail != CTL_OK ? fail : rc;
}

/* ------------------------------------------------------------ first pass */

/* What checking a run of lines found (local line numbers), merged in
 * input order once every run is checked. */
struct pub_found {
    struct pub_chkarr chks;
    struct pub_parts parts; /* parts.n == 0: no partitions wanted */
    size_t lines, events, bad;
    struct {
        size_t line;
        char msg[256];
    } rep[PUB_MAX_REPORTED];
    size_t n_rep;
    bool oom;
    int read_errno; /* reading the file failed (0: it did not) */
};

/* Checks one line.  The checks need no client (c only records the last
 * error), so runs can be checked on several threads at once. */
static void pub_found_line(struct pub_found *f, const char *line, size_t len)
{
    size_t lineno = ++f->lines;
    if (pub_blank(line, len))
        return;
    char err[256];
    uint64_t hash;
    evbus_text_checked_t chk;
    if (evbus_event_text_check_keep(NULL, line, len, f->parts.n ? &hash : NULL, &chk, err,
                                    sizeof err) != 0) {
        if (f->n_rep < PUB_MAX_REPORTED) {
            f->rep[f->n_rep].line = lineno;
            snprintf(f->rep[f->n_rep++].msg, sizeof f->rep[0].msg, "%s", err);
        }
        f->bad++;
        return;
    }
    f->events++;
    if (f->bad || f->oom)
        return; /* nothing will be published: keep nothing more */
    if (pub_note(&f->chks, &chk) != 0) {
        f->oom = true;
        return;
    }
    if (!f->parts.n)
        return;
    unsigned char part = pub_partition(hash, f->parts.n);
    if (pub_parts_append(&f->parts, &part, 1) != 0)
        f->oom = true;
}

static void pub_found_free(struct pub_found *f)
{
    free(f->chks.of);
    free(f->parts.of);
}

/* One thread's share of a regular file: the lines that start in
 * [from, to), where both are line starts (or the end). */
struct pub_run {
    int fd;
    off_t from, to;
    struct pub_found found;
};

static void *pub_run_check(void *arg)
{
    struct pub_run *r = arg;
    struct pub_reader rd = {.fd = r->fd, .off = r->from};
    off_t at = r->from;
    const char *line;
    ssize_t len;
    while (at < r->to && (len = pub_read_line(&rd, &line)) > 0) {
        /* a run ends at a line start, so no line crosses it */
        size_t keep = (size_t)len;
        if (at + len > r->to)
            keep = (size_t)(r->to - at);
        pub_found_line(&r->found, line, keep);
        at += len;
    }
    if (len < 0 && at < r->to)
        r->found.read_errno = errno ? errno : EIO;
    free(rd.buf);
    return NULL;
}

/* The start of the line after offset `at` (the end when there is none). */
static off_t pub_line_after(int fd, off_t at, off_t size)
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

/* Files at least this big are checked by several threads: Redis has
 * nothing to do until the first pass ends, so its core checks too. */
#define PUB_SPLIT_MIN (4u << 20)

/*
 * First pass: checks every line, spooling a pipe to *spool, keeps the
 * findings in chks and with parts (--parallel) notes each event's
 * partition.  A big regular file is split at line starts and checked by
 * up to PUB_SPLIT_MAX threads; their findings are merged in input order.
 * Returns the number of events, or -1 after printing the invalid lines
 * (the first PUB_MAX_REPORTED, in input order, with their line numbers).
 */
static ssize_t pub_check(FILE *in, const char *name, FILE *spool, struct pub_checks *chks,
                         struct pub_parts *parts)
{
    struct pub_run runs[PUB_SPLIT_MAX];
    memset(runs, 0, sizeof runs);
    size_t nruns = 1;
    struct stat st;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (!spool && fstat(fileno(in), &st) == 0 && S_ISREG(st.st_mode) &&
        (size_t)st.st_size >= PUB_SPLIT_MIN && ncpu > 1)
        nruns = ncpu < PUB_SPLIT_MAX ? (size_t)ncpu : PUB_SPLIT_MAX;
    for (size_t k = 0; k < nruns; k++)
        runs[k].found.parts.n = parts ? parts->n : 0;
    if (nruns == 1) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while ((len = getline(&line, &cap, in)) >= 0) {
            if (spool)
                fwrite(line, 1, (size_t)len, spool);
            pub_found_line(&runs[0].found, line, (size_t)len);
        }
        free(line);
    } else {
        int fd = fileno(in);
        off_t start = ftello(in);
        if (start < 0)
            start = 0;
        pthread_t tids[PUB_SPLIT_MAX];
        bool started[PUB_SPLIT_MAX] = {false};
        for (size_t k = 0; k < nruns; k++) {
            runs[k].fd = fd;
            runs[k].from = k == 0 ? start : runs[k - 1].to;
            runs[k].to = k + 1 == nruns
                             ? st.st_size
                             : pub_line_after(fd, start + (st.st_size - start) * (off_t)(k + 1) /
                                                          (off_t)nruns - 1,
                                              st.st_size);
            if (runs[k].to < runs[k].from)
                runs[k].to = runs[k].from;
        }
        for (size_t k = 1; k < nruns; k++)
            started[k] = pthread_create(&tids[k], NULL, pub_run_check, &runs[k]) == 0;
        for (size_t k = 0; k < nruns; k++)
            if (k == 0 || !started[k])
                pub_run_check(&runs[k]); /* here when a thread would not start */
        for (size_t k = 1; k < nruns; k++)
            if (started[k])
                pthread_join(tids[k], NULL);
    }

    /* Merge in input order. */
    size_t lines = 0, events = 0, bad = 0, reported = 0;
    bool oom = false, capped = false;
    int read_errno = 0;
    for (size_t k = 0; k < nruns; k++) {
        struct pub_found *f = &runs[k].found;
        for (size_t i = 0; i < f->n_rep && reported < PUB_MAX_REPORTED; i++, reported++)
            fprintf(stderr, "evbusctl publish: %s:%zu: %s\n", name, lines + f->rep[i].line,
                    f->rep[i].msg);
        bad += f->bad;
        oom = oom || f->oom;
        if (!read_errno)
            read_errno = f->read_errno;
        if (!bad && !oom) {
            /* findings are kept for the first PUB_MAX_CHECKED events only:
             * once a run stopped keeping them, later runs' cannot follow */
            size_t kept = f->chks.len;
            if (!capped && kept) {
                size_t take = PUB_MAX_CHECKED - chks->len;
                if (take > kept)
                    take = kept;
                chks->seg[chks->nseg] = f->chks;
                chks->seg[chks->nseg++].len = take;
                chks->len += take;
                f->chks = (struct pub_chkarr){0};
            }
            capped = capped || kept < f->events || chks->len == PUB_MAX_CHECKED;
            if (parts && !oom && pub_parts_append(parts, f->parts.of, f->parts.len) != 0)
                oom = true;
        }
        lines += f->lines;
        events += f->events;
        pub_found_free(f);
    }
    if (bad > PUB_MAX_REPORTED)
        fprintf(stderr, "evbusctl publish: ... and %zu more invalid lines\n",
                bad - PUB_MAX_REPORTED);
    if (bad) {
        ctl_usage_error("publish", "%zu invalid line%s in %s; nothing was published", bad,
                        bad == 1 ? "" : "s", name);
        return -1;
    }
    if (read_errno) {
        ctl_fail("publish", "%s: cannot read: %s", name, strerror(read_errno));
        return -1;
    }
    if (oom) {
        ctl_fail("publish", "out of memory");
        return -1;
    }
    return (ssize_t)events;
}

/* The per-connection settings of the parallel clients. */
struct pub_opts {
    size_t parallel;
    uint64_t maxlen;
    const char *source;
    bool json;
    bool stream; /* --live: publish as read, no first pass */
};

static volatile sig_atomic_t pub_live_signal;

static void pub_live_on_signal(int sig)
{
    pub_live_signal = sig;
}

/*
 * --live: one pass over the input as it arrives (a file, or a feed such as
 * `tail -F ... |` that never ends).  SIGINT and SIGTERM stop the reading
 * (the reader waits in poll, which a signal interrupts; everything else
 * restarts): every complete line read until then is still published and
 * answered, and the exit status is 0.
 */
static int pub_stream_live(evbus_client_t *c, int fd, const char *name, bool json)
{
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = pub_live_on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    struct pub_reader rd = {.fd = fd, .seq = true, .stop = &pub_live_signal};
    evbus_client_t *clients[1] = {c};
    int rc = pub_send(clients, 1, &rd, true, name, NULL, NULL, 0, json);
    free(rd.buf);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (pub_live_signal) {
        /* what the reader holds after its last newline: a line the feed
         * had not finished when the signal came */
        size_t left = rd.len - rd.pos;
        fprintf(stderr, "evbusctl publish: stopped by %s; every complete line read from %s "
                        "until then was published\n",
                pub_live_signal == SIGINT ? "SIGINT" : "SIGTERM", name);
        if (left)
            fprintf(stderr, "evbusctl publish: %s: the unfinished last line (%zu bytes, no "
                            "newline yet) was not published\n",
                    name, left);
    }
    return rc;
}

static int pub_stream(evbus_client_t *c, const char *file, const struct pub_opts *o)
{
    bool use_stdin = !file || strcmp(file, "-") == 0;
    const char *name = use_stdin ? "stdin" : file;
    FILE *in = use_stdin ? stdin : fopen(file, "r");
    if (!in)
        return ctl_usage_error("publish", "cannot open %s: %s", file, strerror(errno));
    if (o->stream) {
        int rc = pub_stream_live(c, fileno(in), name, o->json);
        if (!use_stdin)
            fclose(in);
        return rc;
    }
    struct stat st;
    FILE *spool = NULL;
    if (fstat(fileno(in), &st) != 0 || !S_ISREG(st.st_mode)) {
        spool = tmpfile();
        if (!spool) {
            if (!use_stdin)
                fclose(in);
            return ctl_fail("publish", "cannot create a temporary file: %s", strerror(errno));
        }
    }
    /* --parallel n: n connections with the settings of c (maxlen, source),
     * the first being c itself; the first pass notes each event's
     * partition. */
    size_t n = o->parallel > 1 ? o->parallel : 1;
    const ctl_env_t *env = ctl_env();
    evbus_client_t **clients = calloc(n, sizeof *clients);
    struct pub_parts parts = {.n = n};
    struct pub_checks chks = {0};
    int rc = clients ? CTL_OK : ctl_fail("publish", "out of memory");
    for (size_t k = 0; k < n && rc == CTL_OK; k++) {
        char err[256];
        if (k == 0) {
            clients[0] = c;
            continue;
        }
        if (!(clients[k] = evbus_client_new(env->redis_url, env->stream, err, sizeof err))) {
            rc = ctl_usage_error("publish", "%s", err);
            break;
        }
        evbus_client_set_maxlen(clients[k], o->maxlen);
        evbus_client_set_source(clients[k], o->source);
    }
    off_t first_byte = spool ? 0 : ftello(in);
    if (first_byte < 0)
        first_byte = 0;
    ssize_t total = rc == CTL_OK ? pub_check(in, name, spool, &chks, n > 1 ? &parts : NULL) : -1;
    if (rc == CTL_OK && total < 0)
        rc = CTL_USAGE;
    if (rc == CTL_OK) {
        /* From the start of the spool, or where the input began (a file
         * given on stdin may start past its first byte). */
        FILE *src = spool ? spool : in;
        off_t start = spool ? 0 : first_byte;
        struct pub_reader rd = {.fd = fileno(src), .off = start};
        if (spool && fflush(spool) != 0)
            rc = ctl_fail("publish", "%s: cannot re-read the input: %s", name, strerror(errno));
        else
            rc = pub_send(clients, n, &rd, false, name, &chks, n > 1 ? &parts : NULL,
                          (size_t)total, o->json);
        free(rd.buf);
    }
    for (size_t k = 1; k < n && clients; k++)
        evbus_client_free(clients[k]);
    free(clients);
    free(parts.of);
    pub_checks_free(&chks);
    if (spool)
        fclose(spool);
    if (!use_stdin)
        fclose(in);
    return rc;
}

int cmd_publish(int argc, char **argv)
{
    const char *type = NULL, *tenant = NULL, *data = NULL, *source = NULL, *correlation = NULL,
               *id = NULL, *file = NULL, *maxlen_s = NULL, *parallel_s = NULL;
    bool json = false, stream = false;
    for (int i = 1; i < argc; i++) {
        const char **slots[] = {&type, &tenant, &data, &source, &correlation, &id, &file,
                                &maxlen_s, &parallel_s};
        const char *names[] = {"--type", "--tenant", "--data", "--source", "--correlation",
                               "--id", "--file", "--maxlen", "--parallel"};
        int m = 0;
        for (size_t k = 0; k < sizeof names / sizeof names[0] && m == 0; k++) {
            m = ctl_opt_value(argc, argv, &i, names[k], slots[k]);
            if (m < 0)
                return ctl_usage_error("publish", "%s needs a value", names[k]);
        }
        if (m)
            continue;
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--live") == 0)
            stream = true;
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            pub_usage(stdout);
            return CTL_OK;
        } else
            return ctl_usage_error("publish", "unexpected argument \"%s\"", argv[i]);
    }

    bool single = type || tenant || data || correlation || id;
    if (single && file)
        return ctl_usage_error("publish", "--file cannot be combined with --type/--tenant/"
                                          "--data/--correlation/--id");
    if (single && (!type || !tenant || !data))
        return ctl_usage_error("publish", "one event needs --type, --tenant and --data (missing "
                                          "%s)",
                               !type ? "--type" : !tenant ? "--tenant" : "--data");
    if (single && parallel_s)
        return ctl_usage_error("publish", "--parallel applies to NDJSON input, not to one "
                                          "event from flags");
    if (single && stream)
        return ctl_usage_error("publish", "--live applies to NDJSON input, not to one "
                                          "event from flags");
    if (stream && parallel_s)
        return ctl_usage_error("publish", "--live cannot be combined with --parallel "
                                          "(a stream is published in input order on one "
                                          "connection)");
    size_t parallel = 1;
    if (parallel_s) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(parallel_s, &end, 10);
        if (errno || end == parallel_s || *end || parallel_s[0] == '-' || v < 1 ||
            v > PUB_MAX_PARALLEL)
            return ctl_usage_error("publish", "--parallel \"%s\": not an integer from 1 to %d",
                                   parallel_s, PUB_MAX_PARALLEL);
        parallel = v;
    }
    uint64_t maxlen = 0;
    if (maxlen_s) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(maxlen_s, &end, 10);
        if (errno || end == maxlen_s || *end || maxlen_s[0] == '-')
            return ctl_usage_error("publish", "--maxlen \"%s\": not a non-negative integer",
                                   maxlen_s);
        maxlen = v;
    }

    const ctl_env_t *env = ctl_env();
    char err[256];
    evbus_client_t *c = evbus_client_new(env->redis_url, env->stream, err, sizeof err);
    if (!c)
        return ctl_usage_error("publish", "%s", err);
    struct pub_opts o = {parallel, maxlen_s ? maxlen : env->publish_maxlen,
                         source ? source : "evbusctl", json, stream};
    evbus_client_set_maxlen(c, o.maxlen);
    evbus_client_set_source(c, o.source);
    int rc = single ? pub_single(c, type, tenant, data, correlation, id, json)
                    : pub_stream(c, file, &o);
    evbus_client_free(c);
    return rc;
}
