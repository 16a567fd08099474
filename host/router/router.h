/*
 * router — maps an event type to the ordered list of handlers subscribed to it.
 *
 * Types are dot-separated lowercase segments ("approval.granted").  Patterns
 * use the same segments plus two wildcards that must each be a whole
 * segment: `*` matches exactly one segment, `**` matches zero or more
 * segments (so "approval.**" matches "approval" and "a.**.z" matches "a.z").
 * Any other segment matches itself literally.
 *
 * A router is a segment trie with literal, `*` and `**` children, matched
 * NFA-style (a set of live trie nodes per type segment), so lookup cost
 * depends on the type's length and the trie's shape, not on how many
 * subscriptions were added.  Results are additionally cached per thread.
 *
 * This module knows nothing about plugins: a target is an opaque pointer.
 *
 * Thread rules: router_new/router_add/router_freeze run on one building
 * thread.  After router_freeze() the router is immutable and router_match()
 * may be called from any number of threads at once, each with its OWN
 * router_cache_t (a cache is owned by one thread and takes no locks).
 * router_free() must only run once no thread matches against it any more.
 * The check functions and router_pattern_match() are pure and thread-safe.
 */
#ifndef EVBUS_ROUTER_H
#define EVBUS_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Syntax of a subscription pattern.  Returns 0 when valid, or -1 with a
 * message in err such as "empty segment at offset 9" (offsets are 0-based
 * byte offsets into the pattern).  Invalid: the empty pattern, empty
 * segments (leading, trailing or doubled dot), `***`, a wildcard mixed with
 * other characters in one segment ("a*"), whitespace, uppercase, and any
 * character outside [a-z0-9_-].  err may be NULL.
 */
int router_pattern_check(const char *pattern, char *err, size_t errlen);

/* Syntax of an event type: like a pattern but wildcards are not allowed. */
int router_type_check(const char *type, char *err, size_t errlen);

/* Whether one pattern matches one type; false when either is invalid.
 * Used where a single filter is tested (replay), no router needed. */
bool router_pattern_match(const char *pattern, const char *type);

typedef struct router router_t;

/* One subscription in a match result.  seq is the manifest order. */
typedef struct router_entry {
    void *target;
    int priority;
    uint32_t seq;
} router_entry_t;

/*
 * Handlers for one type, sorted by priority ascending, then seq ascending,
 * then order of router_add().  A target appears at most once: when the same
 * target is subscribed through several matching patterns, only its lowest
 * (priority, seq) entry is kept.
 */
typedef struct router_list {
    const router_entry_t *items;
    size_t count;
} router_list_t;

/* A new, empty router; NULL only when out of memory.  Free with router_free(). */
router_t *router_new(void);

/*
 * Subscribes target to pattern.  Returns -1 with a message in err when the
 * pattern is invalid (router_pattern_check's message), the router is
 * already frozen, or memory runs out.  The router copies the pattern; the
 * target is not owned.
 */
int router_add(router_t *r, const char *pattern, int priority, uint32_t seq, void *target,
               char *err, size_t errlen);

/* Ends building: from now on the router is read-only and shareable. */
void router_freeze(router_t *r);

/* Number of router_add() calls that succeeded. */
size_t router_count(const router_t *r);

/* Frees the router (not the targets).  NULL is fine. */
void router_free(router_t *r);

/*
 * Per-thread result cache.  It remembers the resolved list of up to 1024
 * event types for the router it was last used with; when full it starts
 * over, and when passed a different router (recognised by a unique id, not
 * by address, so a new router allocated at a freed one's address is never
 * confused with it) it empties itself.  NULL only when out of memory.
 */
typedef struct router_cache router_cache_t;

router_cache_t *router_cache_new(void);
void router_cache_free(router_cache_t *c);

/*
 * The sorted handler list for type (count 0 when nothing matches or when
 * type fails router_type_check).  r must be frozen (results are cached,
 * so a router still being built would go stale).  The list is owned by cache and stays valid until the
 * next router_match() call with this cache.  Running out of memory here
 * aborts the process: an empty list would silently drop the event.
 */
router_list_t router_match(const router_t *r, router_cache_t *cache, const char *type);

#endif /* EVBUS_ROUTER_H */
