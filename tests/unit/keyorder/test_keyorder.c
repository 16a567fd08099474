/*
 * keyorder — the contract of host/core/keyorder.h without Redis: which key
 * an event has, that its lane is stable, and how the table of held keys
 * moves through hold, enqueue and release (and what it writes for each),
 * up to its cap.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/keyorder.h"
#include "util/metrics.h"

static const char *key_of(const char *json, keyorder_key_t *k)
{
    static char text[KEYORDER_KEY_MAX + 1];
    if (keyorder_key_of(json, strlen(json), k) != 0)
        return NULL;
    memcpy(text, k->text, k->len);
    text[k->len] = '\0';
    return text;
}

static keyorder_key_t key(const char *text)
{
    keyorder_key_t k;
    keyorder_key_set(&k, text, strlen(text));
    return k;
}

/* Captured writes: each command's words joined by spaces. */
static char written[16][256];
static size_t n_written;

static void capture(void *arg, int argc, const char **argv, const size_t *lens)
{
    (void)arg;
    cr_assert_lt(n_written, 16);
    char *out = written[n_written++];
    size_t off = 0;
    for (int i = 0; i < argc && off < 250; i++) {
        /* the release script's text is long: its first word stands for it */
        size_t l = argv[0][0] == 'E' && i == 1 ? 5 : lens[i];
        int w = snprintf(out + off, 256 - off, "%s%.*s", i ? " " : "", (int)l, argv[i]);
        off += w > 0 ? (size_t)w : 0;
    }
}

static void reset(void) { n_written = 0; }

Test(keyorder_key, partitionkey_then_tenantid_then_id)
{
    keyorder_key_t k;
    cr_expect_str_eq(key_of("{\"id\":\"e1\",\"tenantid\":\"t\",\"partitionkey\":\"order-7\"}", &k),
                     "order-7");
    cr_expect_str_eq(key_of("{\"id\":\"e1\",\"tenantid\":\"t\"}", &k), "t");
    cr_expect_str_eq(key_of("{\"id\":\"e1\"}", &k), "e1");
    /* null and "" are absent: the next attribute decides */
    cr_expect_str_eq(key_of("{\"partitionkey\":null,\"tenantid\":\"\",\"id\":\"e2\"}", &k), "e2");
}

Test(keyorder_key, only_top_level_attributes_count)
{
    keyorder_key_t k;
    const char *ev = "{\"data\":{\"partitionkey\":\"inner\",\"x\":[1,{\"id\":\"no\"}],"
                     "\"s\":\"a \\\"quoted\\\" }\"},\"id\":\"outer\"}";
    cr_expect_str_eq(key_of(ev, &k), "outer");
}

Test(keyorder_key, only_a_non_empty_string_is_a_key_as_for_partitions)
{
    keyorder_key_t k;
    cr_expect_str_eq(key_of("{ \"partitionkey\" : 42 , \"id\": \"e\" }", &k), "e");
    cr_expect_str_eq(key_of("{\"partitionkey\":{\"a\":1},\"tenantid\":\"t\"}", &k), "t");
}

Test(keyorder_key, escapes_are_decoded_so_one_key_has_one_spelling)
{
    keyorder_key_t k;
    cr_expect_str_eq(key_of("{\"partitionkey\":\"a\\u0062\\\"c\"}", &k), "ab\"c");
    cr_expect_str_eq(key_of("{\"partitionkey\":\"ab\\\"c\"}", &k), "ab\"c");
}

Test(keyorder_key, no_key_in_a_non_object_or_an_object_without_one)
{
    keyorder_key_t k;
    cr_expect_null(key_of("[1,2]", &k));
    cr_expect_null(key_of("not json", &k));
    cr_expect_null(key_of("{\"type\":\"x\"}", &k));
    cr_expect_null(key_of("{\"id\":\"unterminated", &k));
    cr_expect_eq(k.len, 0);
}

Test(keyorder_key, a_long_key_is_cut_to_the_maximum)
{
    char ev[KEYORDER_KEY_MAX * 2 + 64];
    char longkey[KEYORDER_KEY_MAX * 2];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    snprintf(ev, sizeof ev, "{\"partitionkey\":\"%s\"}", longkey);
    keyorder_key_t k;
    cr_assert_not_null(key_of(ev, &k));
    cr_expect_eq(k.len, KEYORDER_KEY_MAX);
}

static const char *ev_with_key(const char *text)
{
    static char ev[128];
    snprintf(ev, sizeof ev, "{\"id\":\"x\",\"partitionkey\":\"%s\"}", text);
    return ev;
}

/* The hash is client/partition.h's: FNV-1a 64 (docs/scale-out.md's vectors). */
Test(keyorder_lane, the_hash_is_the_partition_hash)
{
    keyorder_key_t k = key("order-42");
    cr_expect_eq(k.hash, 0x7d1deb86a05662d4ULL);
    k = key("a");
    cr_expect_eq(k.hash, 0xaf63dc4c8601ec8cULL);
}

Test(keyorder_lane, stable_in_range_and_spread)
{
    unsigned seen[4] = {0};
    for (int i = 0; i < 400; i++) {
        char text[32];
        snprintf(text, sizeof text, "key-%d", i);
        keyorder_key_t k = key(text);
        unsigned l = keyorder_lane(&k, 4);
        cr_assert_lt(l, 4);
        cr_expect_eq(keyorder_lane(&k, 4), l, "the same key always has the same lane");
        keyorder_key_t again;
        cr_assert_eq(keyorder_key_of(ev_with_key(text), strlen(ev_with_key(text)), &again), 0);
        cr_expect_eq(keyorder_lane(&again, 4), l, "read from an event or set: one lane");
        seen[l]++;
    }
    for (int l = 0; l < 4; l++)
        cr_expect_gt(seen[l], 50, "lane %d got %u of 400 keys", l, seen[l]);
    keyorder_key_t k = key("x");
    cr_expect_eq(keyorder_lane(&k, 1), 0);
}

Test(keyorder_table, hold_then_release_frees_the_key_and_writes_both_steps)
{
    keyorder_t *ko = keyorder_new("s", 2, 100);
    keyorder_key_t k = key("K");
    reset();
    cr_expect_not(keyorder_held(ko, "a/main", &k));
    cr_assert_eq(keyorder_hold(ko, "a/main", &k, capture, NULL), 0);
    cr_expect(keyorder_held(ko, "a/main", &k));
    cr_expect_not(keyorder_held(ko, "b/main", &k), "a hold is per handler");
    cr_expect_eq(keyorder_held_total(ko), 1);
    cr_assert_eq(n_written, 1);
    cr_expect_str_eq(written[0], "HSETNX s:keyhold a/main\nK 0");
    reset();
    cr_assert_eq(keyorder_hold(ko, "a/main", &k, capture, NULL), 0);
    cr_expect_eq(n_written, 0, "holding a held key writes nothing");
    keyorder_release(ko, "a/main", &k, capture, NULL);
    cr_expect_not(keyorder_held(ko, "a/main", &k));
    cr_expect_eq(keyorder_held_total(ko), 0);
    cr_assert_eq(n_written, 1);
    cr_expect_str_eq(written[0], "EVAL local 3 s:keyhold s:keyq:a/main:K s a/main\nK");
    keyorder_free(ko);
}

Test(keyorder_table, each_follower_keeps_the_key_held_for_one_more_release)
{
    keyorder_t *ko = keyorder_new("s", 1, 100);
    keyorder_key_t k = key("K");
    keyorder_hold(ko, "h", &k, capture, NULL);
    reset();
    keyorder_enqueue(ko, "h", &k, "{\"ko\":1}\n{}", 11, capture, NULL);
    keyorder_enqueue(ko, "h", &k, "{\"ko\":1}\n{}", 11, capture, NULL);
    cr_assert_eq(n_written, 4);
    cr_expect_str_eq(written[0], "RPUSH s:keyq:h:K {\"ko\":1}\n{}");
    cr_expect_str_eq(written[1], "HINCRBY s:keyhold h\nK 1");
    keyorder_release(ko, "h", &k, capture, NULL); /* the first follower owns it now */
    cr_expect(keyorder_held(ko, "h", &k));
    keyorder_release(ko, "h", &k, capture, NULL); /* the second */
    cr_expect(keyorder_held(ko, "h", &k));
    keyorder_release(ko, "h", &k, capture, NULL); /* nobody left */
    cr_expect_not(keyorder_held(ko, "h", &k));
    keyorder_free(ko);
}

Test(keyorder_table, at_the_cap_a_new_hold_is_refused_and_counted)
{
    uint64_t full = METRIC_GET(keyorder_table_full);
    keyorder_t *ko = keyorder_new("s", 2, 4); /* two keys per lane */
    size_t held = 0, refused = 0;
    for (int i = 0; i < 40; i++) {
        char text[16];
        snprintf(text, sizeof text, "k%d", i);
        keyorder_key_t k = key(text);
        reset();
        if (keyorder_hold(ko, "h", &k, capture, NULL) == 0) {
            held++;
            cr_expect_eq(n_written, 1);
        } else {
            refused++;
            cr_expect_eq(n_written, 0, "a refused hold writes nothing");
            cr_expect_not(keyorder_held(ko, "h", &k));
        }
    }
    cr_expect_eq(held, 4);
    cr_expect_eq(keyorder_held_total(ko), 4);
    cr_expect_eq(METRIC_GET(keyorder_table_full) - full, refused);
    cr_expect_eq(METRIC_GET(keyorder_keys_held), 4);
    keyorder_free(ko);
    cr_expect_eq(METRIC_GET(keyorder_keys_held), 0);
}

Test(keyorder_table, releasing_a_key_the_table_does_not_know_still_hands_it_on)
{
    keyorder_t *ko = keyorder_new("s", 1, 100);
    keyorder_key_t k = key("K");
    reset();
    keyorder_release(ko, "h", &k, capture, NULL);
    cr_assert_eq(n_written, 1, "Redis may hold followers the table lost");
    cr_expect_eq(keyorder_held_total(ko), 0);
    keyorder_free(ko);
}
