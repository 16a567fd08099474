/*
 * client_internal — what client.c, event.c and dlq.c share.  Private to
 * host/client: not installed, not part of the contract (evbus_client.h is).
 * Internal non-static names use the evbus__ prefix.
 */
#ifndef EVBUS_CLIENT_INTERNAL_H
#define EVBUS_CLIENT_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>

#include "evbus_client.h"

struct evbus_client {
    /* Parsed URL: either a TCP host/port or a unix socket path. */
    char *host;
    int port;
    char *unix_path;
    char *user;     /* NULL: AUTH <password> only */
    char *password; /* NULL: no AUTH */
    int db;
    char *stream;
    redisContext *ctx; /* NULL until the first command; replaced after I/O errors */
    uint64_t maxlen;
    evbus_id_kind_t id_kind;
    char *source; /* NULL: the default "/evbus/<hostname>" */
    char errbuf[256];
};

/* Records a message in the client (when c) and in err (when err); returns code. */
int evbus__fail(evbus_client_t *c, char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The connected context, (re)connecting when needed; NULL with the reason
 * recorded via evbus__fail.  */
redisContext *evbus__conn(evbus_client_t *c, char *err, size_t errlen);

/* Whether the reply-less failure of redisCommand/redisGetReply broke the
 * connection: records "redis: <errstr>" and drops the context so the next
 * call reconnects.  Returns EVBUS_CLIENT_EREDIS. */
int evbus__io_fail(evbus_client_t *c, char *err, size_t errlen, const char *what);

/* Appends "MAXLEN ~ n" to an argv being built when c has a maxlen.
 * buf must outlive the command; returns the new argc. */
int evbus__maxlen_args(const evbus_client_t *c, const char **argv, size_t *lens, int argc,
                       char buf[24]);

/* XADD <stream> [MAXLEN ~ n] * <fields...> (key/value pairs, at most 16
 * strings with their lengths); writes the new id.  0 or EVBUS_CLIENT_EREDIS. */
int evbus__xadd(evbus_client_t *c, const char *stream, const char *const *fields,
                const size_t *flens, int nfields, char *out_id, size_t out_len, char *err,
                size_t errlen);

#endif
