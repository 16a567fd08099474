/*
 * partition — the partition hash and the partition key names of
 * partition.h.  Deliberately small and dependency-free (jansson only to
 * read the event's attributes), since every publisher will call it.
 */
#include <stdio.h>
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
