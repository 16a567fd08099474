/*
 * jarena: jansson's free() must tell a pointer inside any live arena (to be
 * ignored: the arena is dropped whole) from a heap pointer (to be freed).
 * Getting it wrong either way shows: glibc aborts on free() of a pointer
 * inside a block and ASan reports it; a heap node not freed is a leak that
 * LeakSanitizer reports in the sanitizer build.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/jarena.h"

/* A small tree allocated from `a`, or from the heap when a is NULL. */
static json_t *tree_in(jarena_t *a)
{
    if (a)
        jarena_enter(a);
    json_t *t = json_pack("{s:s, s:[i, i], s:{s:b}}", "id", "6f1c2b1e-0000-4000-8000-000000000001",
                          "n", 1, 2, "data", "ok", 1);
    jarena_leave();
    cr_assert_not_null(t);
    return t;
}

static bool inside(const jarena_t *a, const void *p)
{
    return (const char *)p >= a->base && (const char *)p < a->base + JARENA_BLOCK;
}

Test(jarena, a_tree_in_an_arena_is_dropped_by_decref_and_reset)
{
    jarena_install();
    jarena_t a;
    cr_assert_eq(jarena_init(&a), 0);
    json_t *t = tree_in(&a);
    cr_expect(inside(&a, t), "the tree was not allocated from the arena");
    cr_expect_gt(a.used, 0);
    json_decref(t); /* frees nothing: every node is the arena's */
    jarena_reset(&a);
    cr_expect_eq(a.used, 0);
    json_t *h = tree_in(NULL);
    cr_expect_not(inside(&a, h));
    json_decref(h); /* freed: LeakSanitizer would report it otherwise */
    jarena_destroy(&a);
}

Test(jarena, an_overflowed_tree_frees_its_heap_part_only)
{
    jarena_install();
    jarena_t a;
    cr_assert_eq(jarena_init(&a), 0);
    size_t n = JARENA_BLOCK / 64 * 3; /* more nodes than one block holds */
    jarena_enter(&a);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(json_array_append_new(arr, json_integer((json_int_t)i)), 0);
    jarena_leave();
    cr_expect(a.overflowed);
    cr_expect_eq(json_array_size(arr), n);
    json_decref(arr);
    jarena_destroy(&a);
}

/* As many arenas as can be live at once: each one's tree is recognised
 * when freed, from the first registered to the last; one more is refused
 * (the dispatcher then parses on the heap) until one is destroyed. */
Test(jarena, every_live_arena_is_recognised_when_all_are_taken)
{
    enum { LIMIT = 256 };
    jarena_install();
    jarena_t as[LIMIT + 1];
    for (size_t i = 0; i < LIMIT; i++)
        cr_assert_eq(jarena_init(&as[i]), 0, "arena %zu was refused", i);
    cr_expect_eq(jarena_init(&as[LIMIT]), -1);
    for (size_t i = 0; i < LIMIT; i++) {
        json_t *t = tree_in(&as[i]);
        cr_assert(inside(&as[i], t));
        json_decref(t);
    }
    jarena_destroy(&as[0]);
    cr_assert_eq(jarena_init(&as[LIMIT]), 0);
    json_t *t = tree_in(&as[LIMIT]);
    cr_assert(inside(&as[LIMIT], t));
    json_decref(t);
    for (size_t i = 1; i <= LIMIT; i++)
        jarena_destroy(&as[i]);
}

Test(jarena, a_destroyed_arena_gives_its_pages_back)
{
    jarena_install();
    jarena_t a;
    cr_assert_eq(jarena_init(&a), 0);
    memset(a.base, 0x5a, 4096);
    char *first = a.base;
    jarena_destroy(&a);
    cr_assert_eq(jarena_init(&a), 0);
    cr_expect_eq(a.base, first, "the freed block was not the one reused");
    cr_expect_eq(a.base[0], 0, "the block kept its pages (and its memory)");
    jarena_destroy(&a);
}
