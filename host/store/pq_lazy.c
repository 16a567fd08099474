/*
 * pq_lazy — libpq for evbusctl, loaded on first use.
 *
 * Most evbusctl commands never talk to PostgreSQL, but a linked libpq
 * brings about twenty more shared objects (Kerberos, LDAP, GnuTLS, SASL,
 * ...) whose loading cost ~6 ms at every start, against ~2 ms for
 * everything else evbusctl loads.  evbusctl therefore links this file
 * instead of libpq: it defines the libpq functions evbus calls, and the
 * first of them (in practice store_connect's store__pq_load) opens
 * libpq.so.5 — or the file EVBUS_LIBPQ names, for a libpq the dynamic
 * loader does not find — and resolves them all.  evbusd and the tests
 * link libpq itself (pq_linked.c).
 *
 * Until libpq is loaded, or when it cannot be, the functions behave as
 * libpq does for a NULL connection or result (CONNECTION_BAD, no rows,
 * PQfinish/PQclear do nothing); store__pq_load reports why it failed, so
 * no caller gets that far.  Loading runs once (pthread_once) and is
 * thread-safe.
 */
#include "store/store_internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* The soname of Debian 12's libpq5 (and every libpq since 8.x). */
#define PQ_SONAME "libpq.so.5"

#define PQ_FUNCS(X)                                                                            \
    X(PQconnectdb)                                                                             \
    X(PQstatus)                                                                                \
    X(PQerrorMessage)                                                                          \
    X(PQfinish)                                                                                \
    X(PQsetNoticeProcessor)                                                                    \
    X(PQtransactionStatus)                                                                     \
    X(PQexec)                                                                                  \
    X(PQexecParams)                                                                            \
    X(PQprepare)                                                                               \
    X(PQexecPrepared)                                                                          \
    X(PQgetResult)                                                                             \
    X(PQputCopyData)                                                                           \
    X(PQputCopyEnd)                                                                            \
    X(PQresultStatus)                                                                          \
    X(PQresultErrorMessage)                                                                    \
    X(PQresultErrorField)                                                                      \
    X(PQntuples)                                                                               \
    X(PQgetvalue)                                                                              \
    X(PQgetisnull)                                                                             \
    X(PQgetlength)                                                                             \
    X(PQcmdTuples)                                                                             \
    X(PQclear)

static struct {
#define PQ_FIELD(name) __typeof__(&name) name;
    PQ_FUNCS(PQ_FIELD)
#undef PQ_FIELD
} pq;
static bool pq_ok;
static void *pq_handle; /* open for the life of the process once loaded */
static char pq_why[256];
static pthread_once_t pq_once = PTHREAD_ONCE_INIT;

static void pq_open(void)
{
    /* RTLD_LOCAL: libpq's symbols stay out of the global scope, where
     * this file's definitions of the same names live. */
    const char *so = getenv("EVBUS_LIBPQ");
    if (!so || !*so)
        so = PQ_SONAME;
    void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(pq_why, sizeof pq_why, "cannot load libpq: %s", dlerror());
        return;
    }
#define PQ_LOAD(name)                                                                          \
    if (!(pq.name = (__typeof__(&name))dlsym(h, #name))) {                                    \
        snprintf(pq_why, sizeof pq_why, "cannot load libpq: %s has no %s", so, #name);         \
        dlclose(h); /* unusable: don't keep it mapped (cppcheck resourceLeak) */               \
        return;                                                                                \
    }
    PQ_FUNCS(PQ_LOAD)
#undef PQ_LOAD
    pq_handle = h;
    pq_ok = true;
}

static bool pq_loaded(void)
{
    pthread_once(&pq_once, pq_open);
    return pq_ok;
}

int store__pq_load(char *err, size_t errlen)
{
    if (pq_loaded())
        return 0;
    store__err(err, errlen, "postgres: %s", pq_why);
    return -1;
}

PGconn *PQconnectdb(const char *conninfo)
{
    return pq_loaded() ? pq.PQconnectdb(conninfo) : NULL;
}

ConnStatusType PQstatus(const PGconn *conn)
{
    return pq_loaded() ? pq.PQstatus(conn) : CONNECTION_BAD;
}

char *PQerrorMessage(const PGconn *conn)
{
    return pq_loaded() ? pq.PQerrorMessage(conn) : pq_why;
}

void PQfinish(PGconn *conn)
{
    if (conn && pq_loaded())
        pq.PQfinish(conn);
}

PQnoticeProcessor PQsetNoticeProcessor(PGconn *conn, PQnoticeProcessor proc, void *arg)
{
    return pq_loaded() ? pq.PQsetNoticeProcessor(conn, proc, arg) : NULL;
}

PGTransactionStatusType PQtransactionStatus(const PGconn *conn)
{
    return pq_loaded() ? pq.PQtransactionStatus(conn) : PQTRANS_UNKNOWN;
}

PGresult *PQexec(PGconn *conn, const char *query)
{
    return pq_loaded() ? pq.PQexec(conn, query) : NULL;
}

PGresult *PQexecParams(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
                       const char *const *paramValues, const int *paramLengths,
                       const int *paramFormats, int resultFormat)
{
    return pq_loaded() ? pq.PQexecParams(conn, command, nParams, paramTypes, paramValues,
                                         paramLengths, paramFormats, resultFormat)
                       : NULL;
}

PGresult *PQprepare(PGconn *conn, const char *stmtName, const char *query, int nParams,
                    const Oid *paramTypes)
{
    return pq_loaded() ? pq.PQprepare(conn, stmtName, query, nParams, paramTypes) : NULL;
}

PGresult *PQexecPrepared(PGconn *conn, const char *stmtName, int nParams,
                         const char *const *paramValues, const int *paramLengths,
                         const int *paramFormats, int resultFormat)
{
    return pq_loaded() ? pq.PQexecPrepared(conn, stmtName, nParams, paramValues, paramLengths,
                                           paramFormats, resultFormat)
                       : NULL;
}

PGresult *PQgetResult(PGconn *conn)
{
    return pq_loaded() ? pq.PQgetResult(conn) : NULL;
}

int PQputCopyData(PGconn *conn, const char *buffer, int nbytes)
{
    return pq_loaded() ? pq.PQputCopyData(conn, buffer, nbytes) : -1;
}

int PQputCopyEnd(PGconn *conn, const char *errormsg)
{
    return pq_loaded() ? pq.PQputCopyEnd(conn, errormsg) : -1;
}

ExecStatusType PQresultStatus(const PGresult *res)
{
    /* libpq says PGRES_FATAL_ERROR for a NULL result */
    return pq_loaded() ? pq.PQresultStatus(res) : PGRES_FATAL_ERROR;
}

char *PQresultErrorMessage(const PGresult *res)
{
    return pq_loaded() ? pq.PQresultErrorMessage(res) : pq_why;
}

char *PQresultErrorField(const PGresult *res, int fieldcode)
{
    return pq_loaded() ? pq.PQresultErrorField(res, fieldcode) : NULL;
}

int PQntuples(const PGresult *res)
{
    return pq_loaded() ? pq.PQntuples(res) : 0;
}

char *PQgetvalue(const PGresult *res, int tup_num, int field_num)
{
    return pq_loaded() ? pq.PQgetvalue(res, tup_num, field_num) : NULL;
}

int PQgetisnull(const PGresult *res, int tup_num, int field_num)
{
    return pq_loaded() ? pq.PQgetisnull(res, tup_num, field_num) : 1;
}

int PQgetlength(const PGresult *res, int tup_num, int field_num)
{
    return pq_loaded() ? pq.PQgetlength(res, tup_num, field_num) : 0;
}

char *PQcmdTuples(PGresult *res)
{
    static char empty[] = "";
    return pq_loaded() ? pq.PQcmdTuples(res) : empty;
}

void PQclear(PGresult *res)
{
    if (res && pq_loaded())
        pq.PQclear(res);
}
