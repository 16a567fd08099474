/*
 * pause — see pause.h.  Writers hold the mutex; readers only follow the
 * atomic head and flags, which is why a node, once published, never
 * changes its name or its next pointer and is freed only by
 * pause_table_free().
 */
#include "core/pause.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct pause_node {
    struct pause_node *next; /* fixed before the node is published */
    atomic_bool paused;
    size_t len;
    char name[]; /* the instance name, fixed */
} pause_node_t;

struct pause_table {
    _Atomic(pause_node_t *) head;
    atomic_int n_paused;
    pthread_mutex_t lock;  /* writers; and `records` */
    json_t *records;       /* {instance: record} of the paused ones */
    uint64_t version;      /* changes applied so far (under lock) */
};

pause_table_t *pause_table_new(void)
{
    pause_table_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->records = json_object();
    if (!t->records) {
        free(t);
        return NULL;
    }
    atomic_init(&t->head, NULL);
    atomic_init(&t->n_paused, 0);
    pthread_mutex_init(&t->lock, NULL);
    return t;
}

void pause_table_free(pause_table_t *t)
{
    if (!t)
        return;
    for (pause_node_t *n = atomic_load(&t->head), *next; n; n = next) {
        next = n->next;
        free(n);
    }
    json_decref(t->records);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static const pause_node_t *find(const pause_table_t *t, const char *name, size_t len)
{
    for (const pause_node_t *n = atomic_load_explicit(&t->head, memory_order_acquire); n;
         n = n->next)
        if (n->len == len && memcmp(n->name, name, len) == 0)
            return n;
    return NULL;
}

bool pause_table_has(const pause_table_t *t, const char *handler)
{
    /* the one load every handler call pays: nothing paused, nothing else */
    if (atomic_load_explicit(&t->n_paused, memory_order_relaxed) == 0)
        return false;
    const pause_node_t *n = find(t, handler, strcspn(handler, "/"));
    return n && atomic_load_explicit(&n->paused, memory_order_relaxed);
}

/* The node of `name`, published first when new (lock held).  NULL only
 * when memory runs out. */
static pause_node_t *node_of(pause_table_t *t, const char *name)
{
    size_t len = strlen(name);
    pause_node_t *n = (pause_node_t *)find(t, name, len);
    if (n)
        return n;
    n = malloc(sizeof *n + len + 1);
    if (!n)
        return NULL;
    memcpy(n->name, name, len + 1);
    n->len = len;
    atomic_init(&n->paused, false);
    n->next = atomic_load_explicit(&t->head, memory_order_relaxed);
    atomic_store_explicit(&t->head, n, memory_order_release);
    return n;
}

/* Set one flag and keep the count in step (lock held).  True when it
 * changed from paused to not paused. */
static bool flag(pause_table_t *t, const char *name, bool paused)
{
    pause_node_t *n = paused ? node_of(t, name) : (pause_node_t *)find(t, name, strlen(name));
    if (!n)
        return false;
    bool was = atomic_exchange_explicit(&n->paused, paused, memory_order_relaxed);
    if (was != paused)
        atomic_fetch_add_explicit(&t->n_paused, paused ? 1 : -1, memory_order_relaxed);
    return was && !paused;
}

/* Under t->lock. */
static bool apply_locked(pause_table_t *t, const json_t *doc)
{
    bool resumed = false;
    for (pause_node_t *n = atomic_load(&t->head); n; n = n->next)
        if (!json_object_get(doc, n->name))
            resumed |= flag(t, n->name, false);
    const char *name;
    json_t *rec;
    json_object_foreach((json_t *)doc, name, rec) flag(t, name, true);
    json_decref(t->records);
    t->records = json_deep_copy(doc);
    if (!t->records)
        t->records = json_object();
    t->version++;
    return resumed;
}

bool pause_table_apply(pause_table_t *t, const json_t *doc)
{
    pthread_mutex_lock(&t->lock);
    bool resumed = apply_locked(t, doc);
    pthread_mutex_unlock(&t->lock);
    return resumed;
}

uint64_t pause_table_version(pause_table_t *t)
{
    pthread_mutex_lock(&t->lock);
    uint64_t v = t->version;
    pthread_mutex_unlock(&t->lock);
    return v;
}

bool pause_table_apply_read(pause_table_t *t, const json_t *doc, uint64_t seen, bool *applied)
{
    pthread_mutex_lock(&t->lock);
    *applied = t->version == seen;
    bool resumed = *applied && apply_locked(t, doc);
    pthread_mutex_unlock(&t->lock);
    return resumed;
}

void pause_table_set(pause_table_t *t, const char *instance, const json_t *rec)
{
    pthread_mutex_lock(&t->lock);
    flag(t, instance, rec != NULL);
    t->version++;
    if (rec)
        json_object_set_new(t->records, instance, json_deep_copy(rec));
    else
        json_object_del(t->records, instance);
    pthread_mutex_unlock(&t->lock);
}

json_t *pause_table_json(pause_table_t *t)
{
    pthread_mutex_lock(&t->lock);
    json_t *copy = json_deep_copy(t->records);
    pthread_mutex_unlock(&t->lock);
    return copy ? copy : json_object();
}

json_t *pause_table_record(pause_table_t *t, const char *instance)
{
    pthread_mutex_lock(&t->lock);
    json_t *rec = json_deep_copy(json_object_get(t->records, instance));
    pthread_mutex_unlock(&t->lock);
    return rec;
}
