/*
 * error — the client's last error message: evbus__fail writes it, and
 * evbus_client_error reads it back.
 *
 * Every file of libevbus reports failures through evbus__fail, so the
 * connection code (client.c), the event checks (event.c) and the DLQ
 * (dlq.c) depend on this file instead of on one another.  With a NULL
 * client it only formats into the caller's buffer, which is what lets
 * several threads check events at once without a client.
 */
#include <stdio.h>

#include "client_internal.h"

int evbus__fail(evbus_client_t *c, char *err, size_t errlen, int code, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c)
        snprintf(c->errbuf, sizeof c->errbuf, "%s", msg);
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    return code;
}

const char *evbus_client_error(const evbus_client_t *c)
{
    return c->errbuf;
}
