/*
 * retention — see retention.h.  One Lua script does the floor and the trim
 * atomically, so no group can read or acknowledge between the two: the
 * floor it trims to is exactly the one it computed.
 */
#include "retention/retention.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/retention_lua.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/metrics.h"

/* KEYS: stream, policy hash.  ARGV: the age cut ('0' = none), the entries
 * to keep (0 = no cap), protect_groups, '1' when the archive is on, the
 * watermark this host's archiver has confirmed ('' = none).  The cut is
 * the policy's, then no further than the floor (blocked) and, with the
 * archive, than both watermarks (waiting). */
static const char TRIM_LUA[] =
    EVBUS_RETENTION_LUA_FUNCS
    "local fl, who = floor(KEYS[1], ARGV[3])\n"
    "local want = nil\n"
    "if ARGV[1] ~= '0' then want = ARGV[1] end\n"
    "local keep = tonumber(ARGV[2])\n"
    "if keep > 0 then\n"
    "  local c = cut_for(KEYS[1], keep)\n"
    "  if c and (want == nil or idcmp(c, want) > 0) then want = c end\n"
    "end\n"
    "local cap, wm = nil, ''\n"
    "if ARGV[4] == '1' then\n"
    "  cap, wm = archive_cap(KEYS[2])\n"
    "  local mine = '0-0'\n"
    "  if ARGV[5] ~= '' then mine = idnext(ARGV[5]) end\n"
    "  if idcmp(mine, cap) < 0 then cap = mine end\n"
    "end\n"
    "local trimmed, blocked, waiting = 0, 0, 0\n"
    "if want then\n"
    "  local cut = want\n"
    "  if idcmp(fl, cut) < 0 then cut = fl; blocked = 1 end\n"
    "  local allowed = cut\n"
    "  if cap and idcmp(cap, cut) < 0 then cut = cap; waiting = 1 end\n"
    "  trimmed = redis.call('XTRIM', KEYS[1], 'MINID', cut)\n"
    "  if blocked == 1 or waiting == 1 then\n"
    "    local f = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)\n"
    "    if #f == 0 or idcmp(f[1][1], want) >= 0 then blocked = 0 end\n"
    "    if #f == 0 or idcmp(f[1][1], allowed) >= 0 then waiting = 0 end\n"
    "  end\n"
    "end\n"
    "local f = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)\n"
    "local fid = ''\n"
    "if #f > 0 then fid = f[1][1] end\n"
    /* what the protected groups still owe: pending + unread (lag), the most
     * of any group; -1 when Redis does not know a lag */
    "local owed = 0\n"
    "local okg, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])\n"
    "if okg then\n"
    "  local want = nil\n"
    "  if ARGV[3] ~= 'all' then\n"
    "    want = {}\n"
    "    for n in string.gmatch(ARGV[3], '[^,]+') do want[n] = true end\n"
    "  end\n"
    "  for _, g in ipairs(groups) do\n"
    "    local f = {}\n"
    "    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end\n"
    "    if want == nil or want[f['name']] then\n"
    "      local lag = f['lag']\n"
    "      if type(lag) ~= 'number' then owed = -1; break end\n"
    "      local o = tonumber(f['pending']) + lag\n"
    "      if o > owed then owed = o end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return {trimmed, fl, who, redis.call('XLEN', KEYS[1]), fid, blocked, waiting, wm, owed}\n";

struct retention {
    char *stream, *owner, *policy_key, *lease_key, *full_key;
    unsigned partitions;   /* of the logical stream: the caps are shared */
    unsigned slot;         /* this partition's slot in the family's archiver */
    retention_t **members; /* a lead: its family, itself first (else NULL) */
    unsigned n_members;
    int64_t last_ms;       /* monotonic, last round */
    bool full_set;         /* we set the full flag */

    pthread_mutex_t lock;  /* guards the view below (health reads it) */
    bool leased;
    char lease_holder[128];
    long long entries, bytes, owed;
    int64_t oldest_ms;     /* wall ms of the first entry, 0 = empty */
    char floor[48], floor_group[128];
    bool blocked;          /* the floor stopped a trim the policy wanted */
    bool waiting;          /* the archive's watermark stopped one */
    bool at_cap;           /* blocked or waiting while a cap is reached */
    char watermark[48];    /* the archive's, as the last round saw it */
    retention_archive_t *archive; /* the family's, NULL without PostgreSQL */
    long long trimmed_total;
    int level;
    int64_t last_round_wall_ms;
    retention_settings_t s; /* the last round's settings, caps this partition's share
                             * (strings not kept) */
    uint32_t stream_max_entries; /* the logical stream's caps (the settings) */
    uint64_t stream_max_bytes;
};

static char *fmt(const char *f, const char *a, const char *b)
{
    char *s = NULL;
    return asprintf(&s, f, a, b) < 0 ? NULL : s;
}

retention_t *retention_new(const char *stream, const char *owner, unsigned partitions,
                           retention_t *lead)
{
    retention_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->stream = strdup(stream);
    r->owner = strdup(owner);
    r->policy_key = fmt("%s%s", stream, ":retention");
    r->lease_key = fmt("%s%s", stream, ":retention:lease");
    r->full_key = fmt("%s%s", stream, ":retention:full");
    r->partitions = partitions ? partitions : 1;
    pthread_mutex_init(&r->lock, NULL);
    if (!r->stream || !r->owner || !r->policy_key || !r->lease_key || !r->full_key) {
        retention_free(r);
        return NULL;
    }
    retention_t *head = lead ? lead : r;
    retention_t **m = realloc(head->members, (head->n_members + 1) * sizeof *m);
    if (!m) {
        retention_free(r);
        return NULL;
    }
    head->members = m;
    r->slot = head->n_members;
    m[head->n_members++] = r;
    return r;
}

int retention_start_archive(retention_t *r, const retention_archive_opts_t *o)
{
    if (!r->members)
        return -1;
    const char **streams = calloc(r->n_members, sizeof *streams);
    if (!streams)
        return -1;
    for (unsigned i = 0; i < r->n_members; i++)
        streams[i] = r->members[i]->stream;
    retention_archive_opts_t mine = *o;
    mine.streams = streams;
    mine.n_streams = r->n_members;
    retention_archive_t *a = retention_archive_start(&mine);
    free(streams);
    if (!a)
        return -1;
    for (unsigned i = 0; i < r->n_members; i++) {
        retention_t *m = r->members[i];
        pthread_mutex_lock(&m->lock);
        m->archive = a;
        pthread_mutex_unlock(&m->lock);
    }
    return 0;
}

void retention_stop_archive(retention_t *r)
{
    retention_archive_t *a = NULL;
    for (unsigned i = 0; i < r->n_members; i++) {
        retention_t *m = r->members[i];
        pthread_mutex_lock(&m->lock);
        if (m == r)
            a = m->archive;
        m->archive = NULL;
        pthread_mutex_unlock(&m->lock);
    }
    retention_archive_stop(a);
}

void retention_configure_archive(retention_t *r, uint32_t partitions_ahead)
{
    pthread_mutex_lock(&r->lock);
    retention_archive_configure(r->archive, partitions_ahead);
    pthread_mutex_unlock(&r->lock);
}

/* Hand the archiver this round's view: whether to archive, and up to
 * where (the floor, once the policy has any limit: see
 * retention_archive.h). */
static void offer(retention_t *r, const retention_settings_t *s, bool leased, const char *floor,
                  bool urgent)
{
    bool limited = s->max_age_ms || s->max_entries || s->max_bytes;
    retention_archive_offer_t o = {
        .on = s->archive == RETENTION_ARCHIVE_POSTGRES, .leased = leased,
        .upto = limited && floor && strcmp(floor, "0-0") != 0 ? floor : "", .urgent = urgent,
        .interval_ms = s->interval_ms, .retention_ms = s->archive_retention_ms};
    pthread_mutex_lock(&r->lock);
    retention_archive_offer(r->archive, r->slot, &o);
    pthread_mutex_unlock(&r->lock);
}

void retention_free(retention_t *r)
{
    if (!r)
        return;
    retention_stop_archive(r);
    free(r->members);
    free(r->stream);
    free(r->owner);
    free(r->policy_key);
    free(r->lease_key);
    free(r->full_key);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

/* The lease: one trimmer per stream at a time.  1 held, 0 another host
 * holds it, -1 Redis failed. */
static int take_lease(retention_t *r, redisContext *c, uint64_t ttl_ms)
{
    char ttl[32];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)ttl_ms);
    redisReply *x = redisCommand(c, "SET %s %s NX PX %s", r->lease_key, r->owner, ttl);
    if (!x)
        return -1;
    bool got = x->type == REDIS_REPLY_STATUS;
    freeReplyObject(x);
    if (got)
        return 1;
    x = redisCommand(c, "GET %s", r->lease_key);
    if (!x)
        return -1;
    bool mine = x->type == REDIS_REPLY_STRING && strcmp(x->str, r->owner) == 0;
    pthread_mutex_lock(&r->lock);
    snprintf(r->lease_holder, sizeof r->lease_holder, "%s",
             x->type == REDIS_REPLY_STRING ? x->str : "");
    pthread_mutex_unlock(&r->lock);
    freeReplyObject(x);
    if (!mine)
        return 0;
    x = redisCommand(c, "PEXPIRE %s %s", r->lease_key, ttl);
    if (!x)
        return -1;
    freeReplyObject(x);
    return 1;
}

/* Compare stream ids "ms-seq" numerically: <0, 0, >0. */
static int id_cmp(const char *a, const char *b)
{
    unsigned long long am = strtoull(a, NULL, 10), bm = strtoull(b, NULL, 10);
    const char *ad = strchr(a, '-'), *bd = strchr(b, '-');
    unsigned long long as = ad ? strtoull(ad + 1, NULL, 10) : 0;
    unsigned long long bs = bd ? strtoull(bd + 1, NULL, 10) : 0;
    if (am != bm)
        return am < bm ? -1 : 1;
    return as < bs ? -1 : as > bs ? 1 : 0;
}

static long long int_of(const redisReply *x)
{
    if (!x)
        return 0;
    if (x->type == REDIS_REPLY_INTEGER)
        return x->integer;
    if (x->type == REDIS_REPLY_STRING)
        return strtoll(x->str, NULL, 10);
    return 0;
}

static const char *str_of(const redisReply *x)
{
    return x && x->type == REDIS_REPLY_STRING ? x->str : "";
}

/* Edge-triggered log lines at 80 % and 95 % of a cap, as the DLQ has. */
static void note_level(retention_t *r, int level, const char *why)
{
    int prev = r->level;
    r->level = level;
    if (level <= prev)
        return;
    if (level == 2)
        log_error("retention", "stream %s: %s", r->stream, why);
    else
        log_warn("retention", "stream %s: %s", r->stream, why);
}

/* The stream gauges: the sums over the partitions this host trims
 * (entries, bytes), the oldest entry of any, blocked or waiting in any —
 * each as of its last round; untouched while this host trims none (as
 * with one partition: another host's gauges say it).  Called by a lead. */
static void publish_gauges(retention_t *lead)
{
    long long entries = 0, bytes = 0;
    int64_t oldest = 0;
    bool blocked = false, waiting = false, any = false;
    for (unsigned i = 0; i < lead->n_members; i++) {
        retention_t *m = lead->members[i];
        pthread_mutex_lock(&m->lock);
        bool mine = m->leased;
        any = any || mine;
        if (!mine) {
            pthread_mutex_unlock(&m->lock);
            continue;
        }
        entries += m->entries;
        bytes += m->bytes;
        if (m->oldest_ms && (!oldest || m->oldest_ms < oldest))
            oldest = m->oldest_ms;
        blocked = blocked || m->blocked;
        waiting = waiting || m->waiting;
        pthread_mutex_unlock(&m->lock);
    }
    if (!any)
        return;
    METRIC_SET(stream_entries, (uint64_t)entries);
    METRIC_SET(stream_bytes, (uint64_t)bytes);
    METRIC_SET(stream_oldest_age_s,
               oldest ? (uint64_t)((clock_wall_ms() - oldest) / 1000) : 0);
    METRIC_SET(stream_retention_blocked, blocked ? 1 : 0);
    METRIC_SET(stream_retention_archive_waiting, waiting ? 1 : 0);
}

/* A cap of the logical stream shared by its partitions: each keeps
 * cap / partitions, rounded up (0 stays 0: no cap). */
static uint64_t share_of(uint64_t cap, unsigned partitions)
{
    return partitions > 1 ? (cap + partitions - 1) / partitions : cap;
}

int retention_tick(retention_t *r, redisContext *c, const retention_settings_t *setting,
                   int64_t now_ms)
{
    uint64_t every = setting->interval_ms ? setting->interval_ms : 1000;
    if (r->last_ms && now_ms - r->last_ms < (int64_t)every)
        return 0;
    r->last_ms = now_ms;
    /* from here on the caps are this partition's share */
    retention_settings_t shared = *setting;
    shared.max_entries = (uint32_t)share_of(setting->max_entries, r->partitions);
    shared.max_bytes = share_of(setting->max_bytes, r->partitions);
    const retention_settings_t *s = &shared;

    /* publish the policy for publishers (libevbus reads it when it connects) */
    char me[24], mb[32], ob[8], bt[32];
    snprintf(me, sizeof me, "%u", s->max_entries);
    snprintf(mb, sizeof mb, "%llu", (unsigned long long)s->max_bytes);
    snprintf(ob, sizeof ob, "%s", s->on_full == RETENTION_BLOCK ? "block" : "reject");
    snprintf(bt, sizeof bt, "%llu", (unsigned long long)s->block_timeout_ms);
    bool archive = s->archive == RETENTION_ARCHIVE_POSTGRES;
    const char *hargv[] = {"HSET", r->policy_key, "max_entries", me, "max_bytes", mb,
                           "on_full", ob, "block_ms", bt, "protect",
                           s->protect_groups ? s->protect_groups : "all", "archive",
                           archive ? "postgres" : "off"};
    redisReply *x = redisCommandArgv(c, 14, hargv, NULL);
    if (!x)
        return -1;
    freeReplyObject(x);

    int lease = take_lease(r, c, every * 3 + 2000);
    if (lease < 0)
        return -1;
    pthread_mutex_lock(&r->lock);
    r->leased = lease == 1;
    r->s = *s;
    r->s.protect_groups = NULL;
    r->stream_max_entries = setting->max_entries;
    r->stream_max_bytes = setting->max_bytes;
    pthread_mutex_unlock(&r->lock);
    if (lease == 0) {
        offer(r, s, false, NULL, false);
        if (r->members)
            publish_gauges(r);
        return 0;
    }

    /* bytes per entry, sampled: turns max_bytes into an entry count */
    long long len = 0, bytes = 0;
    x = redisCommand(c, "XLEN %s", r->stream);
    if (!x)
        return -1;
    len = int_of(x);
    freeReplyObject(x);
    if (len > 0) {
        x = redisCommand(c, "MEMORY USAGE %s SAMPLES 64", r->stream);
        if (!x)
            return -1;
        bytes = int_of(x);
        freeReplyObject(x);
    }
    long long keep = s->max_entries;
    if (s->max_bytes && len > 0 && bytes > 0) {
        double per = (double)bytes / (double)len;
        long long fit = (long long)((double)s->max_bytes / per);
        if (fit < 1)
            fit = 1;
        if (!keep || fit < keep)
            keep = fit;
    }
    /* Trim acknowledged entries down to 90 % of a cap, not to the cap: a
     * stream whose consumers keep up then never meets the cap, publishers
     * are never refused, and the fill level says what is still owed. */
    long long full_at = keep;
    if (keep > 10)
        keep -= keep / 10;
    char age[48] = "0", keeps[24];
    if (s->max_age_ms)
        snprintf(age, sizeof age, "%lld-0", (long long)(clock_wall_ms() - (int64_t)s->max_age_ms));
    snprintf(keeps, sizeof keeps, "%lld", keep);
    char confirmed[48] = "";
    if (archive) {
        pthread_mutex_lock(&r->lock);
        retention_archive_confirmed(r->archive, r->slot, confirmed, sizeof confirmed);
        pthread_mutex_unlock(&r->lock);
    }
    const char *argv[] = {"EVAL", TRIM_LUA, "2", r->stream, r->policy_key, age, keeps,
                          s->protect_groups ? s->protect_groups : "all", archive ? "1" : "0",
                          confirmed};
    x = redisCommandArgv(c, 10, argv, NULL);
    if (!x)
        return -1;
    if (x->type == REDIS_REPLY_ERROR || x->type != REDIS_REPLY_ARRAY || x->elements < 9) {
        log_error("retention", "trimming %s: %s", r->stream,
                  x->type == REDIS_REPLY_ERROR ? x->str : "unexpected reply");
        freeReplyObject(x);
        return 0;
    }
    long long trimmed = int_of(x->element[0]);
    long long after = int_of(x->element[3]);
    bool blocked = int_of(x->element[5]) != 0;
    bool waiting = int_of(x->element[6]) != 0;
    const char *fid = str_of(x->element[4]);
    int64_t oldest = fid[0] ? strtoll(fid, NULL, 10) : 0;
    long long bytes_after = len > 0 ? (long long)((double)bytes * after / len) : 0;
    /* full: at a cap with nothing left that every protected group is done
     * with (the first entry is at or above the floor) — what the publish
     * guard refuses on; blocked: the floor stopped a trim the policy wanted;
     * waiting: the archive's watermark did */
    bool at_cap_now = (full_at && after >= full_at) ||
                      (s->max_bytes && bytes_after >= (long long)s->max_bytes);
    bool at_cap = at_cap_now && fid[0] &&
                  (id_cmp(fid, str_of(x->element[1])) >= 0 || waiting);
    blocked = blocked || (at_cap && !waiting);
    long long owed = int_of(x->element[8]);
    if (owed < 0 || owed > after)
        owed = after; /* no lag known: count everything */
    /* the archive runs flat out near a cap, where room depends on it */
    double fill = 0;
    if (full_at)
        fill = (double)after / (double)full_at;
    if (s->max_bytes && (double)bytes_after / (double)s->max_bytes > fill)
        fill = (double)bytes_after / (double)s->max_bytes;
    offer(r, s, true, str_of(x->element[1]), at_cap || fill >= 0.80);
    int archive_level = 0;
    if (archive) {
        pthread_mutex_lock(&r->lock);
        archive_level = r->archive ? retention_archive_level(r->archive, r->slot) : 2;
        pthread_mutex_unlock(&r->lock);
    }
    pthread_mutex_lock(&r->lock);
    r->entries = after;
    r->bytes = bytes_after;
    r->oldest_ms = oldest;
    snprintf(r->floor, sizeof r->floor, "%s", str_of(x->element[1]));
    snprintf(r->floor_group, sizeof r->floor_group, "%s", str_of(x->element[2]));
    r->blocked = blocked;
    r->waiting = waiting;
    snprintf(r->watermark, sizeof r->watermark, "%s", str_of(x->element[7]));
    r->at_cap = at_cap;
    r->trimmed_total += trimmed;
    r->last_round_wall_ms = clock_wall_ms();
    pthread_mutex_unlock(&r->lock);
    if (r->members)
        publish_gauges(r);
    if (trimmed > 0)
        METRIC_ADD(stream_trimmed, (uint64_t)trimmed);

    /* max_bytes: the guard cannot measure memory, so the trimmer says when
     * the stream is full; the flag expires if no trimmer renews it */
    bool bytes_full = s->max_bytes && bytes_after >= (long long)s->max_bytes &&
                      (blocked || waiting);
    if (bytes_full) {
        char why[512], px[32], owner[160];
        if (blocked || !waiting)
            snprintf(owner, sizeof owner, "consumer group %s still owes them",
                     r->floor_group[0] ? r->floor_group : "?");
        else
            snprintf(owner, sizeof owner, "the archive (retention.archive) has not stored them "
                     "yet");
        snprintf(why, sizeof why, "stream %s holds about %lld bytes (retention.max_bytes %llu) "
                 "and %s", r->stream, bytes_after, (unsigned long long)s->max_bytes, owner);
        snprintf(px, sizeof px, "%llu", (unsigned long long)(every * 3 + 2000));
        const char *sargv[] = {"SET", r->full_key, why, "PX", px};
        redisReply *y = redisCommandArgv(c, 5, sargv, NULL);
        if (!y) {
            freeReplyObject(x);
            return -1;
        }
        freeReplyObject(y);
        r->full_set = true;
    } else if (r->full_set) {
        redisReply *y = redisCommand(c, "DEL %s", r->full_key);
        if (!y) {
            freeReplyObject(x);
            return -1;
        }
        freeReplyObject(y);
        r->full_set = false;
    }

    /* warnings at 80 % / 95 % of each cap count what the groups still owe
     * (acknowledged entries can always be trimmed); full is an error */
    int level = 0;
    char why[512] = "";
    fill = 0;
    if (s->max_entries)
        fill = (double)owed / s->max_entries;
    if (s->max_bytes && after > 0 &&
        (double)bytes_after * owed / after / (double)s->max_bytes > fill)
        fill = (double)bytes_after * owed / after / (double)s->max_bytes;
    if (at_cap || fill >= 0.95) {
        level = 2;
        char holder[256];
        if (waiting && !blocked)
            snprintf(holder, sizeof holder, "the archive holds trimming at its watermark %s",
                     r->watermark[0] ? r->watermark : "(none yet)");
        else
            snprintf(holder, sizeof holder, "consumer group %s holds the trim floor at %s",
                     r->floor_group[0] ? r->floor_group : "(none)", r->floor);
        snprintf(why, sizeof why, "%s (%lld entries, about %lld bytes); %s",
                 at_cap ? "full: publishers are refused" : "at 95% of its retention cap", after,
                 bytes_after, holder);
    } else if (archive_level == 2 && waiting) {
        level = 2;
        snprintf(why, sizeof why, "trimming waits for the archive, which cannot write (see "
                 "health: retention.archive.last_error)");
    } else if (fill >= 0.80) {
        level = 1;
        snprintf(why, sizeof why, "at 80%% of its retention cap (%lld owed of %lld entries, "
                 "about %lld bytes)", owed,
                 after, bytes_after);
    }
    pthread_mutex_lock(&r->lock);
    r->owed = owed;
    note_level(r, level, why);
    pthread_mutex_unlock(&r->lock);
    if (blocked && !at_cap)
        log_debug("retention", "stream %s: entries past retention.max_age are kept: consumer "
                  "group %s still owes %s", r->stream, r->floor_group, r->floor);
    freeReplyObject(x);
    return 0;
}

/* The trimmer's level, or the archive's when it is worse (r->lock held). */
static int level_locked(retention_t *r)
{
    int l = r->level;
    if (r->s.archive == RETENTION_ARCHIVE_POSTGRES) {
        int a = r->archive ? retention_archive_level(r->archive, r->slot) : 2;
        if (a > l)
            l = a;
    }
    return l;
}

int retention_level(retention_t *r)
{
    pthread_mutex_lock(&r->lock);
    int l = level_locked(r);
    pthread_mutex_unlock(&r->lock);
    return l;
}

json_t *retention_health(retention_t *r)
{
    json_t *o = json_object();
    pthread_mutex_lock(&r->lock);
    char age[64], bytes[64];
    snprintf(age, sizeof age, "%llums", (unsigned long long)r->s.max_age_ms);
    snprintf(bytes, sizeof bytes, "%llu", (unsigned long long)r->s.max_bytes);
    json_t *pol = json_pack("{s:I, s:I, s:I, s:s}", "max_age_ms", (json_int_t)r->s.max_age_ms,
                            "max_entries", (json_int_t)r->s.max_entries, "max_bytes",
                            (json_int_t)r->s.max_bytes, "on_full",
                            r->s.on_full == RETENTION_BLOCK ? "block" : "reject");
    if (r->partitions > 1)
        json_object_set_new(pol, "stream",
                            json_pack("{s:i, s:I, s:I}", "partitions", (int)r->partitions,
                                      "max_entries", (json_int_t)r->stream_max_entries,
                                      "max_bytes", (json_int_t)r->stream_max_bytes));
    json_object_set_new(o, "policy", pol);
    json_object_set_new(o, "trimmer", json_string(r->leased ? "this host" : "another host"));
    if (!r->leased && r->lease_holder[0])
        json_object_set_new(o, "trimmer_host", json_string(r->lease_holder));
    json_object_set_new(o, "entries", json_integer(r->entries));
    json_object_set_new(o, "bytes", json_integer(r->bytes));
    json_object_set_new(o, "owed", json_integer(r->owed));
    json_object_set_new(o, "oldest_entry_age_s",
                        json_integer(r->oldest_ms ? (clock_wall_ms() - r->oldest_ms) / 1000 : 0));
    json_object_set_new(o, "floor", json_string(r->floor));
    json_object_set_new(o, "floor_group",
                        r->floor_group[0] ? json_string(r->floor_group) : json_null());
    json_object_set_new(o, "blocked", json_boolean(r->blocked));
    json_object_set_new(o, "full", json_boolean(r->at_cap));
    int level = level_locked(r);
    json_object_set_new(o, "level", json_string(level == 2   ? "error"
                                                : level == 1 ? "warning"
                                                             : "ok"));
    json_object_set_new(o, "trimmed_total", json_integer(r->trimmed_total));
    json_t *arc = r->archive ? retention_archive_health(r->archive, r->slot) : json_object();
    if (!r->archive)
        json_object_set_new(arc, "mode",
                            json_string(r->s.archive == RETENTION_ARCHIVE_POSTGRES ? "postgres"
                                                                                   : "off"));
    if (!r->archive && r->s.archive == RETENTION_ARCHIVE_POSTGRES)
        json_object_set_new(arc, "last_error",
                            json_string("no PostgreSQL (postgres.url): nothing is archived and "
                                        "nothing is trimmed"));
    json_object_set_new(arc, "trim_waiting", json_boolean(r->waiting));
    json_object_set_new(o, "archive", arc);
    pthread_mutex_unlock(&r->lock);
    return o;
}
