/*
 * redis_util — connecting the engine's threads to Redis.
 *
 * Each thread owns its connections (hiredis contexts are not thread-safe);
 * these helpers only create and configure them.
 */
#ifndef EVBUS_CORE_REDIS_UTIL_H
#define EVBUS_CORE_REDIS_UTIL_H

#include <hiredis/hiredis.h>
#include <stddef.h>

/*
 * Connect to a redis://[:password@]host[:port][/db] or unix:///path URL,
 * AUTH and SELECT as needed.  connect_ms bounds the connect; command_ms
 * bounds every later command (the reader adds its BLOCK time to it), so a
 * Redis that stops answering is detected as a connection failure.
 * NULL with a message in err.
 */
redisContext *rutil_connect(const char *url, int connect_ms, int command_ms, char *err,
                            size_t errlen);

#endif
