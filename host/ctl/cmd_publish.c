/*
 * cmd_publish.c — `evbusctl publish`: one event from flags, or NDJSON
 * events from a file or stdin, through libevbus.
 *
 * This file parses the arguments and runs the command.  The NDJSON input
 * is ndjson.h's: reading it, keeping a pipe in a temporary file, and the
 * first pass, which checks every line and publishes nothing if any is bad
 * (so a typo on line 9000 does not leave 8999 events half-sent).
 *
 * The second pass, here, streams the events through a libevbus pipeline
 * (evbus_pipeline_t), so completing the next line overlaps Redis
 * appending the previous ones.  Lines go through libevbus' text events: a
 * complete line is published as the bytes it is, with no JSON tree built,
 * and a line that is still what the first pass checked is completed
 * without scanning it again (a line that changed is checked again, as are
 * lines past the first pass's cap).  Event checks live in libevbus, not
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
 *
 * --live has no first pass: each line is checked as it is completed, for
 * feeds that never end.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/evbus_client.h"
#include "ctl/ctl.h"
#include "ctl/ndjson.h"
#include "store/store.h"

/* Largest --parallel: more connections than this only add contention. */
#define PUB_MAX_PARALLEL 64
_Static_assert(PUB_MAX_PARALLEL <= NDJSON_MAX_PARTS, "a connection per partition");


/* redis.wait_replicas: the WAITs of this command's clients, and how many
 * fell short (reported once at the end) */
static uint64_t waits, wait_short;

static void wait_tally(evbus_client_t *c)
{
    uint64_t n = 0;
    wait_short += evbus_client_wait_short(c, &n);
    waits += n;
}

static void pub_usage(FILE *out)
{
    fputs("usage: evbusctl publish --type TYPE --tenant TENANT --data JSON\n"
          "                        [--source S] [--correlation C] [--id ID]\n"
          "                        [--json]\n"
          "       evbusctl publish [--file FILE|-] [--parallel N | --live] [--source S]\n"
          "                        [--json]\n"
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
          "With partitions: P above 1 in the configuration, each event goes to its\n"
          "partition's stream {STREAM:p} (p from its partitionkey, else tenantid, else\n"
          "id: docs/scale-out.md) and the ids printed are ids in that stream.  The\n"
          "count must be the one recorded in Redis (STREAM:partitions).\n"
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
    if (pub_pg_off || !env->postgres_url || (env->cfg && !env->cfg->store.metadata_enabled))
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
        return ctl_fail("publish", "%s", err); /* EVBUS_CLIENT_EFULL: "stream full: ..." */
    return CTL_OK;
}

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

/* Outcomes over every connection, for the summary of a refused publish. */
static atomic_size_t pub_n_ok, pub_n_full;

static void pub_seq_reply(void *ud, uint64_t seq, int rc, const char *text)
{
    struct pub_seq *q = ud;
    evbus_text_event_t *ev = &q->evs[seq % PUB_RING];
    if (rc == 0)
        atomic_fetch_add(&pub_n_ok, 1);
    else if (rc == EVBUS_CLIENT_EFULL)
        atomic_fetch_add(&pub_n_full, 1);
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
static int pub_send(evbus_client_t *const *clients, size_t n, ndjson_reader_t *rd, bool live,
                    const char *name, const ndjson_checks_t *chks, const ndjson_parts_t *parts,
                    size_t total, bool json)
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
    ndjson_lines_t src = {.rd = rd};
    struct pub_flush flush = {pls, qs, n};
    if (live) {
        rd->idle = pub_flush_idle;
        rd->idle_ud = &flush;
    }
    char bad[512] = ""; /* --live: the line that stopped it */
    size_t len;
    while (rc == CTL_OK && fail == CTL_OK && ndjson_lines_next(&src, &len)) {
        size_t i = src.event - 1;
        if (parts && i >= parts->len) {
            rc = ctl_usage_error("publish", "%s changed since it was checked", name);
            break;
        }
        size_t k = parts ? parts->of[i] : 0;
        struct pub_seq *q = qs[k];
        evbus_text_event_t *ev = &q->evs[seqs[k] % PUB_RING];
        const evbus_text_checked_t *chk = ndjson_checked(chks, i);
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
    if (rc == CTL_OK && fail == CTL_OK && parts && src.event != parts->len && !src.read_errno)
        rc = ctl_usage_error("publish", "%s changed since it was checked", name);
    if (rc == CTL_OK && src.read_errno)
        rc = live ? ctl_fail("publish", "cannot read %s: %s", name, strerror(src.read_errno))
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
    if (atomic_load(&pub_n_full)) {
        /* the stream is at its retention cap: say how far the input got */
        size_t ok = atomic_load(&pub_n_ok);
        if (total)
            fprintf(stderr, "evbusctl publish: %zu of %zu events published, %zu refused or not "
                    "sent: the stream is full (retention cap; its consumer groups still owe the "
                    "entries); publish the rest once they caught up\n", ok, total, total - ok);
        else
            fprintf(stderr, "evbusctl publish: %zu events published, then the stream was full "
                    "(retention cap); the rest was not published\n", ok);
    }
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

/* The per-connection settings of the parallel clients. */
struct pub_opts {
    size_t parallel;
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
    ndjson_reader_t rd = {.fd = fd, .seq = true, .stop = &pub_live_signal};
    evbus_client_t *clients[1] = {c};
    int rc = pub_send(clients, 1, &rd, true, name, NULL, NULL, 0, json);
    /* what the reader holds after its last newline: a line the feed had
     * not finished when the signal came */
    size_t left = ndjson_reader_unread(&rd);
    ndjson_reader_free(&rd);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (pub_live_signal) {
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

/*
 * Prints why the first pass failed: the invalid lines (the first
 * NDJSON_MAX_REPORTED, in input order, with their line numbers) and what
 * it came to.  Every failure of the first pass exits with status 2 (an
 * input error), whatever ctl_fail would return.
 */
static int pub_check_failed(const ndjson_input_t *in, int code)
{
    const ndjson_report_t *rep = &in->report;
    for (size_t i = 0; i < rep->n_shown; i++)
        fprintf(stderr, "evbusctl publish: %s:%zu: %s\n", in->name, rep->shown[i].line,
                rep->shown[i].msg);
    if (rep->bad > NDJSON_MAX_REPORTED)
        fprintf(stderr, "evbusctl publish: ... and %zu more invalid lines\n",
                rep->bad - NDJSON_MAX_REPORTED);
    if (code == NDJSON_EINVAL)
        ctl_usage_error("publish", "%zu invalid line%s in %s; nothing was published", rep->bad,
                        rep->bad == 1 ? "" : "s", in->name);
    else if (code == NDJSON_EREAD)
        ctl_fail("publish", "%s: cannot read: %s", in->name, strerror(rep->read_errno));
    else
        ctl_fail("publish", "out of memory");
    return CTL_USAGE;
}

/*
 * NDJSON input: --live publishes it as it is read; otherwise the first
 * pass checks all of it (ndjson.h) and the second publishes it.
 */
static int pub_stream(evbus_client_t *c, const char *file, const struct pub_opts *o)
{
    ndjson_input_t in;
    if (ndjson_input_open(&in, file) != 0)
        return ctl_usage_error("publish", "cannot open %s: %s", file, strerror(errno));
    if (o->stream) {
        int rc = pub_stream_live(c, ndjson_input_fd(&in), in.name, o->json);
        ndjson_input_close(&in);
        return rc;
    }
    if (ndjson_input_spool(&in) != 0) {
        int e = errno;
        ndjson_input_close(&in);
        return ctl_fail("publish", "cannot create a temporary file: %s", strerror(e));
    }
    /* --parallel n: n connections with the settings of c (retention, source),
     * the first being c itself; the first pass notes each event's
     * partition. */
    size_t n = o->parallel > 1 ? o->parallel : 1;
    const ctl_env_t *env = ctl_env();
    evbus_client_t **clients = calloc(n, sizeof *clients);
    int rc = clients ? CTL_OK : ctl_fail("publish", "out of memory");
    for (size_t k = 0; k < n && rc == CTL_OK; k++) {
        char err[256];
        if (k == 0) {
            clients[0] = c;
            continue;
        }
        if (!(clients[k] = ctl_client(env, err, sizeof err))) {
            rc = ctl_usage_error("publish", "%s", err);
            break;
        }
        ctl_apply_retention(clients[k]);
        ctl_apply_wait(clients[k]);
        evbus_client_set_source(clients[k], o->source);
    }
    if (rc == CTL_OK) {
        int crc = ndjson_input_check(&in, n);
        if (crc != NDJSON_OK)
            rc = pub_check_failed(&in, crc);
    }
    if (rc == CTL_OK) {
        ndjson_reader_t rd;
        if (ndjson_input_rewind(&in, &rd) != 0)
            rc = ctl_fail("publish", "%s: cannot re-read the input: %s", in.name,
                          strerror(errno));
        else
            rc = pub_send(clients, n, &rd, false, in.name, &in.checks, n > 1 ? &in.parts : NULL,
                          in.events, o->json);
        ndjson_reader_free(&rd);
    }
    for (size_t k = 1; k < n && clients; k++) {
        if (clients[k])
            wait_tally(clients[k]);
        evbus_client_free(clients[k]);
    }
    free(clients);
    ndjson_input_close(&in);
    return rc;
}

int cmd_publish(int argc, char **argv)
{
    const char *type = NULL, *tenant = NULL, *data = NULL, *source = NULL, *correlation = NULL,
               *id = NULL, *file = NULL, *parallel_s = NULL;
    bool json = false, stream = false;
    for (int i = 1; i < argc; i++) {
        const char **slots[] = {&type, &tenant, &data, &source, &correlation, &id, &file,
                                &parallel_s};
        const char *names[] = {"--type", "--tenant", "--data", "--source", "--correlation",
                               "--id", "--file", "--parallel"};
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
    const ctl_env_t *env = ctl_env();
    if (!env->redis_url && !env->redis_cluster)
        return ctl_no_config("publish", "Redis", "--redis URL (or EVBUS_REDIS_URL)");
    char err[256];
    evbus_client_t *c = ctl_client(env, err, sizeof err);
    if (!c)
        return ctl_usage_error("publish", "%s", err);
    struct pub_opts o = {parallel, source ? source : "evbusctl", json, stream};
    ctl_apply_retention(c);
    ctl_apply_wait(c);
    evbus_client_set_source(c, o.source);
    int rc = single ? pub_single(c, type, tenant, data, correlation, id, json)
                    : pub_stream(c, file, &o);
    wait_tally(c);
    evbus_client_free(c);
    if (wait_short)
        /* written all the same: the exit status says what was published */
        fprintf(stderr, "evbusctl publish: warning: %llu of %llu waits for %u replica%s timed "
                "out (redis.wait_replicas): those events are on the master, not yet confirmed "
                "on its replicas\n", (unsigned long long)wait_short,
                (unsigned long long)waits, env->cfg->core.redis_wait_replicas,
                env->cfg->core.redis_wait_replicas == 1 ? "" : "s");
    return rc;
}
