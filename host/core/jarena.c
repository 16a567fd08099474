/* jarena — see jarena.h. */
#include "core/jarena.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MAX_ARENAS 256

/* Every block lies in one region reserved at install, so jansson's free() —
 * called for heap pointers of every thread too — tells an arena's pointer
 * from a heap one with a single range check, whatever the number of live
 * arenas.  The reservation is address space only (PROT_NONE, so not even
 * strict overcommit counts it): a block becomes writable when an arena
 * takes it, and its pages go back to the system, inaccessible again, when
 * the arena is destroyed, so a tree used after that faults. */
static atomic_bool installed;
static char *region;         /* set once, before threads start; NULL if refused */
static uintptr_t region_len; /* 0 while there is no region */
static atomic_bool taken[MAX_ARENAS]; /* block i belongs to a live arena */
static _Thread_local jarena_t *current;

static bool in_arena(const void *p)
{
    return (uintptr_t)p - (uintptr_t)region < region_len;
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
    if (atomic_exchange(&installed, true))
        return;
    void *r = mmap(NULL, MAX_ARENAS * JARENA_BLOCK, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    /* without the region every jarena_init fails and the dispatcher parses
     * on the heap; in_arena then matches nothing a heap can return */
    if (r != MAP_FAILED) {
        region = r;
        region_len = (uintptr_t)MAX_ARENAS * JARENA_BLOCK;
    }
    json_set_alloc_funcs(arena_malloc, arena_free);
}

bool jarena_installed(void) { return atomic_load(&installed); }

int jarena_init(jarena_t *a)
{
    memset(a, 0, sizeof *a);
    if (!jarena_installed() || !region)
        return -1;
    for (size_t i = 0; i < MAX_ARENAS; i++) {
        bool expect = false;
        if (!atomic_compare_exchange_strong(&taken[i], &expect, true))
            continue;
        char *b = region + i * JARENA_BLOCK;
        if (mprotect(b, JARENA_BLOCK, PROT_READ | PROT_WRITE) != 0) {
            atomic_store(&taken[i], false);
            return -1;
        }
        a->base = b;
        return 0;
    }
    return -1;
}

void jarena_destroy(jarena_t *a)
{
    if (!a->base)
        return;
    size_t i = (size_t)(a->base - region) / JARENA_BLOCK;
    /* back to reserved address space: the pages go back to the system
     * (the next arena here starts from zero pages) */
    madvise(a->base, JARENA_BLOCK, MADV_DONTNEED);
    mprotect(a->base, JARENA_BLOCK, PROT_NONE);
    atomic_store(&taken[i], false);
    memset(a, 0, sizeof *a);
}

void jarena_enter(jarena_t *a) { current = a && a->base ? a : NULL; }

void jarena_leave(void) { current = NULL; }

void jarena_reset(jarena_t *a)
{
    a->used = 0;
    a->overflowed = false;
}
