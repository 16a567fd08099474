/*
 * The partition hash and key names (host/client/partition.h): the
 * documented test vectors (computed by an independent implementation of
 * the specification in docs/scale-out.md), the choice of the key, P = 1
 * keeping today's names, tagged names sharing one slot per partition, the
 * spread over partitions, and the small movement when P grows.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "client/cluster.h"
#include "client/partition.h"

typedef struct vector {
    const char *key;
    uint64_t fnv;
    unsigned p1, p2, p12, p1024;
} vector_t;

static const vector_t VECTORS[] = {
    {"", 0xcbf29ce484222325ull, 0, 1, 10, 266},
    {"a", 0xaf63dc4c8601ec8cull, 0, 1, 2, 163},
    {"acme", 0x0724d383f4f6de0full, 0, 0, 7, 621},
    {"order-42", 0x7d1deb86a05662d4ull, 0, 0, 7, 111},
    {"tenant-7", 0xc2efb728e3ebfabdull, 0, 0, 0, 84},
    {"8999fee5-033d-45aa-af5e-e55e1ede8bd9", 0x40b371dc30c5d157ull, 0, 0, 5, 158},
    {"\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87", 0x296130de6f5b7a81ull, 0, 0, 4, 523},
};

Test(partition, matches_the_documented_test_vectors)
{
    for (size_t i = 0; i < sizeof VECTORS / sizeof VECTORS[0]; i++) {
        const vector_t *v = &VECTORS[i];
        size_t n = strlen(v->key);
        cr_expect_eq(evbus_partition_fnv1a64(v->key, n), v->fnv, "fnv1a64(\"%s\")", v->key);
        /* jump of the hash, for 2, 12 and 1024 buckets */
        cr_expect_eq(evbus_partition_jump(v->fnv, 2), v->p2, "\"%s\" / 2", v->key);
        cr_expect_eq(evbus_partition_of(v->key, n, 1), v->p1);
        cr_expect_eq(evbus_partition_of(v->key, n, 2), v->p2, "\"%s\" / 2", v->key);
        cr_expect_eq(evbus_partition_of(v->key, n, 12), v->p12, "\"%s\" / 12", v->key);
        cr_expect_eq(evbus_partition_of(v->key, n, 1024), v->p1024, "\"%s\" / 1024", v->key);
    }
}

Test(partition, the_key_is_partitionkey_then_tenantid_then_id)
{
    json_t *ev = json_pack("{s:s, s:s, s:s}", "id", "e1", "tenantid", "acme", "partitionkey",
                           "order-42");
    size_t len;
    const char *attr;
    const char *k = evbus_partition_key(ev, &len, &attr);
    cr_assert_str_eq(k, "order-42");
    cr_assert_str_eq(attr, "partitionkey");
    cr_assert_eq(evbus_event_partition(ev, 12), 7);
    json_object_set_new(ev, "partitionkey", json_string(""));
    cr_assert_str_eq(evbus_partition_key(ev, &len, &attr), "acme", "empty: not a key");
    cr_assert_str_eq(attr, "tenantid");
    json_object_del(ev, "tenantid");
    cr_assert_str_eq(evbus_partition_key(ev, &len, &attr), "e1");
    cr_assert_str_eq(attr, "id");
    json_object_set_new(ev, "id", json_integer(5));
    cr_assert_null(evbus_partition_key(ev, &len, &attr), "not a string: not a key");
    cr_assert_eq(evbus_event_partition(ev, 12), -1);
    json_decref(ev);
}

Test(partition, one_partition_untagged_keeps_todays_key_names)
{
    char name[128];
    evbus_partition_key_name(name, sizeof name, "evbus:events", 0, false, "");
    cr_assert_str_eq(name, "evbus:events");
    evbus_partition_key_name(name, sizeof name, "evbus:events", 0, false, ":retry");
    cr_assert_str_eq(name, "evbus:events:retry");
    evbus_partition_key_name(name, sizeof name, "evbus:events", 0, false, ":dlq");
    cr_assert_str_eq(name, "evbus:events:dlq");
    cr_assert_eq(evbus_partition_of("anything", 8, 1), 0);
}

Test(partition, a_tagged_partitions_keys_share_one_slot_and_partitions_spread)
{
    static const char *const suffixes[] = {"", ":retry", ":dlq", ":lease", ":paused",
                                           ":retention", ":dedup:h:e1"};
    unsigned slots[12];
    for (unsigned p = 0; p < 12; p++) {
        char name[128];
        evbus_partition_key_name(name, sizeof name, "evbus:events", p, true, "");
        char want[64];
        snprintf(want, sizeof want, "{evbus:events:%u}", p);
        cr_assert_str_eq(name, want);
        slots[p] = evbus_cluster_keyslot(name, strlen(name));
        for (size_t s = 1; s < sizeof suffixes / sizeof suffixes[0]; s++) {
            evbus_partition_key_name(name, sizeof name, "evbus:events", p, true, suffixes[s]);
            cr_assert_eq(evbus_cluster_keyslot(name, strlen(name)), slots[p], "%s", name);
        }
    }
    /* three masters split 0..5460, 5461..10922, 10923..16383 */
    unsigned third[3] = {0};
    for (unsigned p = 0; p < 12; p++)
        third[slots[p] * 3 / 16384]++;
    cr_assert(third[0] && third[1] && third[2], "12 partitions reach all 3 masters (%u/%u/%u)",
              third[0], third[1], third[2]);
}

Test(partition, keys_spread_evenly_and_few_move_when_a_partition_is_added)
{
    enum { N = 12000 };
    unsigned count[13] = {0}, moved = 0;
    for (int i = 0; i < N; i++) {
        char k[32];
        int n = snprintf(k, sizeof k, "customer-%d", i);
        unsigned p12 = evbus_partition_of(k, (size_t)n, 12);
        unsigned p13 = evbus_partition_of(k, (size_t)n, 13);
        cr_assert_lt(p12, 12);
        count[p12]++;
        if (p13 != p12) {
            moved++;
            cr_assert_eq(p13, 12, "a key only ever moves to the new partition");
        }
    }
    for (int p = 0; p < 12; p++)
        cr_expect(count[p] > N / 12 * 8 / 10 && count[p] < N / 12 * 12 / 10,
                  "partition %d has %u of %d keys", p, count[p], N);
    /* about 1/13 of the keys (923) move */
    cr_expect(moved > N / 13 * 8 / 10 && moved < N / 13 * 12 / 10, "%u keys moved", moved);
}
