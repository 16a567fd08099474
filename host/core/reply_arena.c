/* reply_arena — see reply_arena.h.  Mirrors hiredis 0.14's default reply
 * constructors (hiredis.c), allocating from the arena instead of malloc. */
#include "core/reply_arena.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_SIZE (256 * 1024)

typedef struct block {
    struct block *next;
    size_t used, cap;
    char data[];
} block_t;

/* Sits right before the top-level reply; owns every block of the reply. */
typedef struct head {
    block_t *blocks;
    redisReply reply;
} head_t;

typedef struct build {
    head_t *head; /* the reply being read */
} build_t;

static void *take(build_t *b, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    block_t *blk = b->head->blocks;
    if (!blk || blk->used + size > blk->cap) {
        size_t cap = size > BLOCK_SIZE ? size : BLOCK_SIZE;
        block_t *n = malloc(sizeof *n + cap);
        if (!n)
            return NULL;
        n->next = blk;
        n->used = 0;
        n->cap = cap;
        b->head->blocks = n;
        blk = n;
    }
    void *p = blk->data + blk->used;
    blk->used += size;
    return p;
}

/* A new reply object: the top-level one starts a new arena. */
static redisReply *create(const redisReadTask *task, int type)
{
    build_t *b = task->privdata;
    redisReply *r;
    if (!task->parent) {
        head_t *h = calloc(1, sizeof *h);
        if (!h)
            return NULL;
        b->head = h;
        r = &h->reply;
    } else {
        r = take(b, sizeof *r);
        if (!r)
            return NULL;
        memset(r, 0, sizeof *r);
        redisReply *parent = task->parent->obj;
        parent->element[task->idx] = r;
    }
    r->type = type;
    return r;
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
    redisReply *r = create(task, task->type);
    if (!r)
        return NULL;
    char *buf = take(task->privdata, len + 1);
    if (!buf)
        return NULL;
    memcpy(buf, str, len);
    buf[len] = '\0';
    r->str = buf;
    r->len = len;
    return r;
}

static void *create_array(const redisReadTask *task, int elements)
{
    redisReply *r = create(task, REDIS_REPLY_ARRAY);
    if (!r)
        return NULL;
    if (elements > 0) {
        r->element = take(task->privdata, (size_t)elements * sizeof *r->element);
        if (!r->element)
            return NULL;
        memset(r->element, 0, (size_t)elements * sizeof *r->element);
    }
    r->elements = (size_t)elements;
    return r;
}

static void *create_integer(const redisReadTask *task, long long value)
{
    redisReply *r = create(task, REDIS_REPLY_INTEGER);
    if (r)
        r->integer = value;
    return r;
}

static void *create_nil(const redisReadTask *task) { return create(task, REDIS_REPLY_NIL); }

void rarena_free(redisReply *r)
{
    if (!r)
        return;
    head_t *h = (head_t *)((char *)r - offsetof(head_t, reply));
    for (block_t *b = h->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(h);
}

/* hiredis frees a half-built top-level reply this way on a protocol error */
static void free_object(void *obj) { rarena_free(obj); }

static redisReplyObjectFunctions arena_functions = {
    create_string, create_array, create_integer, create_nil, free_object,
};

redisReply *rarena_command(redisContext *c, int argc, const char **argv)
{
    build_t b = {NULL};
    redisReplyObjectFunctions *fn = c->reader->fn;
    void *priv = c->reader->privdata;
    c->reader->fn = &arena_functions;
    c->reader->privdata = &b;
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    c->reader->fn = fn;
    c->reader->privdata = priv;
    return r;
}
