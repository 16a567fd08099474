/*
 * bench_pub — writes the benchmark's events (bench_event.h) six ways:
 *
 *   bench_pub fill HOST PORT STREAM N [KEYS] raw pipelined XADD (windows of
 *                                           1000): pre-fills a stream fast
 *   bench_pub ndjson N FILE                 N events as NDJSON, for
 *                                           `evbusctl publish --file`
 *   bench_pub batch-text URL STREAM N       libevbus evbus_event_text_complete +
 *                                           evbus_publish_batch_text (events as text)
 *   bench_pub texts URL STREAM N            libevbus evbus_publish_texts (events as
 *                                           text, completed inside the call)
 *   bench_pub pipeline URL STREAM N         libevbus evbus_event_text_complete +
 *                                           evbus_pipeline_add_text per event
 *                                           (streaming: no batch boundaries)
 *   bench_pub batch URL STREAM N            libevbus evbus_publish_batch in
 *                                           calls of EVBUS_PIPELINE_WINDOW
 *                                           events; only the publish calls
 *                                           are timed, not building the
 *                                           json_t events
 *   bench_pub rate URL STREAM RATE SECONDS  RATE events/s for SECONDS, sent
 *                                           every millisecond as a small batch,
 *                                           each stamped with benchsentus
 *
 * fill, batch, batch-text, texts, pipeline and rate print one JSON object: events, seconds, events_per_s
 * and event_bytes.  Exit status 1 on any Redis failure; nothing is retried,
 * because a benchmark that hides failures measures the wrong thing.
 */
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_event.h"
#include "client/evbus_client.h"

#define BENCH_PUB_WINDOW 1000
#define BENCH_PUB_CHUNK 10000
/* Events per evbus_publish_batch* call: the library's documented window.
 * The events of a call are built right before it, as a caller would;
 * with 10,000 prebuilt json_t trees (~30 MB) the batch spent most of its
 * time on cache misses walking them (263k/s against 537k-637k/s here). */
#define BENCH_PUB_BATCH EVBUS_PIPELINE_WINDOW

static void report(long n, double seconds)
{
    char ev[BENCH_EVENT_MAX];
    int bytes = bench_event_format(ev, sizeof ev, 0, -1);
    printf("{\"events\":%ld,\"seconds\":%.6f,\"events_per_s\":%.0f,\"event_bytes\":%d}\n", n,
           seconds, seconds > 0 ? (double)n / seconds : 0.0, bytes);
}

static int pub_fill(const char *host, int port, const char *stream, long n, unsigned long keys)
{
    redisContext *c = redisConnect(host, port);
    if (!c || c->err) {
        fprintf(stderr, "bench_pub fill: connect %s:%d: %s\n", host, port,
                c ? c->errstr : "out of memory");
        return 1;
    }
    char ev[BENCH_EVENT_MAX];
    double t0 = bench_now();
    for (long done = 0; done < n;) {
        long w = n - done < BENCH_PUB_WINDOW ? n - done : BENCH_PUB_WINDOW;
        for (long i = 0; i < w; i++) {
            int len = bench_event_format_keyed(ev, sizeof ev, (unsigned long)(done + i), -1, keys);
            redisAppendCommand(c, "XADD %s * event %b", stream, ev, (size_t)len);
        }
        for (long i = 0; i < w; i++) {
            redisReply *r;
            if (redisGetReply(c, (void **)&r) != REDIS_OK || r->type != REDIS_REPLY_STRING) {
                fprintf(stderr, "bench_pub fill: XADD: %s\n",
                        r ? (r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply")
                          : c->errstr);
                return 1;
            }
            freeReplyObject(r);
        }
        done += w;
    }
    report(n, bench_now() - t0);
    redisFree(c);
    return 0;
}

static int pub_ndjson(long n, const char *file)
{
    FILE *f = fopen(file, "w");
    if (!f) {
        perror("bench_pub ndjson");
        return 1;
    }
    char ev[BENCH_EVENT_MAX];
    for (long i = 0; i < n; i++) {
        bench_event_format(ev, sizeof ev, (unsigned long)i, -1);
        fprintf(f, "%s\n", ev);
    }
    return fclose(f) == 0 ? 0 : 1;
}

/* Publishes evs[0..n) in one evbus_publish_batch; 0 when all were written. */
static int publish_chunk(evbus_client_t *c, json_t **evs, size_t n, double *busy)
{
    static char ids[BENCH_PUB_CHUNK][EVBUS_STREAM_ID_LEN];
    static int rc[BENCH_PUB_CHUNK];
    char err[256] = "";
    double t0 = bench_now();
    ssize_t ok = evbus_publish_batch(c, evs, n, ids, rc, err, sizeof err);
    *busy += bench_now() - t0;
    if (ok != (ssize_t)n) {
        fprintf(stderr, "bench_pub: evbus_publish_batch published %zd of %zu: %s\n", ok, n,
                err);
        return -1;
    }
    return 0;
}

static evbus_client_t *client_open(const char *url, const char *stream)
{
    char err[256];
    evbus_client_t *c = evbus_client_new(url, stream, err, sizeof err);
    if (!c)
        fprintf(stderr, "bench_pub: %s\n", err);
    return c;
}

static int pub_batch(const char *url, const char *stream, long n)
{
    evbus_client_t *c = client_open(url, stream);
    if (!c)
        return 1;
    static json_t *evs[BENCH_PUB_CHUNK];
    char ev[BENCH_EVENT_MAX];
    double busy = 0;
    int rc = 0;
    for (long done = 0; done < n && rc == 0;) {
        size_t w = (size_t)(n - done < BENCH_PUB_BATCH ? n - done : BENCH_PUB_BATCH);
        for (size_t i = 0; i < w; i++) {
            int len = bench_event_format(ev, sizeof ev, (unsigned long)(done + (long)i), -1);
            evs[i] = json_loadb(ev, (size_t)len, 0, NULL);
        }
        rc = publish_chunk(c, evs, w, &busy);
        for (size_t i = 0; i < w; i++)
            json_decref(evs[i]);
        done += (long)w;
    }
    if (rc == 0)
        report(n, busy);
    evbus_client_free(c);
    return rc ? 1 : 0;
}

/* The library's text batches, calls of BENCH_PUB_BATCH events the caller
 * holds as JSON text (formatting them is not timed).  two_step: complete
 * each (timed) and then evbus_publish_batch_text (timed); else one
 * evbus_publish_texts, which completes each text as it writes it. */
static int pub_text_batches(const char *url, const char *stream, long n, bool two_step)
{
    evbus_client_t *c = client_open(url, stream);
    if (!c)
        return 1;
    static evbus_text_t texts[BENCH_PUB_CHUNK];
    static evbus_text_event_t evs[BENCH_PUB_CHUNK];
    static char text[BENCH_PUB_CHUNK][BENCH_EVENT_MAX];
    static char ids[BENCH_PUB_CHUNK][EVBUS_STREAM_ID_LEN];
    static int rc[BENCH_PUB_CHUNK];
    const char *call = two_step ? "evbus_publish_batch_text" : "evbus_publish_texts";
    double busy = 0;
    int ret = 0;
    for (long done = 0; done < n && ret == 0;) {
        size_t w = (size_t)(n - done < BENCH_PUB_BATCH ? n - done : BENCH_PUB_BATCH);
        for (size_t i = 0; i < w; i++) {
            unsigned long k = (unsigned long)(done + (long)i);
            int len = bench_event_format(text[i], sizeof text[i], k, -1);
            texts[i] = (evbus_text_t){text[i], (size_t)len};
        }
        char err[256] = "";
        ssize_t ok = -1;
        double t0 = bench_now();
        if (!two_step) {
            ok = evbus_publish_texts(c, texts, w, ids, rc, err, sizeof err);
        } else {
            for (size_t i = 0; i < w && ret == 0; i++)
                if (evbus_event_text_complete(c, texts[i].text, texts[i].len, &evs[i], err,
                                              sizeof err) != 0) {
                    fprintf(stderr, "bench_pub: text complete: %s\n", err);
                    ret = -1;
                }
            if (ret == 0)
                ok = evbus_publish_batch_text(c, evs, w, ids, rc, err, sizeof err);
        }
        busy += bench_now() - t0;
        if (ret == 0 && ok != (ssize_t)w) {
            fprintf(stderr, "bench_pub: %s published %zd of %zu: %s\n", call, ok, w, err);
            ret = -1;
        }
        for (size_t i = 0; two_step && i < w; i++)
            evbus_text_event_clear(&evs[i]);
        done += (long)w;
    }
    if (ret == 0)
        report(n, busy);
    evbus_client_free(c);
    return ret ? 1 : 0;
}

/* The library's streaming path: each event is completed and added to an
 * evbus_pipeline_t right away, so completing overlaps Redis appending
 * (timed end to end, formatting the text excluded). */
struct pipe_count {
    long ok, failed;
};

static void pipe_answer(void *ud, uint64_t seq, int rc, const char *text)
{
    struct pipe_count *n = ud;
    (void)seq;
    if (rc == 0)
        n->ok++;
    else if (n->failed++ == 0)
        fprintf(stderr, "bench_pub: pipeline: %s\n", text);
}

static int pub_pipeline(const char *url, const char *stream, long n)
{
    evbus_client_t *c = client_open(url, stream);
    if (!c)
        return 1;
    static char text[BENCH_PUB_CHUNK][BENCH_EVENT_MAX];
    int lens[BENCH_PUB_CHUNK];
    struct pipe_count count = {0};
    char err[256];
    double busy = 0;
    int ret = 0;
    double t0 = bench_now();
    evbus_pipeline_t *pl = evbus_pipeline_new(c, pipe_answer, &count, err, sizeof err);
    busy += bench_now() - t0;
    if (!pl) {
        fprintf(stderr, "bench_pub: %s\n", err);
        evbus_client_free(c);
        return 1;
    }
    for (long done = 0; done < n && ret == 0;) {
        size_t w = (size_t)(n - done < BENCH_PUB_BATCH ? n - done : BENCH_PUB_BATCH);
        for (size_t i = 0; i < w; i++)
            lens[i] = bench_event_format(text[i], sizeof text[i], (unsigned long)(done + (long)i), -1);
        t0 = bench_now();
        for (size_t i = 0; i < w && ret == 0; i++) {
            evbus_text_event_t ev;
            if (evbus_event_text_complete(c, text[i], (size_t)lens[i], &ev, err, sizeof err) != 0 ||
                evbus_pipeline_add_text(pl, &ev, err, sizeof err) != 0) {
                fprintf(stderr, "bench_pub: pipeline: %s\n", err);
                ret = -1;
            }
            evbus_text_event_clear(&ev);
        }
        busy += bench_now() - t0;
        done += (long)w;
    }
    t0 = bench_now();
    if (evbus_pipeline_wait(pl, err, sizeof err) != 0 && ret == 0) {
        fprintf(stderr, "bench_pub: pipeline: %s\n", err);
        ret = -1;
    }
    busy += bench_now() - t0;
    evbus_pipeline_free(pl);
    if (ret == 0 && count.ok != n) {
        fprintf(stderr, "bench_pub: pipeline published %ld of %ld\n", count.ok, n);
        ret = -1;
    }
    if (ret == 0)
        report(n, busy);
    evbus_client_free(c);
    return ret ? 1 : 0;
}

static int pub_rate(const char *url, const char *stream, long rate, double seconds)
{
    evbus_client_t *c = client_open(url, stream);
    if (!c)
        return 1;
    static json_t *evs[BENCH_PUB_CHUNK];
    char ev[BENCH_EVENT_MAX];
    long total = (long)((double)rate * seconds), sent = 0;
    double busy = 0, t0 = bench_now();
    int rc = 0;
    while (sent < total && rc == 0) {
        double elapsed = bench_now() - t0;
        long due = (long)(elapsed * (double)rate) + 1;
        if (due > total)
            due = total;
        size_t w = (size_t)(due - sent);
        if (w > BENCH_PUB_CHUNK)
            w = BENCH_PUB_CHUNK;
        if (w > 0) {
            long long us = bench_realtime_us();
            for (size_t i = 0; i < w; i++) {
                int len = bench_event_format(ev, sizeof ev, (unsigned long)(sent + (long)i), us);
                evs[i] = json_loadb(ev, (size_t)len, 0, NULL);
            }
            rc = publish_chunk(c, evs, w, &busy);
            for (size_t i = 0; i < w; i++)
                json_decref(evs[i]);
            sent += (long)w;
        }
        /* Sleep to the next millisecond tick. */
        double next = (double)(long)((bench_now() - t0) * 1000.0 + 1) / 1000.0;
        double gap = next - (bench_now() - t0);
        if (gap > 0) {
            struct timespec ts = {0, (long)(gap * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
    if (rc == 0)
        report(sent, bench_now() - t0);
    evbus_client_free(c);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "";
    if (!strcmp(cmd, "fill") && (argc == 6 || argc == 7))
        return pub_fill(argv[2], atoi(argv[3]), argv[4], strtol(argv[5], NULL, 10),
                        argc == 7 ? strtoul(argv[6], NULL, 10) : 0);
    if (!strcmp(cmd, "ndjson") && argc == 4)
        return pub_ndjson(strtol(argv[2], NULL, 10), argv[3]);
    if (!strcmp(cmd, "batch") && argc == 5)
        return pub_batch(argv[2], argv[3], strtol(argv[4], NULL, 10));
    if (!strcmp(cmd, "batch-text") && argc == 5)
        return pub_text_batches(argv[2], argv[3], strtol(argv[4], NULL, 10), true);
    if (!strcmp(cmd, "texts") && argc == 5)
        return pub_text_batches(argv[2], argv[3], strtol(argv[4], NULL, 10), false);
    if (!strcmp(cmd, "pipeline") && argc == 5)
        return pub_pipeline(argv[2], argv[3], strtol(argv[4], NULL, 10));
    if (!strcmp(cmd, "rate") && argc == 6)
        return pub_rate(argv[2], argv[3], strtol(argv[4], NULL, 10), strtod(argv[5], NULL));
    fprintf(stderr, "usage: bench_pub fill HOST PORT STREAM N [KEYS]\n"
                    "       bench_pub ndjson N FILE\n"
                    "       bench_pub batch URL STREAM N\n"
                    "       bench_pub batch-text URL STREAM N\n"
                    "       bench_pub texts URL STREAM N\n"
                    "       bench_pub pipeline URL STREAM N\n"
                    "       bench_pub rate URL STREAM RATE SECONDS\n");
    return 2;
}
