/*
 * reply_arena — hiredis replies built in one arena per reply.
 *
 * A batch of 1000 stream entries is ~5000 hiredis reply objects.  With the
 * default allocator they are malloc'd one by one on the reader thread and
 * freed one by one on a worker thread (cross-thread frees are glibc's slow
 * path): together a third of the host's instructions per event.  Built
 * here, they are bump-allocated from blocks owned by the top-level reply and
 * released with one call.
 *
 * The objects are ordinary redisReply structs, read the usual way; only the
 * way they are freed differs: rarena_free(), never freeReplyObject().
 *
 * Thread rules: rarena_command() on the thread owning the context;
 * rarena_free() on any thread, once per reply.
 */
#ifndef EVBUS_CORE_REPLY_ARENA_H
#define EVBUS_CORE_REPLY_ARENA_H

#include <hiredis/hiredis.h>

/* redisCommandArgv() with the reply built in an arena.  NULL on a
 * connection error (c->err says why), like hiredis. */
redisReply *rarena_command(redisContext *c, int argc, const char **argv);

/* Free a reply returned by rarena_command(); NULL is fine. */
void rarena_free(redisReply *r);

#endif
