/*
 * store_common — connection setup, status names, RFC 3339 parsing and the
 * small query helpers every other store file uses.
 */
#include "store/store_internal.h"
#include "util/log.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void store__err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void store__pg_err(char *err, size_t errlen, const char *where, PGconn *c, const PGresult *res)
{
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    if (!msg || !*msg)
        msg = c ? PQerrorMessage(c) : "no connection";
    /* libpq messages span lines ("...\n\tIs the server running"): one line. */
    char flat[512];
    size_t k = 0;
    for (const char *p = msg; *p && k + 1 < sizeof flat; p++) {
        bool space = *p == '\n' || *p == '\t' || *p == '\r';
        if (space && (k == 0 || flat[k - 1] == ' '))
            continue;
        flat[k++] = space ? ' ' : *p;
    }
    while (k > 0 && flat[k - 1] == ' ')
        k--;
    flat[k] = '\0';
    store__err(err, errlen, "%s: %s", where, flat);
}

/* Server NOTICEs ("relation already exists, skipping") are routine. */
static void notice_to_log(void *arg, const char *msg)
{
    (void)arg;
    log_debug("store", "postgres: %s", msg);
}

PGconn *store_connect(const char *url, char *err, size_t errlen)
{
    if (!url || !*url) {
        store__err(err, errlen, "postgres: no URL configured");
        return NULL;
    }
    if (store__pq_load(err, errlen) != 0)
        return NULL;
    PGconn *c = PQconnectdb(url);
    if (!c) {
        store__err(err, errlen, "postgres: out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        store__pg_err(err, errlen, "postgres connect", c, NULL);
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, notice_to_log, NULL);
    PGresult *r = PQexec(c, "SET TimeZone = 'UTC'");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        store__pg_err(err, errlen, "postgres connect", c, r);
    PQclear(r);
    if (!ok) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

int store__exec(PGconn *c, const char *where, const char *sql, int nparams,
                const char *const *params, long *affected, char *err, size_t errlen)
{
    PGresult *r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        store__pg_err(err, errlen, where, c, r);
        PQclear(r);
        return -1;
    }
    if (affected)
        *affected = strtol(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return 0;
}

int store__query_json(PGconn *c, const char *where, const char *sql, int nparams,
                      const char *const *params, json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    PGresult *r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        store__pg_err(err, errlen, where, c, r);
        PQclear(r);
        return -1;
    }
    if (PQntuples(r) == 0 || PQgetisnull(r, 0, 0)) {
        PQclear(r);
        return 0;
    }
    json_error_t je;
    *out = json_loads(PQgetvalue(r, 0, 0), JSON_DECODE_ANY, &je);
    PQclear(r);
    if (!*out) {
        store__err(err, errlen, "%s: server returned invalid JSON: %s", where, je.text);
        return -1;
    }
    return 0;
}

int64_t store__stream_time_ms(const char *sid)
{
    if (!sid)
        return -1;
    size_t ms_digits = strspn(sid, "0123456789");
    if (ms_digits < 1 || ms_digits > 15 || sid[ms_digits] != '-')
        return -1;
    size_t seq_digits = strspn(sid + ms_digits + 1, "0123456789");
    if (seq_digits < 1 || seq_digits > 20 || sid[ms_digits + 1 + seq_digits])
        return -1;
    return strtoll(sid, NULL, 10);
}

void store__sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *const status_names[] = {"PENDING",       "PROCESSING", "COMPLETED", "RETRYING",
                                           "DEAD_LETTERED", "IGNORED",    "PURGED"};

const char *store_status_name(store_status_t s)
{
    if ((int)s < 0 || (size_t)s >= sizeof status_names / sizeof *status_names)
        return NULL;
    return status_names[s];
}

int store_status_parse(const char *s)
{
    for (size_t i = 0; s && i < sizeof status_names / sizeof *status_names; i++)
        if (strcasecmp(s, status_names[i]) == 0)
            return (int)i;
    return -1;
}

bool store_status_terminal(store_status_t s)
{
    return s == STORE_COMPLETED || s == STORE_DEAD_LETTERED || s == STORE_IGNORED ||
           s == STORE_PURGED;
}

/* Reads exactly n digits into *v. */
static int digits(const char **p, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (!isdigit((unsigned char)**p))
            return -1;
        *v = *v * 10 + (**p - '0');
    }
    return 0;
}

int store_parse_rfc3339(const char *s, int64_t *ms)
{
    if (!s)
        return -1;
    const char *p = s;
    int Y, M, D, h, m, sec;
    if (digits(&p, 4, &Y) || *p++ != '-' || digits(&p, 2, &M) || *p++ != '-' ||
        digits(&p, 2, &D) || (*p != 'T' && *p != 't' && *p != ' '))
        return -1;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &m) || *p++ != ':' ||
        digits(&p, 2, &sec))
        return -1;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return -1;
    int frac_ms = 0;
    if (*p == '.') {
        p++;
        int nd = 0;
        while (isdigit((unsigned char)*p)) {
            if (nd < 3)
                frac_ms = frac_ms * 10 + (*p - '0');
            nd++;
            p++;
        }
        if (nd == 0)
            return -1;
        for (; nd < 3; nd++)
            frac_ms *= 10;
    }
    int offset_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59)
            return -1;
        offset_s = sign * (oh * 3600 + om * 60);
    } else {
        return -1;
    }
    if (*p)
        return -1;
    struct tm tm = {.tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D,
                    .tm_hour = h, .tm_min = m, .tm_sec = sec};
    time_t t = timegm(&tm);
    if (tm.tm_mday != D) /* timegm normalised an impossible date (Feb 30) */
        return -1;
    *ms = ((int64_t)t - offset_s) * 1000 + frac_ms;
    return 0;
}

int store__exec1(PGconn *c, const char *where, const char *sql, int nparams,
                 const char *const *params, char *value, size_t vlen, char *err, size_t errlen)
{
    PGresult *r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        store__pg_err(err, errlen, where, c, r);
        PQclear(r);
        return -1;
    }
    if (value)
        snprintf(value, vlen, "%s", PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return 0;
}
