/*
 * partition — the partition hash, the partition key names and the
 * recorded partition count of partition.h.  Small and nearly
 * dependency-free (jansson to read the event's attributes, hiredis for the
 * record), since every publisher calls it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partition.h"

uint64_t evbus_partition_fnv1a64(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

unsigned evbus_partition_jump(uint64_t h, unsigned buckets)
{
    /* each step draws the next bucket a key would jump to as buckets
     * grow; the last one below `buckets` is the key's (Lamping and Veach,
     * "A Fast, Minimal Memory, Consistent Hash Algorithm", 2014) */
    int64_t b = -1, j = 0;
    while (j < (int64_t)buckets) {
        b = j;
        h = h * 2862933555777941757ull + 1;
        j = (int64_t)((double)(b + 1) * ((double)(1ll << 31) / (double)((h >> 33) + 1)));
    }
    return b < 0 ? 0 : (unsigned)b;
}

unsigned evbus_partition_of(const char *key, size_t len, unsigned partitions)
{
    if (partitions <= 1)
        return 0;
    return evbus_partition_jump(evbus_partition_fnv1a64(key, len), partitions);
}

const char *evbus_partition_key(const json_t *ev, size_t *len, const char **attr)
{
    static const char *const order[] = {"partitionkey", "tenantid", "id"};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const json_t *v = json_object_get(ev, order[i]);
        if (json_is_string(v) && json_string_length(v) > 0) {
            *len = json_string_length(v);
            if (attr)
                *attr = order[i];
            return json_string_value(v);
        }
    }
    return NULL;
}

int evbus_event_partition(const json_t *ev, unsigned partitions)
{
    size_t len;
    const char *k = evbus_partition_key(ev, &len, NULL);
    return k ? (int)evbus_partition_of(k, len, partitions) : -1;
}

int evbus_partition_key_name(char *out, size_t len, const char *stream, unsigned p, bool tagged,
                             const char *suffix)
{
    if (!tagged)
        return snprintf(out, len, "%s%s", stream, suffix);
    return snprintf(out, len, "{%s:%u}%s", stream, p, suffix);
}

/* What the record says: its value, 0 when there is none, -1 on an error
 * (a non-integer record included: someone wrote it by hand). */
static long read_record(redisContext *c, const char *key, char *err, size_t errlen)
{
    redisReply *r = redisCommand(c, "GET %s", key);
    if (!r) {
        snprintf(err, errlen, "redis: GET %s: %s", key, c->errstr[0] ? c->errstr : "no reply");
        return -1;
    }
    long v = -1;
    if (r->type == REDIS_REPLY_NIL) {
        v = 0;
    } else if (r->type == REDIS_REPLY_STRING) {
        char *end;
        v = strtol(r->str, &end, 10);
        if (*end || end == r->str || v < 1 || v > EVBUS_PARTITIONS_MAX) {
            snprintf(err, errlen, "%s holds \"%.40s\", not a partition count (1..%d)", key,
                     r->str, EVBUS_PARTITIONS_MAX);
            v = -1;
        }
    } else {
        snprintf(err, errlen, "redis: GET %s: %s", key,
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    }
    freeReplyObject(r);
    return v;
}

/* 1 when key exists, 0 when not, -1 on an error. */
static int key_exists(redisContext *c, const char *key, char *err, size_t errlen)
{
    redisReply *r = redisCommand(c, "EXISTS %s", key);
    int v = r && r->type == REDIS_REPLY_INTEGER ? r->integer > 0 : -1;
    if (v < 0)
        snprintf(err, errlen, "redis: EXISTS %s: %s", key,
                 !r ? (c->errstr[0] ? c->errstr : "no reply")
                    : r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    if (r)
        freeReplyObject(r);
    return v;
}

int evbus_partitions_check(redisContext *c, const char *stream, unsigned partitions, bool record,
                           unsigned *recorded, char *err, size_t errlen)
{
    return evbus_partitions_check_on(c, c, stream, partitions, record, recorded, err, errlen);
}

int evbus_partitions_check_on(redisContext *c, redisContext *sc, const char *stream,
                              unsigned partitions, bool record, unsigned *recorded, char *err,
                              size_t errlen)
{
    char key[512];
    snprintf(key, sizeof key, "%s" EVBUS_PARTITIONS_RECORD_SUFFIX, stream);
    for (int round = 0; round < 2; round++) {
        long v = read_record(c, key, err, errlen);
        if (v < 0)
            return -1;
        if (v > 0) {
            *recorded = (unsigned)v;
            if ((unsigned)v == partitions)
                return 0;
            snprintf(err, errlen, "Redis records %ld partition%s for stream %s (%s)", v,
                     v == 1 ? "" : "s", stream, key);
            return 1;
        }
        if (partitions <= 1) {
            *recorded = 1;
            return 0;
        }
        int ex = key_exists(sc, stream, err, errlen);
        if (ex < 0)
            return -1;
        if (ex) {
            *recorded = 1;
            snprintf(err, errlen, "stream %s has no record (%s) but its unpartitioned stream "
                     "exists, so it was written with 1 partition", stream, key);
            return 1;
        }
        *recorded = partitions;
        if (!record)
            return 0;
        redisReply *r = redisCommand(c, "SET %s %u NX", key, partitions);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "redis: SET %s: %s", key,
                     !r ? (c->errstr[0] ? c->errstr : "no reply") : r->str);
            if (r)
                freeReplyObject(r);
            return -1;
        }
        bool set = r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
        if (set)
            return 0;
        /* another process recorded first: compare with its count */
    }
    snprintf(err, errlen, "%s: the record changed while it was read", key);
    return -1;
}
