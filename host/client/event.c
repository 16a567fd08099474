/*
 * event — CloudEvent completion and checks, and the id/time generators.
 *
 * Completion only fills what is absent and checks what the bus relies on
 * (routing type, tenant, identity, time); it does not validate `data`
 * against schemas — that is the daemon's job.  Randomness comes from
 * getrandom(2), which is thread-safe and needs no library state.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "client_internal.h"

static void random_bytes(unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r > 0)
            got += (size_t)r;
        /* r < 0 is only EINTR for requests this small: try again. */
    }
}

void evbus_uuid4(char out[37])
{
    unsigned char b[16];
    random_bytes(b, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0x0f];
    }
    out[o] = '\0';
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)(ts.tv_nsec / 1000000);
}

/* Per-thread state keeps ULIDs of one thread strictly increasing even when
 * several are made in the same millisecond (the ULID spec's monotonic
 * mode), without any lock. */
static __thread uint64_t ulid_last_ms;
static __thread unsigned char ulid_last_rand[10];

void evbus_ulid(char out[27])
{
    static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    uint64_t ms = now_ms();
    unsigned char r[10];
    if (ms <= ulid_last_ms) {
        ms = ulid_last_ms;
        memcpy(r, ulid_last_rand, sizeof r);
        int i = 9;
        while (i >= 0 && ++r[i] == 0)
            i--;
        if (i < 0) { /* 80-bit overflow: move to the next millisecond */
            ms++;
            random_bytes(r, sizeof r);
        }
    } else {
        random_bytes(r, sizeof r);
    }
    ulid_last_ms = ms;
    memcpy(ulid_last_rand, r, sizeof r);

    ms &= (UINT64_C(1) << 48) - 1;
    for (int i = 9; i >= 0; i--) {
        out[i] = b32[ms & 31];
        ms >>= 5;
    }
    /* 80 random bits = 16 groups of 5, most significant first. */
    for (int g = 0; g < 16; g++) {
        unsigned v = 0;
        for (int k = 0; k < 5; k++) {
            int bit = g * 5 + k;
            v = (v << 1) | ((r[bit / 8] >> (7 - bit % 8)) & 1u);
        }
        out[10 + g] = b32[v];
    }
    out[26] = '\0';
}

void evbus_time_now_rfc3339(char out[32])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

int evbus_type_check(const char *type)
{
    if (!type || !*type)
        return -1;
    size_t seg = 0;
    for (const char *p = type;; p++) {
        if (*p == '.' || *p == '\0') {
            if (seg == 0)
                return -1;
            if (*p == '\0')
                return 0;
            seg = 0;
            continue;
        }
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
            return -1;
        seg++;
    }
}

/* Reads exactly n digits at *p; -1 when they are not all digits. */
static int digits(const char **p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char ch = (*p)[i];
        if (ch < '0' || ch > '9')
            return -1;
        v = v * 10 + (ch - '0');
    }
    *p += n;
    return v;
}

static int days_in_month(int y, int m)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : d[m - 1];
}

int evbus_time_check(const char *s)
{
    if (!s)
        return -1;
    const char *p = s;
    int y = digits(&p, 4);
    if (y < 0 || *p++ != '-')
        return -1;
    int mo = digits(&p, 2);
    if (mo < 1 || mo > 12 || *p++ != '-')
        return -1;
    int d = digits(&p, 2);
    if (d < 1 || d > days_in_month(y, mo))
        return -1;
    if (*p != 'T' && *p != 't')
        return -1;
    p++;
    int h = digits(&p, 2);
    if (h < 0 || h > 23 || *p++ != ':')
        return -1;
    int mi = digits(&p, 2);
    if (mi < 0 || mi > 59 || *p++ != ':')
        return -1;
    int se = digits(&p, 2);
    if (se < 0 || se > 60) /* 60: leap second */
        return -1;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'Z' || *p == 'z')
        return p[1] == '\0' ? 0 : -1;
    if (*p != '+' && *p != '-')
        return -1;
    p++;
    int oh = digits(&p, 2);
    if (oh < 0 || oh > 23 || *p++ != ':')
        return -1;
    int om = digits(&p, 2);
    if (om < 0 || om > 59)
        return -1;
    return *p == '\0' ? 0 : -1;
}

/* An optional attribute: absent is fine, present must be a non-empty string. */
static int check_optional_string(evbus_client_t *c, json_t *ev, const char *name, char *err,
                                 size_t errlen)
{
    json_t *v = json_object_get(ev, name);
    if (v && (!json_is_string(v) || json_string_length(v) == 0))
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "%s: must be a non-empty string",
                           name);
    return 0;
}

static int set_string(json_t *ev, const char *name, const char *value)
{
    return json_object_set_new(ev, name, json_string(value));
}

int evbus_event_complete(evbus_client_t *c, json_t *ev, char *err, size_t errlen)
{
    if (!json_is_object(ev))
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "event: not a JSON object");

    json_t *v = json_object_get(ev, "specversion");
    if (v && !(json_is_string(v) && strcmp(json_string_value(v), "1.0") == 0))
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "specversion: must be \"1.0\"");

    v = json_object_get(ev, "type");
    if (!v)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "type: missing");
    if (!json_is_string(v))
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "type: not a string");
    if (evbus_type_check(json_string_value(v)) != 0)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                           "type: \"%.64s\" is not lowercase dot-separated segments of "
                           "[a-z0-9_-]",
                           json_string_value(v));

    v = json_object_get(ev, "tenantid");
    if (!v)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "tenantid: missing");
    if (!json_is_string(v) || json_string_length(v) == 0)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                           "tenantid: must be a non-empty string");

    if (check_optional_string(c, ev, "id", err, errlen) ||
        check_optional_string(c, ev, "source", err, errlen) ||
        check_optional_string(c, ev, "correlationid", err, errlen))
        return EVBUS_CLIENT_EINVAL;

    v = json_object_get(ev, "time");
    if (v && !json_is_string(v))
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "time: not a string");
    if (v && evbus_time_check(json_string_value(v)) != 0)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL,
                           "time: \"%.64s\" is not an RFC 3339 date-time", json_string_value(v));

    int rc = 0;
    if (!json_object_get(ev, "specversion"))
        rc |= set_string(ev, "specversion", "1.0");
    if (!json_object_get(ev, "id")) {
        char id[37];
        if (c && c->id_kind == EVBUS_ID_ULID)
            evbus_ulid(id);
        else
            evbus_uuid4(id);
        rc |= set_string(ev, "id", id);
    }
    if (!json_object_get(ev, "source")) {
        char def[300];
        const char *src = c && c->source ? c->source : NULL;
        if (!src) {
            char host[256];
            if (gethostname(host, sizeof host) != 0 || !host[0])
                snprintf(host, sizeof host, "localhost");
            host[sizeof host - 1] = '\0';
            snprintf(def, sizeof def, "/evbus/%s", host);
            src = def;
        }
        rc |= set_string(ev, "source", src);
    }
    if (!json_object_get(ev, "time")) {
        char t[32];
        evbus_time_now_rfc3339(t);
        rc |= set_string(ev, "time", t);
    }
    if (!json_object_get(ev, "correlationid")) {
        char id[37];
        evbus_uuid4(id);
        rc |= set_string(ev, "correlationid", id);
    }
    if (rc)
        return evbus__fail(c, err, errlen, EVBUS_CLIENT_EINVAL, "event: out of memory");
    return 0;
}
