/*
 * ownership — see ownership.h.
 *
 * The lease is a plain string key with a Redis expiry rather than a hash
 * with a deadline: Redis expires it by its own clock, so no host compares
 * its clock with another's, and a host that stops renewing loses it
 * without anyone having to notice.  The epoch lives in its own key,
 * which is never expired: it must only grow, through any number of
 * expiries, or a fenced host could see its old number come back.
 */
#include "core/ownership.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *own_state_name(own_state_t s)
{
    switch (s) {
    case OWN_ACQUIRED:
        return "acquiring";
    case OWN_ACTIVE:
        return "active";
    case OWN_REVOKING:
        return "revoking";
    case OWN_NONE:
        break;
    }
    return "none";
}

void own_assign(unsigned n_parts, size_t n_hosts, const int *owner, int *target)
{
    for (unsigned p = 0; p < n_parts; p++)
        target[p] = -1;
    if (!n_hosts)
        return;
    size_t *quota = calloc(n_hosts, sizeof *quota), *count = calloc(n_hosts, sizeof *count),
           *held = calloc(n_hosts, sizeof *held);
    if (!quota || !count || !held) {
        free(quota);
        free(count);
        free(held);
        return; /* everything -1: nobody acquires this round; the next one retries */
    }
    for (unsigned p = 0; p < n_parts; p++)
        if (owner[p] >= 0 && (size_t)owner[p] < n_hosts)
            held[owner[p]]++;
    size_t base = n_parts / n_hosts, extra = n_parts % n_hosts;
    for (size_t i = 0; i < n_hosts; i++)
        quota[i] = base;
    /* the remainder goes to the hosts holding the most (ties: lowest
     * index), so a host at base + 1 keeps its extra partition */
    for (size_t k = 0; k < extra; k++) {
        size_t best = n_hosts;
        for (size_t i = 0; i < n_hosts; i++)
            if (quota[i] == base && (best == n_hosts || held[i] > held[best]))
                best = i;
        quota[best]++;
    }
    for (unsigned p = 0; p < n_parts; p++) {
        int o = owner[p];
        if (o >= 0 && (size_t)o < n_hosts && count[o] < quota[o]) {
            target[p] = o;
            count[o]++;
        }
    }
    size_t next = 0;
    for (unsigned p = 0; p < n_parts; p++) {
        if (target[p] >= 0)
            continue;
        while (next < n_hosts && count[next] >= quota[next])
            next++;
        if (next == n_hosts)
            break; /* cannot happen: the quotas add up to n_parts */
        target[p] = (int)next;
        count[next]++;
    }
    free(quota);
    free(count);
    free(held);
}

/* ---- Redis ------------------------------------------------------------ */

static int redis_fail(redisContext *c, redisReply *r, const char *what, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: %s", what,
             r && r->type == REDIS_REPLY_ERROR ? r->str
             : c->err                          ? c->errstr
                                               : "unexpected reply");
    if (r)
        freeReplyObject(r);
    return -1;
}

/* KEYS[1] hosts; ARGV[1] me ('' to only read), ARGV[2] lease_ms.  The set
 * expires by itself when every host of a deployment is gone. */
static const char HEARTBEAT_LUA[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)\n"
    "if ARGV[1] ~= '' then\n"
    "  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])\n"
    "  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 10)\n"
    "end\n"
    "return redis.call('ZRANGE', KEYS[1], 0, -1)\n";

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int own_heartbeat(redisContext *c, const char *hosts_key, const char *me, uint32_t lease_ms,
                  char ***hosts, size_t *n, char *err, size_t errlen)
{
    *hosts = NULL;
    *n = 0;
    redisReply *r = redisCommand(c, "EVAL %s 1 %s %s %u", HEARTBEAT_LUA, hosts_key, me ? me : "",
                                 lease_ms);
    if (!r || r->type != REDIS_REPLY_ARRAY)
        return redis_fail(c, r, "heartbeat", err, errlen);
    char **v = calloc(r->elements ? r->elements : 1, sizeof *v);
    size_t k = 0;
    for (size_t i = 0; v && i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING && (v[k] = strdup(r->element[i]->str)))
            k++;
    freeReplyObject(r);
    if (!v) {
        snprintf(err, errlen, "heartbeat: out of memory");
        return -1;
    }
    qsort(v, k, sizeof *v, cmp_str);
    *hosts = v;
    *n = k;
    return 0;
}

void own_hosts_free(char **hosts, size_t n)
{
    for (size_t i = 0; hosts && i < n; i++)
        free(hosts[i]);
    free(hosts);
}

int own_leave(redisContext *c, const char *hosts_key, const char *me, char *err, size_t errlen)
{
    redisReply *r = redisCommand(c, "ZREM %s %s", hosts_key, me);
    if (!r || r->type == REDIS_REPLY_ERROR)
        return redis_fail(c, r, "leaving the host set", err, errlen);
    freeReplyObject(r);
    return 0;
}

/* KEYS[1] lease, KEYS[2] epoch; ARGV[1] me, ARGV[2] lease_ms */
static const char ACQUIRE_LUA[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur and cur ~= ARGV[1] then return {0, cur} end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "return {redis.call('INCR', KEYS[2]), ARGV[1]}\n";

long long own_acquire(redisContext *c, const char *lease_key, const char *epoch_key,
                      const char *me, uint32_t lease_ms, char *holder, size_t holder_len,
                      char *err, size_t errlen)
{
    redisReply *r = redisCommand(c, "EVAL %s 2 %s %s %s %u", ACQUIRE_LUA, lease_key, epoch_key,
                                 me, lease_ms);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER)
        return redis_fail(c, r, "acquiring a partition lease", err, errlen);
    long long epoch = r->element[0]->integer;
    if (holder && holder_len)
        snprintf(holder, holder_len, "%s",
                 r->element[1]->type == REDIS_REPLY_STRING ? r->element[1]->str : "");
    freeReplyObject(r);
    return epoch;
}

/* KEYS[1] lease, KEYS[2] epoch; ARGV[1] me, ARGV[2] epoch, ARGV[3]
 * lease_ms.  An expired lease nobody took is set again: the epoch is
 * unchanged, so no other host can have written with a newer one. */
static const char RENEW_LUA[] =
    "if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end\n"
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur and cur ~= ARGV[1] then return 0 end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])\n"
    "return 1\n";

int own_renew(redisContext *c, const char *lease_key, const char *epoch_key, const char *me,
              long long epoch, uint32_t lease_ms, char *err, size_t errlen)
{
    redisReply *r = redisCommand(c, "EVAL %s 2 %s %s %s %lld %u", RENEW_LUA, lease_key,
                                 epoch_key, me, epoch, lease_ms);
    if (!r || r->type != REDIS_REPLY_INTEGER)
        return redis_fail(c, r, "renewing a partition lease", err, errlen);
    int ok = r->integer == 1;
    freeReplyObject(r);
    return ok;
}

/* KEYS[1] lease, KEYS[2] epoch; ARGV[1] me, ARGV[2] epoch */
static const char RELEASE_LUA[] =
    "if redis.call('GET', KEYS[2]) == ARGV[2] and redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

int own_release(redisContext *c, const char *lease_key, const char *epoch_key, const char *me,
                long long epoch, char *err, size_t errlen)
{
    redisReply *r = redisCommand(c, "EVAL %s 2 %s %s %s %lld", RELEASE_LUA, lease_key, epoch_key,
                                 me, epoch);
    if (!r || r->type != REDIS_REPLY_INTEGER)
        return redis_fail(c, r, "releasing a partition lease", err, errlen);
    int ok = r->integer == 1;
    freeReplyObject(r);
    return ok;
}

int own_read(redisContext *const *cs, size_t n, char *const *lease_keys,
             char *const *epoch_keys, char **holder, long long *epoch, char *err,
             size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        holder[i] = NULL;
        epoch[i] = 0;
        redisAppendCommand(cs[i], "GET %s", lease_keys[i]);
        redisAppendCommand(cs[i], "GET %s", epoch_keys[i]);
    }
    int rc = 0;
    for (size_t i = 0; i < 2 * n; i++) {
        redisContext *c = cs[i / 2];
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r) {
            rc = redis_fail(c, NULL, "reading partition leases", err, errlen);
            break; /* the connection is broken: the caller drops it */
        }
        if (rc == 0 && r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "reading partition leases: %s", r->str);
            rc = -1;
        } else if (rc == 0 && i % 2 == 0) {
            holder[i / 2] = r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
        } else if (rc == 0) {
            epoch[i / 2] = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
        }
        freeReplyObject(r);
    }
    if (rc != 0)
        for (size_t i = 0; i < n; i++) {
            free(holder[i]);
            holder[i] = NULL;
        }
    return rc;
}
