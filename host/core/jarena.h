/*
 * jarena — bump allocation for the jansson tree of the event being parsed.
 *
 * Building and freeing an event's jansson tree with malloc/free was about a
 * third of the host's instructions per event.  With jarena, the dispatcher
 * parses each entry into a per-thread 1 MiB block and drops the whole tree
 * by resetting the block: no free() per node, no tree walk.
 *
 * How it stays safe while jansson's allocator is process-wide:
 *  - jarena_install() routes jansson's malloc/free through this module once,
 *    at start, before any thread exists.
 *  - Allocation comes from an arena only on a thread that is inside
 *    jarena_enter()/jarena_leave() (the dispatcher does that around the
 *    parse only); everything else — plugins, the validator, the CLI — gets
 *    plain malloc.
 *  - Blocks are carved from one address range reserved by jarena_install()
 *    (room for 256 live arenas), so free() of a pointer inside it is
 *    recognised by one range check and ignored; every other pointer goes to
 *    free().  A plugin that mutates a borrowed event tree therefore cannot
 *    corrupt the heap.
 *  - A parse that does not fit falls back to malloc for the rest and marks
 *    the arena overflowed; the owner must then json_decref() the tree, which
 *    frees the heap parts and ignores the arena parts.
 *
 * Thread rules: a jarena_t belongs to one thread.  jarena_install before
 * threads start.
 */
#ifndef EVBUS_CORE_JARENA_H
#define EVBUS_CORE_JARENA_H

#include <stdbool.h>
#include <stddef.h>

#define JARENA_BLOCK ((size_t)1 << 20)

typedef struct jarena {
    char *base;
    size_t used;
    bool overflowed;
} jarena_t;

/* Route jansson's allocations through jarena (idempotent). */
void jarena_install(void);
bool jarena_installed(void);

/* 0, or -1 when not installed, when 256 arenas are live or when the range
 * could not be reserved (then use no arena).  Any thread. */
int jarena_init(jarena_t *a);
void jarena_destroy(jarena_t *a);

/* Allocate jansson values of this thread from `a` until jarena_leave(). */
void jarena_enter(jarena_t *a);
void jarena_leave(void);

/* Forget everything allocated from `a` (the caller dropped its trees). */
void jarena_reset(jarena_t *a);

#endif
