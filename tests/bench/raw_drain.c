/*
 * raw_drain — the Redis ceiling for consuming a stream: drains N pre-filled
 * entries through a consumer group with no processing at all
 * (XREADGROUP COUNT 1000, one XACK per batch carrying every id of the
 * batch) and prints one JSON object with the rate.  This is the baseline the
 * daemon's end-to-end scenarios are divided by; it deliberately does not
 * parse, validate or route anything.
 *
 *   raw_drain HOST PORT STREAM GROUP N
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_event.h"

#define RAW_DRAIN_COUNT 1000

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: raw_drain HOST PORT STREAM GROUP N\n");
        return 2;
    }
    const char *stream = argv[3], *group = argv[4];
    long n = strtol(argv[5], NULL, 10);
    redisContext *c = redisConnect(argv[1], atoi(argv[2]));
    if (!c || c->err) {
        fprintf(stderr, "raw_drain: connect %s:%s: %s\n", argv[1], argv[2],
                c ? c->errstr : "out of memory");
        return 1;
    }
    redisReply *r = redisCommand(c, "XGROUP CREATE %s %s 0", stream, group);
    if (!r || (r->type == REDIS_REPLY_ERROR && !strstr(r->str, "BUSYGROUP"))) {
        fprintf(stderr, "raw_drain: XGROUP CREATE: %s\n", r ? r->str : c->errstr);
        return 1;
    }
    freeReplyObject(r);

    /* argv for XACK: "XACK" stream group id... */
    const char *ack_argv[3 + RAW_DRAIN_COUNT];
    size_t ack_len[3 + RAW_DRAIN_COUNT];
    ack_argv[0] = "XACK";
    ack_argv[1] = stream;
    ack_argv[2] = group;
    for (int k = 0; k < 3; k++)
        ack_len[k] = strlen(ack_argv[k]);

    long done = 0;
    double t0 = bench_now();
    while (done < n) {
        r = redisCommand(c, "XREADGROUP GROUP %s raw COUNT %d STREAMS %s >", group,
                         RAW_DRAIN_COUNT, stream);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            fprintf(stderr, "raw_drain: XREADGROUP: %s (after %ld entries)\n",
                    r ? (r->type == REDIS_REPLY_NIL ? "stream exhausted" : r->str)
                      : c->errstr,
                    done);
            return 1;
        }
        redisReply *entries = r->element[0]->element[1];
        size_t k = entries->elements;
        for (size_t i = 0; i < k; i++) {
            ack_argv[3 + i] = entries->element[i]->element[0]->str;
            ack_len[3 + i] = entries->element[i]->element[0]->len;
        }
        redisReply *a = redisCommandArgv(c, (int)(3 + k), ack_argv, ack_len);
        if (!a || a->type != REDIS_REPLY_INTEGER || (size_t)a->integer != k) {
            fprintf(stderr, "raw_drain: XACK: %s\n", a ? "unexpected reply" : c->errstr);
            return 1;
        }
        freeReplyObject(a);
        freeReplyObject(r);
        done += (long)k;
    }
    double dt = bench_now() - t0;
    printf("{\"events\":%ld,\"seconds\":%.6f,\"events_per_s\":%.0f}\n", done, dt,
           (double)done / dt);
    redisFree(c);
    return 0;
}
