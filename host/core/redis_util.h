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
 * AUTH and SELECT as needed, with a 5 s command timeout plus `extra_ms`
 * (the reader adds its BLOCK time).  NULL with a message in err.
 */
redisContext *rutil_connect_timeout(const char *url, int extra_ms, char *err, size_t errlen);
#define rutil_connect(url, err, errlen) rutil_connect_timeout((url), 2000, (err), (errlen))

#endif
