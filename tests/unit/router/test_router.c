/*
 * Router specification: what a pattern matches, which patterns and types
 * are valid (with their messages), and in which order handlers come back.
 * Every matching row is checked twice, through the trie (router_match) and
 * through the single-pattern matcher (router_pattern_match), and a random
 * cross-check compares the two on generated patterns.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/router.h"

typedef struct match_row {
    const char *pattern;
    const char *type;
    bool match;
} match_row_t;

static const match_row_t match_table[] = {
    /* `**` alone matches everything */
    {"**", "a", true},
    {"**", "a.b", true},
    {"**", "approval.granted.v2", true},
    /* literals */
    {"a", "a", true},
    {"a", "b", false},
    {"a", "a.b", false},
    {"a.b", "a", false},
    {"a.b", "a.b", true},
    {"a.b", "a.bc", false},
    {"a.bc", "a.b", false},
    {"order-created", "order-created", true},
    {"order_created", "order-created", false},
    /* `a.**` vs `a` */
    {"a.**", "a", true},
    {"a.**", "a.b", true},
    {"a.**", "a.b.c.d", true},
    {"a.**", "ab", false},
    {"a.**", "b.a", false},
    {"approval.**", "approval", true},
    {"approval.**", "approvals", false},
    /* `*` is exactly one segment */
    {"*", "a", true},
    {"*", "a.b", false},
    {"a.*", "a", false},
    {"a.*", "a.b", true},
    {"a.*", "a.b.c", false},
    {"*.b", "a.b", true},
    {"*.b", "x.b", true},
    {"*.b", "b", false},
    {"*.b", "a.c", false},
    {"*.b", "a.a.b", false},
    {"a.*.c", "a.b.c", true},
    {"a.*.c", "a.c", false},
    {"a.*.c", "a.b.b.c", false},
    {"a.*.c", "a.b.d", false},
    {"*.*", "a.b", true},
    {"*.*", "a", false},
    /* `a.**.c` with 0..3 middle segments */
    {"a.**.c", "a.c", true},
    {"a.**.c", "a.b.c", true},
    {"a.**.c", "a.b.b.c", true},
    {"a.**.c", "a.x.y.z.c", true},
    {"a.**.c", "a", false},
    {"a.**.c", "a.c.d", false},
    {"a.**.c", "a.c.c", true},
    {"a.**.c", "b.c", false},
    /* leading and combined wildcards */
    {"**.c", "c", true},
    {"**.c", "a.b.c", true},
    {"**.c", "a.b.cd", false},
    {"**.*", "a", true},
    {"**.*", "a.b.c", true},
    {"*.**", "a", true},
    {"*.**", "a.b", true},
    {"**.**", "a.b", true},
    {"a.**.**.b", "a.b", true},
    {"a.**.*.b", "a.b", false},
    {"a.**.*.b", "a.x.b", true},
    {"a.**.b.**.c", "a.b.c", true},
    {"a.**.b.**.c", "a.x.b.y.z.c", true},
    {"a.**.b.**.c", "a.x.y.c", false},
    /* a wildcard in a pattern is not a literal `*` in a type */
    {"a.*", "a.*", false},
};

static bool via_router(const char *pattern, const char *type)
{
    router_t *r = router_new();
    int target;
    char err[160];
    cr_assert_eq(router_add(r, pattern, 0, 0, &target, err, sizeof err), 0, "%s", err);
    router_freeze(r);
    router_cache_t *c = router_cache_new();
    router_list_t l = router_match(r, c, type);
    bool hit = l.count == 1 && l.items[0].target == &target;
    cr_assert(l.count <= 1);
    router_cache_free(c);
    router_free(r);
    return hit;
}

Test(router_semantics, match_table)
{
    for (size_t i = 0; i < sizeof match_table / sizeof match_table[0]; i++) {
        const match_row_t *row = &match_table[i];
        cr_expect_eq(router_pattern_match(row->pattern, row->type), row->match,
                     "router_pattern_match(\"%s\", \"%s\") should be %d", row->pattern, row->type,
                     row->match);
        cr_expect_eq(via_router(row->pattern, row->type), row->match,
                     "router_match with \"%s\" on \"%s\" should be %d", row->pattern, row->type,
                     row->match);
    }
}

typedef struct syntax_row {
    const char *text;
    const char *error; /* NULL = valid */
} syntax_row_t;

static const syntax_row_t pattern_table[] = {
    {"a", NULL},
    {"approval.granted", NULL},
    {"approval.**", NULL},
    {"**", NULL},
    {"*", NULL},
    {"*.b.**", NULL},
    {"order-created.v_2", NULL},
    {"0.9", NULL},
    {"", "empty pattern"},
    {"approval.", "empty segment at offset 9"},
    {".a", "empty segment at offset 0"},
    {"a..b", "empty segment at offset 2"},
    {".", "empty segment at offset 0"},
    {"***", "segment '***' at offset 0: a wildcard must be a whole segment, '*' or '**'"},
    {"a*", "segment 'a*' at offset 0: a wildcard must be a whole segment, '*' or '**'"},
    {"x.*b", "segment '*b' at offset 2: a wildcard must be a whole segment, '*' or '**'"},
    {"x.a**", "segment 'a**' at offset 2: a wildcard must be a whole segment, '*' or '**'"},
    {"a b", "whitespace at offset 1"},
    {" a", "whitespace at offset 0"},
    {"a\t", "whitespace at offset 1"},
    {"Approval", "uppercase character 'A' at offset 0 (use lowercase)"},
    {"a.bC", "uppercase character 'C' at offset 3 (use lowercase)"},
    {"a/b", "invalid character '/' at offset 1 (allowed: a-z 0-9 _ -)"},
    {"a.?", "invalid character '?' at offset 2 (allowed: a-z 0-9 _ -)"},
    {"\xc3\xa9", "invalid byte 0xc3 at offset 0 (allowed: a-z 0-9 _ -)"},
};

Test(router_syntax, pattern_table)
{
    for (size_t i = 0; i < sizeof pattern_table / sizeof pattern_table[0]; i++) {
        const syntax_row_t *row = &pattern_table[i];
        char err[160] = "";
        int rc = router_pattern_check(row->text, err, sizeof err);
        if (!row->error) {
            cr_expect_eq(rc, 0, "pattern \"%s\" should be valid, got: %s", row->text, err);
        } else {
            cr_expect_eq(rc, -1, "pattern \"%s\" should be invalid", row->text);
            cr_expect_str_eq(err, row->error, "pattern \"%s\"", row->text);
        }
    }
}

static const syntax_row_t type_table[] = {
    {"a", NULL},
    {"approval.granted", NULL},
    {"order-created.v_2", NULL},
    {"", "empty event type"},
    {"a.", "empty segment at offset 2"},
    {"a.*", "wildcard '*' at offset 2 is not allowed in an event type"},
    {"**", "wildcard '*' at offset 0 is not allowed in an event type"},
    {"A.b", "uppercase character 'A' at offset 0 (use lowercase)"},
    {"a b", "whitespace at offset 1"},
    {"a:b", "invalid character ':' at offset 1 (allowed: a-z 0-9 _ -)"},
};

Test(router_syntax, type_table)
{
    for (size_t i = 0; i < sizeof type_table / sizeof type_table[0]; i++) {
        const syntax_row_t *row = &type_table[i];
        char err[160] = "";
        int rc = router_type_check(row->text, err, sizeof err);
        if (!row->error) {
            cr_expect_eq(rc, 0, "type \"%s\" should be valid, got: %s", row->text, err);
        } else {
            cr_expect_eq(rc, -1, "type \"%s\" should be invalid", row->text);
            cr_expect_str_eq(err, row->error, "type \"%s\"", row->text);
        }
    }
}

Test(router_syntax, null_error_buffer_is_allowed)
{
    cr_expect_eq(router_pattern_check("a..b", NULL, 0), -1);
    cr_expect_eq(router_type_check(NULL, NULL, 0), -1);
}

Test(router_syntax, truncates_long_messages_to_the_buffer)
{
    char err[8];
    cr_assert_eq(router_pattern_check("a..b", err, sizeof err), -1);
    cr_expect_str_eq(err, "empty s");
}

Test(router_build, add_rejects_an_invalid_pattern_with_its_reason)
{
    router_t *r = router_new();
    char err[160];
    cr_expect_eq(router_add(r, "a..b", 0, 0, r, err, sizeof err), -1);
    cr_expect_str_eq(err, "invalid pattern 'a..b': empty segment at offset 2");
    cr_expect_eq(router_count(r), 0);
    router_free(r);
}

Test(router_build, add_after_freeze_fails)
{
    router_t *r = router_new();
    char err[160];
    cr_assert_eq(router_add(r, "a", 0, 0, r, err, sizeof err), 0);
    router_freeze(r);
    cr_expect_eq(router_add(r, "b", 0, 1, r, err, sizeof err), -1);
    cr_expect_str_eq(err, "router is frozen; cannot add 'b'");
    cr_expect_eq(router_count(r), 1);
    router_free(r);
}

Test(router_build, free_null_is_fine)
{
    router_free(NULL);
    router_cache_free(NULL);
}

/* Targets are just addresses; these give readable names in assertions. */
static int t_a, t_b, t_c, t_d, t_e;

typedef struct sub_row {
    const char *pattern;
    int prio;
    uint32_t seq;
    void *target;
} sub_row_t;

static router_t *build(const sub_row_t *subs, size_t n)
{
    router_t *r = router_new();
    char err[160];
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(router_add(r, subs[i].pattern, subs[i].prio, subs[i].seq, subs[i].target, err,
                                sizeof err),
                     0, "%s", err);
    router_freeze(r);
    return r;
}

#define SUBS(...) ((const sub_row_t[]){__VA_ARGS__})
#define NSUBS(...) (sizeof SUBS(__VA_ARGS__) / sizeof SUBS(__VA_ARGS__)[0])
#define BUILD(...) build(SUBS(__VA_ARGS__), NSUBS(__VA_ARGS__))

Test(router_order, sorted_by_priority_ascending)
{
    router_t *r = BUILD({"a.**", 30, 0, &t_a}, {"a.b", 10, 1, &t_b}, {"*.b", 20, 2, &t_c},
                        {"**", -5, 3, &t_d});
    router_cache_t *c = router_cache_new();
    router_list_t l = router_match(r, c, "a.b");
    cr_assert_eq(l.count, 4);
    cr_expect_eq(l.items[0].target, &t_d);
    cr_expect_eq(l.items[0].priority, -5);
    cr_expect_eq(l.items[1].target, &t_b);
    cr_expect_eq(l.items[2].target, &t_c);
    cr_expect_eq(l.items[3].target, &t_a);
    cr_expect_eq(l.items[3].seq, 0);
    router_cache_free(c);
    router_free(r);
}

Test(router_order, equal_priority_follows_manifest_order)
{
    /* added out of manifest order on purpose: seq decides, not add order */
    router_t *r = BUILD({"a", 0, 7, &t_a}, {"**", 0, 2, &t_b}, {"a", 0, 5, &t_c}, {"*", 0, 0, &t_d});
    router_cache_t *c = router_cache_new();
    router_list_t l = router_match(r, c, "a");
    cr_assert_eq(l.count, 4);
    cr_expect_eq(l.items[0].target, &t_d);
    cr_expect_eq(l.items[1].target, &t_b);
    cr_expect_eq(l.items[2].target, &t_c);
    cr_expect_eq(l.items[3].target, &t_a);
    router_cache_free(c);
    router_free(r);
}

Test(router_order, full_ties_follow_add_order)
{
    router_t *r = BUILD({"a", 1, 1, &t_c}, {"a", 1, 1, &t_a}, {"a", 1, 1, &t_b});
    router_cache_t *c = router_cache_new();
    router_list_t l = router_match(r, c, "a");
    cr_assert_eq(l.count, 3);
    cr_expect_eq(l.items[0].target, &t_c);
    cr_expect_eq(l.items[1].target, &t_a);
    cr_expect_eq(l.items[2].target, &t_b);
    router_cache_free(c);
    router_free(r);
}

Test(router_order, duplicate_target_keeps_its_lowest_priority_then_seq)
{
    router_t *r = BUILD({"a.**", 20, 0, &t_a}, {"a.b", 5, 3, &t_a}, {"*.b", 5, 1, &t_a},
                        {"a.b", 10, 2, &t_b}, {"a.b", 10, 4, &t_b});
    router_cache_t *c = router_cache_new();
    router_list_t l = router_match(r, c, "a.b");
    cr_assert_eq(l.count, 2);
    cr_expect_eq(l.items[0].target, &t_a);
    cr_expect_eq(l.items[0].priority, 5);
    cr_expect_eq(l.items[0].seq, 1);
    cr_expect_eq(l.items[1].target, &t_b);
    cr_expect_eq(l.items[1].seq, 2);
    /* on a type only one of its patterns matches, that one is used */
    l = router_match(r, c, "a.c");
    cr_assert_eq(l.count, 1);
    cr_expect_eq(l.items[0].target, &t_a);
    cr_expect_eq(l.items[0].priority, 20);
    router_cache_free(c);
    router_free(r);
}

Test(router_match, nothing_matches_gives_an_empty_list)
{
    router_t *r = BUILD({"a.*", 0, 0, &t_a}, {"b.**", 0, 1, &t_b});
    router_cache_t *c = router_cache_new();
    cr_expect_eq(router_match(r, c, "a").count, 0);
    cr_expect_eq(router_match(r, c, "c.a").count, 0);
    cr_expect_eq(router_match(r, c, "a").count, 0); /* cached empty result */
    router_cache_free(c);
    router_free(r);
}

Test(router_match, empty_router_matches_nothing)
{
    router_t *r = router_new();
    router_freeze(r);
    router_cache_t *c = router_cache_new();
    cr_expect_eq(router_match(r, c, "a.b").count, 0);
    router_cache_free(c);
    router_free(r);
}

Test(router_match, invalid_types_match_nothing_even_catch_all)
{
    router_t *r = BUILD({"**", 0, 0, &t_a}, {"a.*", 0, 1, &t_b});
    router_cache_t *c = router_cache_new();
    cr_expect_eq(router_match(r, c, "").count, 0);
    cr_expect_eq(router_match(r, c, "a.*").count, 0);
    cr_expect_eq(router_match(r, c, "A").count, 0);
    cr_expect_eq(router_match(r, c, "a..b").count, 0);
    cr_expect_eq(router_match(r, c, NULL).count, 0);
    cr_expect_eq(router_match(r, c, "a.x").count, 2);
    router_cache_free(c);
    router_free(r);
}

Test(router_match, literal_and_wildcard_on_the_same_level_both_match)
{
    router_t *r = BUILD({"a.b.c", 0, 0, &t_a}, {"a.*.c", 0, 1, &t_b}, {"a.**", 0, 2, &t_c},
                        {"a.b.*", 0, 3, &t_d}, {"a.c.c", 0, 4, &t_e});
    router_cache_t *c = router_cache_new();
    router_list_t l = router_match(r, c, "a.b.c");
    cr_assert_eq(l.count, 4);
    cr_expect_eq(l.items[0].target, &t_a);
    cr_expect_eq(l.items[1].target, &t_b);
    cr_expect_eq(l.items[2].target, &t_c);
    cr_expect_eq(l.items[3].target, &t_d);
    l = router_match(r, c, "a.c.c");
    cr_assert_eq(l.count, 3);
    cr_expect_eq(l.items[0].target, &t_b);
    cr_expect_eq(l.items[1].target, &t_c);
    cr_expect_eq(l.items[2].target, &t_e);
    router_cache_free(c);
    router_free(r);
}

Test(router_cache, a_different_router_invalidates_the_cache)
{
    router_t *r1 = BUILD({"a", 0, 0, &t_a});
    router_t *r2 = BUILD({"a", 0, 0, &t_b}, {"b", 0, 1, &t_c});
    router_cache_t *c = router_cache_new();
    router_list_t l = router_match(r1, c, "a");
    cr_assert_eq(l.count, 1);
    cr_expect_eq(l.items[0].target, &t_a);
    l = router_match(r2, c, "a");
    cr_assert_eq(l.count, 1);
    cr_expect_eq(l.items[0].target, &t_b);
    l = router_match(r1, c, "a");
    cr_assert_eq(l.count, 1);
    cr_expect_eq(l.items[0].target, &t_a);
    router_cache_free(c);
    router_free(r1);
    router_free(r2);
}

Test(router_cache, a_new_router_at_a_freed_address_is_not_confused)
{
    router_cache_t *c = router_cache_new();
    for (int round = 0; round < 50; round++) {
        void *target = round % 2 ? (void *)&t_a : (void *)&t_b;
        router_t *r = BUILD({"x.y", 0, 0, target});
        router_list_t l = router_match(r, c, "x.y");
        cr_assert_eq(l.count, 1);
        cr_assert_eq(l.items[0].target, target, "round %d", round);
        router_free(r); /* the next router may well reuse this address */
    }
    router_cache_free(c);
}

Test(router_cache, stays_correct_past_its_bound)
{
    router_t *r = BUILD({"t.*", 1, 0, &t_a}, {"t.7", 0, 1, &t_b});
    router_cache_t *c = router_cache_new();
    char type[32];
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < 3000; i++) {
            snprintf(type, sizeof type, "t.%d", i);
            router_list_t l = router_match(r, c, type);
            if (i == 7) {
                cr_assert_eq(l.count, 2);
                cr_assert_eq(l.items[0].target, &t_b);
            } else {
                cr_assert_eq(l.count, 1, "%s", type);
                cr_assert_eq(l.items[0].target, &t_a);
            }
        }
    router_cache_free(c);
    router_free(r);
}

Test(router_match, many_subscriptions_resolve_only_the_matching_ones)
{
    enum { N = 20000 };
    static int targets[N];
    router_t *r = router_new();
    char err[160], pat[48];
    for (int i = 0; i < N; i++) {
        snprintf(pat, sizeof pat, "svc%d.%s", i % 100, i % 3 == 0 ? "*" : i % 3 == 1 ? "**" : "done");
        cr_assert_eq(router_add(r, pat, i % 7, (uint32_t)i, &targets[i], err, sizeof err), 0, "%s", err);
    }
    router_freeze(r);
    cr_expect_eq(router_count(r), N);
    router_cache_t *c = router_cache_new();
    router_list_t l = router_match(r, c, "svc42.done");
    /* i % 100 == 42: 200 subscriptions, all three shapes match "done" */
    cr_assert_eq(l.count, N / 100);
    for (size_t k = 0; k < l.count; k++) {
        int idx = (int)(l.items[k].seq);
        cr_assert_eq(idx % 100, 42);
        cr_assert_eq(l.items[k].target, &targets[idx]);
        if (k > 0) {
            const router_entry_t *p = &l.items[k - 1], *q = &l.items[k];
            cr_assert(p->priority < q->priority || (p->priority == q->priority && p->seq < q->seq));
        }
    }
    l = router_match(r, c, "svc42");
    cr_expect_eq(l.count, N / 300 + 1); /* only the `**` ones (i % 3 == 1) */
    l = router_match(r, c, "svc42.x.y");
    cr_expect_eq(l.count, N / 300 + 1);
    router_cache_free(c);
    router_free(r);
}

/* Random patterns over a tiny alphabet, checked against the independent
 * single-pattern matcher on every type up to length 4. */
Test(router_match, trie_agrees_with_single_pattern_matcher)
{
    static const char *segs[] = {"a", "b", "*", "**"};
    static const char *tsegs[] = {"a", "b"};
    enum { NPAT = 300 };
    static char pats[NPAT][32];
    static int targets[NPAT];
    unsigned seed = 12345;
    router_t *r = router_new();
    char err[160];
    for (int i = 0; i < NPAT; i++) {
        int len = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 4;
        pats[i][0] = '\0';
        for (int k = 0; k < len; k++) {
            seed = seed * 1103515245u + 12345u;
            if (k)
                strcat(pats[i], ".");
            strcat(pats[i], segs[(seed >> 16) % 4]);
        }
        cr_assert_eq(router_add(r, pats[i], 0, (uint32_t)i, &targets[i], err, sizeof err), 0);
    }
    router_freeze(r);
    router_cache_t *c = router_cache_new();
    char type[32];
    for (int len = 1; len <= 4; len++)
        for (int bits = 0; bits < (1 << len); bits++) {
            type[0] = '\0';
            for (int k = 0; k < len; k++) {
                if (k)
                    strcat(type, ".");
                strcat(type, tsegs[(bits >> k) & 1]);
            }
            router_list_t l = router_match(r, c, type);
            size_t expected = 0;
            for (int i = 0; i < NPAT; i++)
                if (router_pattern_match(pats[i], type)) {
                    bool present = false;
                    for (size_t k = 0; k < l.count; k++)
                        present |= l.items[k].target == &targets[i];
                    cr_assert(present, "%s should match %s", pats[i], type);
                    expected++;
                }
            cr_assert_eq(l.count, expected, "type %s", type);
        }
    router_cache_free(c);
    router_free(r);
}

typedef struct thread_arg {
    const router_t *r;
    int hits;
} thread_arg_t;

static void *match_many(void *p)
{
    thread_arg_t *a = p;
    router_cache_t *c = router_cache_new();
    char type[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(type, sizeof type, "a.%d.z", i % 1500);
        router_list_t l = router_match(a->r, c, type);
        if (l.count == 2 && l.items[0].target == &t_b && l.items[1].target == &t_a)
            a->hits++;
    }
    router_cache_free(c);
    return NULL;
}

Test(router_threads, a_frozen_router_is_shared_by_threads_with_own_caches)
{
    router_t *r = BUILD({"a.**", 5, 0, &t_a}, {"a.*.z", 1, 1, &t_b});
    pthread_t th[4];
    thread_arg_t args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg_t){.r = r, .hits = 0};
        cr_assert_eq(pthread_create(&th[i], NULL, match_many, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_expect_eq(args[i].hits, 5000);
    }
    router_free(r);
}
