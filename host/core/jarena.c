/* jarena — see jarena.h. */
#include "core/jarena.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARENAS 256

static atomic_bool installed;
static _Atomic(uintptr_t) blocks[MAX_ARENAS]; /* registered block bases, 0 = free slot */
static _Thread_local jarena_t *current;

static bool in_arena(const void *p)
{
    uintptr_t base = (uintptr_t)p & ~(uintptr_t)(JARENA_BLOCK - 1);
    for (size_t i = 0; i < MAX_ARENAS; i++) {
        uintptr_t b = atomic_load_explicit(&blocks[i], memory_order_relaxed);
        if (b == base)
            return true;
    }
    return false;
}

static void *arena_malloc(size_t size)
{
    jarena_t *a = current;
    if (a) {
        size_t need = (size + 15) & ~(size_t)15;
        if (a->used + need <= JARENA_BLOCK) {
            void *p = a->base + a->used;
            a->used += need;
            return p;
        }
        a->overflowed = true;
    }
    return malloc(size);
}

static void arena_free(void *p)
{
    if (p && !in_arena(p))
        free(p);
}

void jarena_install(void)
{
    if (!atomic_exchange(&installed, true))
        json_set_alloc_funcs(arena_malloc, arena_free);
}

bool jarena_installed(void) { return atomic_load(&installed); }

int jarena_init(jarena_t *a)
{
    memset(a, 0, sizeof *a);
    if (!jarena_installed())
        return -1;
    a->base = aligned_alloc(JARENA_BLOCK, JARENA_BLOCK);
    if (!a->base)
        return -1;
    for (size_t i = 0; i < MAX_ARENAS; i++) {
        uintptr_t expect = 0;
        if (atomic_compare_exchange_strong(&blocks[i], &expect, (uintptr_t)a->base))
            return 0;
    }
    free(a->base);
    a->base = NULL;
    return -1;
}

void jarena_destroy(jarena_t *a)
{
    if (!a->base)
        return;
    for (size_t i = 0; i < MAX_ARENAS; i++)
        if (atomic_load(&blocks[i]) == (uintptr_t)a->base)
            atomic_store(&blocks[i], 0);
    free(a->base);
    memset(a, 0, sizeof *a);
}

void jarena_enter(jarena_t *a) { current = a && a->base ? a : NULL; }

void jarena_leave(void) { current = NULL; }

void jarena_reset(jarena_t *a)
{
    a->used = 0;
    a->overflowed = false;
}
