/*
 * pause — which handler instances this host treats as paused, readable by
 * every dispatching thread without a lock.
 *
 * The truth lives in Redis (the hash <stream>:paused, "Handler pause" in
 * client/evbus_client.h), so a pause holds across restarts, reloads and
 * every host of the group.  The engine's maintenance thread polls the hash
 * and hands each state it reads to pause_table_apply(); the engine's own
 * pause call applies its change at once with pause_table_set().  This
 * module only holds what was read: it never talks to Redis.
 *
 * Shape: an append-only list of one node per instance name ever paused,
 * each with an atomic flag, plus an atomic count of paused instances.
 * Nodes are never removed while the table lives, so readers walk the list
 * with no lock and no reclamation scheme, and a flag keyed by instance name
 * is untouched by generation swaps (a reload neither clears nor copies
 * it).  The list only grows by names an operator paused: it stays small.
 *
 * Cost on the dispatch path: pause_table_has() is one relaxed atomic load
 * while nothing is paused; a short walk comparing names otherwise.
 *
 * Threads: pause_table_has() from any thread, lock-free.  apply, set and
 * json from any thread (serialized by the table's mutex).  new and free on
 * the owner's thread, free only once no thread can read the table.
 */
#ifndef EVBUS_CORE_PAUSE_H
#define EVBUS_CORE_PAUSE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct pause_table pause_table_t;

/* An empty table; NULL when memory runs out. */
pause_table_t *pause_table_new(void);
void pause_table_free(pause_table_t *t);

/* Whether the instance of `handler` ("instance/subscriber", or a foreign
 * handler's name: the part before the first '/') is paused. */
bool pause_table_has(const pause_table_t *t, const char *handler);

/* Make the table say exactly what `doc` says ({instance: record}, as
 * evbus_handler_pauses() returns it; borrowed).  Returns true when some
 * instance stopped being paused: the caller then unparks the schedule. */
bool pause_table_apply(pause_table_t *t, const json_t *doc);

/* The table's change count, taken before reading Redis for
 * pause_table_apply_read(). */
uint64_t pause_table_version(pause_table_t *t);

/* pause_table_apply() of a state read from Redis after `seen` was taken,
 * unless the table changed since: a pause call that applied a newer state
 * meanwhile must not be undone by a poll that read Redis before it (the
 * next poll reads the new state).  *applied says which happened. */
bool pause_table_apply_read(pause_table_t *t, const json_t *doc, uint64_t seen, bool *applied);

/* Pause (rec: its record, borrowed) or resume (rec NULL) one instance at
 * once, after Redis accepted the change. */
void pause_table_set(pause_table_t *t, const char *instance, const json_t *rec);

/* {instance: record} of every paused instance, a new object (caller
 * decrefs). */
json_t *pause_table_json(pause_table_t *t);

/* The record of `instance` (a new reference, caller decrefs) or NULL when
 * it is not paused. */
json_t *pause_table_record(pause_table_t *t, const char *instance);

#endif
