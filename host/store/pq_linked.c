/*
 * pq_linked — store__pq_load for programs that link libpq itself (evbusd,
 * the tests): libpq is already there.  evbusctl links pq_lazy.c instead.
 */
#include "store/store_internal.h"

int store__pq_load(char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    return 0;
}
