/*
 * cmd_dlq.c — `evbusctl dlq list|show|summary|retry|delete|purge`: the
 * operator's view of the dead-letter stream.
 *
 * This file only parses arguments, maps results to exit codes and formats
 * output; filtering, tenant isolation and atomic retry are libevbus's, and
 * the bulk work (pacing, progress, archive, metadata) is dlq_bulk.c's.
 * Every subcommand has --json for scripts.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/evbus_client.h"
#include "client/partition.h"
#include "ctl/ctl.h"
#include "ctl/dlq_bulk.h"
#include "store/store.h"

#define DLQ_DEFAULT_LIMIT 20
#define DLQ_DEFAULT_RATE 500
#define DLQ_MAX_RATE 1000000
/* Widest error text shown in the list table. */
#define DLQ_ERROR_COLS 60
/* Per-entry failures of a bulk run printed before they are only counted. */
#define DLQ_FAILURES_SHOWN 10

static void dlq_usage(FILE *out)
{
    fputs("usage: evbusctl dlq list [FILTERS] [--limit N] [--cursor ID | --offset N]\n"
          "                          [--json]\n"
          "       evbusctl dlq show ID [--tenant T] [--json]\n"
          "       evbusctl dlq summary [FILTERS] [--json]\n"
          "       evbusctl dlq retry ID [--tenant T] [--json]\n"
          "       evbusctl dlq delete ID [--tenant T] [--no-metadata] [--json]\n"
          "       evbusctl dlq retry (FILTERS | --all) [BULK OPTIONS]\n"
          "       evbusctl dlq delete (FILTERS | --all) [BULK OPTIONS] [--no-metadata]\n"
          "       evbusctl dlq purge (FILTERS | --all) [BULK OPTIONS] [--archive PATH]\n"
          "                          [--no-metadata]\n"
          "\n"
          "Inspects and manages dead letters (events the daemon gave up on).\n"
          "\n"
          "  list     newest first; --limit 1..10000 (default 20).  For paging, pass the\n"
          "           next_cursor of a --json page (or the id the text names) as --cursor;\n"
          "           dead letters added or removed meanwhile do not shift the pages.\n"
          "           With partitions above 1 it merges every partition's dead letters\n"
          "           (ids and cursors are ID:PARTITION; no --offset); show, retry and\n"
          "           delete take such an ID; summary, purge and the bulk forms take\n"
          "           every partition (--limit: the oldest across them)\n"
          "  show     one dead letter with its original event\n"
          "  summary  counts by tenant, type, reason and failing handler\n"
          "  retry    re-publish the original event to its stream as a new entry\n"
          "           (field retried_from = ID) and remove the dead letter; with an ID\n"
          "           prints the new stream id\n"
          "  delete   remove dead letters, without archiving them\n"
          "  purge    append dead letters to the archive (dlq.archive), then remove them\n"
          "\n"
          "Without an ID, retry and delete (and purge) work through every dead letter\n"
          "matching the filters, oldest first, and end with a summary line; dead letters\n"
          "written meanwhile are left alone.  delete and purge ask for confirmation on a\n"
          "terminal (--yes otherwise) and, when PostgreSQL is configured, mark the\n"
          "events PURGED there (`evbusctl events`).\n"
          "\n"
          "Filters (all given must match):\n"
          "  --tenant T     this tenant's dead letters only (others read as 'not found')\n"
          "  --type TYPE    an exact type, TYPE.** for it and every type below, or **\n"
          "  --reason R     why it was dead-lettered, one of:\n",
          out);
    size_t col = 0;
    for (int r = EVBUS_DLQ_NONE + 1; evbus_dlq_reason_name((evbus_dlq_reason_t)r); r++) {
        const char *name = evbus_dlq_reason_name((evbus_dlq_reason_t)r);
        if (col == 0 || col + strlen(name) > 72) {
            fputs(col ? ",\n                 " : "                 ", out);
            col = 17;
        } else {
            fputs(", ", out);
            col += 2;
        }
        fputs(name, out);
        col += strlen(name);
    }
    fputs("\n"
          "  --handler H    failed in this handler: instance/subscriber, or an instance\n"
          "                 for any of its subscribers\n"
          "  --since TIME   dead-lettered at or after TIME (RFC 3339: 2026-11-26T10:00:00Z)\n"
          "  --until TIME   dead-lettered before TIME\n"
          "  --all          no filter: what the bulk forms need to touch every dead letter\n"
          "\n"
          "Bulk options:\n"
          "  --dry-run      print how many dead letters it would touch; change nothing\n"
          "  --rate N[/s]   at most N dead letters a second (default 500; 0: unlimited)\n"
          "  --limit N      only the N oldest matches\n"
          "  --yes          do not ask for confirmation (delete, purge)\n"
          "  --archive PATH the archive file of a purge (default: dlq.archive)\n"
          "  --no-metadata  leave PostgreSQL as it is (delete, purge)\n"
          "\n"
          "  --json         machine-readable output\n"
          "  -h, --help     show this help\n"
          "\n"
          "A progress bar is drawn on stderr when it is a terminal.\n"
          "Exit status: 0 done; 1 not found, a dead letter failed, or the run stopped\n"
          "(Redis, a full stream, the archive, PostgreSQL); 2 usage or filter error.\n",
          out);
}

/* The subcommands, as bits of where an option is accepted. */
enum {
    S_LIST = 1 << 0,
    S_SHOW = 1 << 1,
    S_SUMMARY = 1 << 2,
    S_RETRY = 1 << 3,
    S_DELETE = 1 << 4,
    S_PURGE = 1 << 5,
    S_ANY = S_LIST | S_SHOW | S_SUMMARY | S_RETRY | S_DELETE | S_PURGE,
    S_FILTER = S_LIST | S_SUMMARY | S_RETRY | S_DELETE | S_PURGE,
    S_BULK = S_RETRY | S_DELETE | S_PURGE,
    S_REMOVE = S_DELETE | S_PURGE,
};

struct dlq_args {
    const char *sub, *id;
    unsigned bit;
    /* as given (NULL when absent) */
    const char *tenant, *type, *reason, *handler, *since, *until, *limit, *offset, *cursor,
        *rate, *archive;
    bool json, yes, all, dry_run, no_metadata;
    /* parsed */
    evbus_dlq_filter_t f;
    size_t limit_n, offset_n;
    uint32_t rate_n;
};

/*
 * The options, one row each: where they are accepted, and whether the
 * single-entry forms (retry ID, delete ID) refuse them.  `off` is the
 * struct dlq_args field: a const char * for options with a value, a bool
 * for flags.
 */
static const struct dlq_opt {
    const char *name;
    bool value;
    unsigned subs;
    bool bulk_only;
    size_t off;
} DLQ_OPTS[] = {
#define V(name, subs, bulk, field) {name, true, subs, bulk, offsetof(struct dlq_args, field)}
#define F(name, subs, bulk, field) {name, false, subs, bulk, offsetof(struct dlq_args, field)}
    V("--tenant", S_ANY, false, tenant),
    V("--type", S_FILTER, true, type),
    V("--reason", S_FILTER, true, reason),
    V("--handler", S_FILTER, true, handler),
    V("--since", S_FILTER, true, since),
    V("--until", S_FILTER, true, until),
    V("--limit", S_LIST | S_BULK, true, limit),
    V("--offset", S_LIST, false, offset),
    V("--cursor", S_LIST, false, cursor),
    V("--rate", S_BULK, true, rate),
    V("--archive", S_PURGE, true, archive),
    F("--all", S_BULK, true, all),
    F("--dry-run", S_BULK, true, dry_run),
    F("--yes", S_REMOVE, true, yes),
    F("--no-metadata", S_REMOVE, false, no_metadata),
    F("--json", S_ANY, false, json),
#undef V
#undef F
};

static int dlq_parse_size(const char *opt, const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return ctl_usage_error("dlq", "%s \"%s\": not a non-negative integer", opt, s);
    *out = (size_t)v;
    return CTL_OK;
}

/* "500" or "500/s"; 0 = unlimited. */
static int dlq_parse_rate(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || s[0] == '-' || (*end && strcmp(end, "/s") != 0) ||
        v > DLQ_MAX_RATE)
        return ctl_usage_error("dlq", "--rate \"%s\": expected dead letters per second, 0..%d "
                                      "(\"500\" or \"500/s\"; 0: unlimited)", s, DLQ_MAX_RATE);
    *out = (uint32_t)v;
    return CTL_OK;
}

static int dlq_parse_time(const char *opt, const char *s, int64_t *ms)
{
    if (store_parse_rfc3339(s, ms) != 0)
        return ctl_usage_error("dlq", "%s \"%s\": not an RFC 3339 time "
                                      "(e.g. 2026-11-26T10:00:00Z)", opt, s);
    if (*ms <= 0)
        return ctl_usage_error("dlq", "%s \"%s\": must be after 1970-01-01T00:00:00Z", opt, s);
    return CTL_OK;
}

static bool dlq_has_filter(const struct dlq_args *a)
{
    return a->tenant || a->type || a->reason || a->handler || a->since || a->until;
}

/* The options' values into a->f, a->limit_n, ...; CTL_OK or the exit code. */
static int dlq_check(struct dlq_args *a)
{
    bool bulk = (a->bit & S_BULK) && !a->id;
    a->f = (evbus_dlq_filter_t){.tenant = a->tenant, .type = a->type, .reason = a->reason,
                                .handler = a->handler};
    int rc = CTL_OK;
    if ((a->since && (rc = dlq_parse_time("--since", a->since, &a->f.since_ms)) != CTL_OK) ||
        (a->until && (rc = dlq_parse_time("--until", a->until, &a->f.until_ms)) != CTL_OK))
        return rc;
    char err[512];
    if (evbus_dlq_filter_check(NULL, &a->f, err, sizeof err) != 0)
        return ctl_usage_error("dlq", "--%s", err);
    if (a->limit && (rc = dlq_parse_size("--limit", a->limit, &a->limit_n)) != CTL_OK)
        return rc;
    if (a->bit == S_LIST) {
        if (!a->limit)
            a->limit_n = DLQ_DEFAULT_LIMIT;
        if (a->limit_n < 1 || a->limit_n > EVBUS_DLQ_LIST_MAX)
            return ctl_usage_error("dlq", "--limit %zu: must be 1..%d", a->limit_n,
                                   EVBUS_DLQ_LIST_MAX);
        if (a->offset && a->cursor)
            return ctl_usage_error("dlq", "--offset and --cursor: give one of them");
        if (a->offset && (rc = dlq_parse_size("--offset", a->offset, &a->offset_n)) != CTL_OK)
            return rc;
    }
    if (bulk && a->limit && a->limit_n == 0)
        return ctl_usage_error("dlq", "--limit 0: must be at least 1");
    a->rate_n = DLQ_DEFAULT_RATE;
    if (a->rate && (rc = dlq_parse_rate(a->rate, &a->rate_n)) != CTL_OK)
        return rc;
    if (bulk && !dlq_has_filter(a) && !a->all)
        return ctl_usage_error("dlq", "%s of every dead letter needs --all (or filters: "
                                      "--tenant, --type, --reason, --handler, --since, --until)",
                               a->sub);
    if (bulk && dlq_has_filter(a) && a->all)
        return ctl_usage_error("dlq", "--all and filters: give one or the other");
    return CTL_OK;
}

/* Parses everything after the subcommand; CTL_OK, or the exit code. */
static int dlq_parse(int argc, char **argv, struct dlq_args *a)
{
    const char *bulk_opt = NULL;
    for (int i = 2; i < argc; i++) {
        const struct dlq_opt *o = NULL;
        const char *v = NULL;
        for (size_t k = 0; !o && k < sizeof DLQ_OPTS / sizeof DLQ_OPTS[0]; k++) {
            const struct dlq_opt *t = &DLQ_OPTS[k];
            int m = t->value ? ctl_opt_value(argc, argv, &i, t->name, &v)
                             : strcmp(argv[i], t->name) == 0;
            if (m < 0)
                return ctl_usage_error("dlq", "%s needs a value", t->name);
            if (m > 0)
                o = t;
        }
        if (o && !(o->subs & a->bit))
            return ctl_usage_error("dlq", "%s: %s does not apply here", a->sub, o->name);
        if (o && o->bulk_only && !bulk_opt)
            bulk_opt = o->name;
        if (o && o->value)
            *(const char **)((char *)a + o->off) = v;
        else if (o)
            *(bool *)((char *)a + o->off) = true;
        else if ((a->bit & (S_SHOW | S_RETRY | S_DELETE)) && argv[i][0] != '-' && !a->id)
            a->id = argv[i];
        else
            return ctl_usage_error("dlq", "%s: unexpected argument \"%s\"", a->sub, argv[i]);
    }
    if (a->bit == S_SHOW && !a->id)
        return ctl_usage_error("dlq", "show needs a dead-letter ID");
    if (a->id && (a->bit & S_BULK) && bulk_opt)
        return ctl_usage_error("dlq", "%s ID: %s is for the bulk form (filters instead of an "
                                      "ID)", a->sub, bulk_opt);
    return dlq_check(a);
}

/* Library result to exit code, printing the message. */
static int dlq_result(int rc, const char *err)
{
    if (rc == EVBUS_CLIENT_EINVAL)
        return ctl_usage_error("dlq", "%s", err);
    return ctl_fail("dlq", "%s", err);
}

static void dlq_print_json(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (s)
        printf("%s\n", s);
    free(s);
    json_decref(j);
}

/* Copy of s on one line (control characters as spaces), cut to max chars. */
static void dlq_cell(char *out, size_t outlen, const char *s, size_t max)
{
    size_t n = 0, len = strlen(s);
    for (; n < len && n < max && n + 1 < outlen; n++)
        out[n] = (unsigned char)s[n] < 0x20 ? ' ' : s[n];
    out[n] = '\0';
    if (len > max && max >= 3 && max + 1 <= outlen)
        memcpy(out + max - 3, "...", 4);
}

/* "tenant acme, reason reject" or "any tenant and type". */
static void dlq_filter_text(char *out, size_t len, const struct dlq_args *a)
{
    const char *names[] = {"tenant", "type", "reason", "handler", "since", "until"};
    const char *vals[] = {a->tenant, a->type, a->reason, a->handler, a->since, a->until};
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (vals[i] && k < len)
            k += (size_t)snprintf(out + k, len - k, "%s%s %s", k ? ", " : "", names[i], vals[i]);
    if (!out[0])
        snprintf(out, len, "any tenant and type");
}

static void dlq_print_table(const evbus_dlq_entry_t *es, size_t n)
{
    int wid = 6, wtype = 4, wten = 6, wrsn = 6;
    for (size_t i = 0; i < n; i++) {
        int l;
        if ((l = (int)strlen(es[i].dlq_id)) > wid)
            wid = l;
        if ((l = (int)strlen(es[i].type)) > wtype)
            wtype = l < 40 ? l : 40;
        if ((l = (int)strlen(es[i].tenant)) > wten)
            wten = l < 24 ? l : 24;
        if ((l = (int)strlen(es[i].reason)) > wrsn)
            wrsn = l;
    }
    printf("%-*s  %-24s  %-*s  %-*s  %-*s  %8s  %s\n", wid, "DLQ ID", "LAST FAILURE", wtype,
           "TYPE", wten, "TENANT", wrsn, "REASON", "ATTEMPTS", "ERROR");
    for (size_t i = 0; i < n; i++) {
        char type[48], ten[32], error[DLQ_ERROR_COLS + 1];
        dlq_cell(type, sizeof type, es[i].type, 40);
        dlq_cell(ten, sizeof ten, es[i].tenant, 24);
        dlq_cell(error, sizeof error, es[i].error, DLQ_ERROR_COLS);
        printf("%-*s  %-24s  %-*s  %-*s  %-*s  %8ld  %s\n", wid, es[i].dlq_id,
               es[i].last_failure, wtype, type, wten, ten, wrsn, es[i].reason, es[i].attempts,
               error);
    }
}

/* The partitions' dead-letter streams {S:p}:dlq (NULL when memory runs
 * out); free with free_dlqs. */
static char **partition_dlqs(const ctl_env_t *env)
{
    unsigned np = env->partitions;
    char **v = calloc(np, sizeof *v);
    for (unsigned p = 0; v && p < np; p++) {
        int len = evbus_partition_key_name(NULL, 0, env->stream, p, true, ":dlq");
        if (len < 0 || !(v[p] = malloc((size_t)len + 1))) {
            for (unsigned k = 0; k < p; k++)
                free(v[k]);
            free(v);
            return NULL;
        }
        evbus_partition_key_name(v[p], (size_t)len + 1, env->stream, p, true, ":dlq");
    }
    return v;
}

static void free_dlqs(char **v, unsigned n)
{
    for (unsigned p = 0; v && p < n; p++)
        free(v[p]);
    free(v);
}

/*
 * `dlq list` on a partitioned stream: every partition's dead-letter stream
 * ({S:p}:dlq) merged newest first, paged with a cursor
 * (evbus_dlq_page_merged); an entry's id is "<id>:<partition>", the form
 * the cursor takes too.
 */
static int dlq_list_partitions(evbus_client_t *c, const struct dlq_args *a)
{
    const ctl_env_t *env = ctl_env();
    if (a->offset_n)
        return ctl_usage_error("dlq", "--offset: a partitioned stream's list is paged with "
                               "--cursor");
    unsigned np = env->partitions;
    char **dlqs = partition_dlqs(env);
    size_t *from = calloc(a->limit_n, sizeof *from);
    int rc = dlqs && from ? CTL_OK : ctl_fail("dlq", "out of memory");
    evbus_dlq_entry_t *es = NULL;
    size_t n = 0;
    char err[512], next[EVBUS_DLQ_MERGED_CURSOR_LEN] = "";
    if (rc == CTL_OK) {
        int lrc = evbus_dlq_page_merged(c, (const char *const *)dlqs, np, &a->f, a->cursor,
                                        a->limit_n, &es, &n, from, next, err, sizeof err);
        if (lrc != 0)
            rc = dlq_result(lrc, err);
    }
    ssize_t total = 0;
    for (unsigned p = 0; p < np && rc == CTL_OK; p++) {
        ssize_t t = evbus_dlq_count(c, dlqs[p], &a->f, err, sizeof err);
        if (t < 0)
            rc = dlq_result((int)t, err);
        total += t;
    }
    /* "<ms>-<seq>:<p>" fits: ids evbusd writes are far from 31 bytes */
    for (size_t i = 0; i < n && rc == CTL_OK; i++) {
        char id[EVBUS_DLQ_MERGED_CURSOR_LEN];
        int len = snprintf(id, sizeof id, "%s:%zu", es[i].dlq_id, from[i]);
        if (len > 0 && (size_t)len < sizeof es[i].dlq_id)
            memcpy(es[i].dlq_id, id, (size_t)len + 1);
    }
    if (rc == CTL_OK && a->json) {
        json_t *items = json_array();
        for (size_t i = 0; i < n; i++) {
            json_t *o = evbus_dlq_entry_json(&es[i]);
            json_object_set_new(o, "partition", json_integer((json_int_t)from[i]));
            json_array_append_new(items, o);
        }
        dlq_print_json(json_pack("{s:o, s:I, s:I, s:I, s:o}", "items", items, "count",
                                 (json_int_t)total, "partitions", (json_int_t)np, "limit",
                                 (json_int_t)a->limit_n, "next_cursor",
                                 next[0] ? json_string(next) : json_null()));
    } else if (rc == CTL_OK && n == 0) {
        char ft[512];
        dlq_filter_text(ft, sizeof ft, a);
        printf("no dead letters (%s; %zd in total in %u partitions%s)\n", ft, total, np,
               a->cursor ? ", none after the cursor" : "");
    } else if (rc == CTL_OK) {
        dlq_print_table(es, n);
        printf("showing %zu of %zd (%u partitions)", n, total, np);
        if (next[0])
            printf("; next page: --cursor %s", next);
        printf("\n");
    }
    evbus_dlq_list_free(es, n);
    free_dlqs(dlqs, np);
    free(from);
    return rc;
}

static int dlq_list(evbus_client_t *c, const char *dlq, const struct dlq_args *a)
{
    if (ctl_env()->partitions > 1)
        return dlq_list_partitions(c, a);
    evbus_dlq_entry_t *es;
    size_t n;
    char err[512], next[EVBUS_STREAM_ID_LEN] = "";
    int rc = a->offset_n
                 ? evbus_dlq_list(c, dlq, &a->f, a->offset_n, a->limit_n, &es, &n, err,
                                  sizeof err)
                 : evbus_dlq_page(c, dlq, &a->f, a->cursor, a->limit_n, &es, &n, next, err,
                                  sizeof err);
    if (rc != 0)
        return dlq_result(rc, err);
    ssize_t total = evbus_dlq_count(c, dlq, &a->f, err, sizeof err);
    if (total < 0) {
        evbus_dlq_list_free(es, n);
        return dlq_result((int)total, err);
    }
    /* with an offset, more follow when this page does not reach the end */
    if (a->offset_n && n > 0 && a->offset_n + n < (size_t)total)
        snprintf(next, sizeof next, "%s", es[n - 1].dlq_id);
    if (a->json) {
        json_t *items = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(items, evbus_dlq_entry_json(&es[i]));
        dlq_print_json(json_pack("{s:o, s:I, s:I, s:I, s:o}", "items", items, "count",
                                 (json_int_t)total, "offset", (json_int_t)a->offset_n, "limit",
                                 (json_int_t)a->limit_n, "next_cursor",
                                 next[0] ? json_string(next) : json_null()));
    } else if (n == 0) {
        char ft[512];
        dlq_filter_text(ft, sizeof ft, a);
        printf("no dead letters (%s; %zd in total%s)\n", ft, total,
               a->cursor ? ", none older than the cursor" : "");
    } else {
        dlq_print_table(es, n);
        if (a->cursor)
            printf("showing %zu of %zd", n, total);
        else
            printf("showing %zu-%zu of %zd", a->offset_n + 1, a->offset_n + n, total);
        if (next[0])
            printf("; next page: --cursor %s", next);
        printf("\n");
    }
    evbus_dlq_list_free(es, n);
    return CTL_OK;
}

static int dlq_show(evbus_client_t *c, const char *dlq, const struct dlq_args *a)
{
    evbus_dlq_entry_t e;
    char err[256];
    int rc = evbus_dlq_get(c, dlq, a->id, a->tenant, &e, err, sizeof err);
    if (rc != 0)
        return dlq_result(rc, err);
    json_t *j = evbus_dlq_entry_json(&e);
    if (a->json) {
        dlq_print_json(j);
    } else {
        printf("dlq id:        %s\n"
               "stream:        %s (entry %s)\n"
               "event id:      %s\n"
               "type:          %s\n"
               "tenant:        %s\n"
               "reason:        %s\n"
               "handlers:      %s\n"
               "attempts:      %ld\n"
               "first failure: %s\n"
               "last failure:  %s\n",
               e.dlq_id, e.stream, e.orig_id, e.event_id, e.type, e.tenant, e.reason, e.handlers,
               e.attempts, e.first_failure, e.last_failure);
        if (e.replay_job)
            printf("replay job:    %s\n", e.replay_job);
        printf("error:         %s\n", e.error);
        /* every failed attempt, oldest first (docs: ATTEMPT ERRORS) */
        json_t *errs = json_object_get(j, "attempt_errors");
        if (json_array_size(errs)) {
            printf("attempt errors:\n");
            size_t i;
            json_t *x;
            json_array_foreach(errs, i, x)
            {
                const char *h = json_string_value(json_object_get(x, "handler"));
                const char *at = json_string_value(json_object_get(x, "at"));
                const char *t = json_string_value(json_object_get(x, "error"));
                printf("  #%lld  %s  %s  %s\n",
                       (long long)json_integer_value(json_object_get(x, "attempt")),
                       at ? at : "?", h ? h : "-", t ? t : "");
            }
        }
        printf("event:\n");
        json_t *ev = json_object_get(j, "event");
        char *pretty = json_is_null(ev) ? NULL : json_dumps(ev, JSON_INDENT(2));
        printf("%s\n", pretty ? pretty : e.event);
        free(pretty);
        json_decref(j);
    }
    evbus_dlq_entry_free(&e);
    return CTL_OK;
}

/* Keys of a summary section, largest count first (then by name). */
static int dlq_count_cmp(const void *x, const void *y)
{
    const json_t *a = *(json_t *const *)x, *b = *(json_t *const *)y;
    json_int_t ca = json_integer_value(json_array_get(a, 1));
    json_int_t cb = json_integer_value(json_array_get(b, 1));
    if (ca != cb)
        return ca < cb ? 1 : -1;
    return strcmp(json_string_value(json_array_get(a, 0)),
                  json_string_value(json_array_get(b, 0)));
}

static void dlq_print_section(const char *title, json_t *counts)
{
    size_t n = json_object_size(counts), k = 0;
    json_t **rows = calloc(n ? n : 1, sizeof *rows);
    if (!rows)
        return;
    const char *key;
    json_t *v;
    int w = (int)strlen(title);
    json_object_foreach(counts, key, v)
    {
        rows[k++] = json_pack("[s, O]", key, v);
        int l = (int)strlen(key);
        w = l > w ? (l < 60 ? l : 60) : w;
    }
    qsort(rows, k, sizeof *rows, dlq_count_cmp);
    printf("\n%-*s  %8s\n", w, title, "COUNT");
    for (size_t i = 0; i < k; i++) {
        const char *name = json_string_value(json_array_get(rows[i], 0));
        char cell[64];
        dlq_cell(cell, sizeof cell, name && *name ? name : "(none)", 60);
        printf("%-*s  %8lld\n", w, cell,
               (long long)json_integer_value(json_array_get(rows[i], 1)));
        json_decref(rows[i]);
    }
    free(rows);
}

static int dlq_summary_cmd(evbus_client_t *c, const char *dlq, const struct dlq_args *a)
{
    json_t *s;
    char err[512];
    /* a partitioned stream's summary counts every partition */
    const ctl_env_t *env = ctl_env();
    char **dlqs = env->partitions > 1 ? partition_dlqs(env) : NULL;
    if (env->partitions > 1 && !dlqs)
        return ctl_fail("dlq", "out of memory");
    int rc = dlqs ? dlq_summary(c, (const char *const *)dlqs, env->partitions, &a->f, &s, err,
                                sizeof err)
                  : dlq_summary(c, &dlq, 1, &a->f, &s, err, sizeof err);
    free_dlqs(dlqs, env->partitions);
    if (rc != 0)
        return dlq_result(rc, err);
    if (a->json) {
        dlq_print_json(s);
        return CTL_OK;
    }
    char ft[512];
    dlq_filter_text(ft, sizeof ft, a);
    json_int_t total = json_integer_value(json_object_get(s, "total"));
    printf("%lld dead letter%s matching %s", (long long)total, total == 1 ? "" : "s", ft);
    if (total > 0)
        printf(", dead-lettered from %s to %s",
               json_string_value(json_object_get(s, "oldest")),
               json_string_value(json_object_get(s, "newest")));
    printf("\n");
    if (total > 0) {
        dlq_print_section("TENANT", json_object_get(s, "by_tenant"));
        dlq_print_section("TYPE", json_object_get(s, "by_type"));
        dlq_print_section("REASON", json_object_get(s, "by_reason"));
        dlq_print_section("HANDLER", json_object_get(s, "by_handler"));
    }
    json_decref(s);
    return CTL_OK;
}

static int dlq_retry_one(evbus_client_t *c, const char *dlq, const struct dlq_args *a)
{
    char new_id[EVBUS_STREAM_ID_LEN], err[256];
    int rc = evbus_dlq_retry(c, dlq, a->id, a->tenant, new_id, sizeof new_id, err, sizeof err);
    if (rc != 0)
        return dlq_result(rc, err);
    if (a->json)
        dlq_print_json(json_pack("{s:s, s:s}", "dlq_id", a->id, "stream_id", new_id));
    else
        printf("%s\n", new_id);
    return CTL_OK;
}

/* The PostgreSQL connection a removal marks events with: NULL and CTL_OK
 * when there is none to use, NULL and the exit code when it is configured
 * but unusable (then nothing may be removed). */
static PGconn *dlq_metadata(const struct dlq_args *a, int *rc)
{
    *rc = CTL_OK;
    const char *url = ctl_env()->postgres_url;
    if (a->no_metadata || !url)
        return NULL;
    char err[512];
    PGconn *pg = dlq_metadata_connect(url, err, sizeof err);
    if (!pg)
        *rc = ctl_fail("dlq", "%s; nothing was removed (--no-metadata removes dead letters "
                              "without marking their events PURGED)", err);
    return pg;
}

static int dlq_delete_one(evbus_client_t *c, const char *dlq, const struct dlq_args *a)
{
    int rc;
    PGconn *pg = dlq_metadata(a, &rc);
    if (rc != CTL_OK)
        return rc;
    evbus_dlq_entry_t *es = NULL;
    size_t n = 0;
    char err[256];
    const char *ids[1] = {a->id};
    ssize_t d = evbus_dlq_remove(c, dlq, ids, 1, a->tenant, NULL, &es, &n, err, sizeof err);
    if (d < 0)
        rc = dlq_result((int)d, err);
    else if (n == 0)
        rc = ctl_fail("dlq", "dead letter %s: not found", a->id);
    int marked = 0;
    if (rc == CTL_OK && pg && es[0].event_id[0] && !es[0].replay_job) {
        const char *ev[1] = {es[0].event_id};
        if ((marked = store_events_mark_purged(pg, ev, 1, err, sizeof err)) < 0)
            rc = ctl_fail("dlq", "deleted %s, but %s", a->id, err);
    }
    if (rc == CTL_OK && a->json)
        dlq_print_json(json_pack("{s:s, s:b, s:o}", "dlq_id", a->id, "deleted", 1,
                                 "marked_purged", pg ? json_integer(marked) : json_null()));
    else if (rc == CTL_OK)
        printf("deleted %s\n", a->id);
    evbus_dlq_list_free(es, n);
    if (pg)
        PQfinish(pg);
    return rc;
}

/* Asks on the terminal; true only for an explicit yes. */
static bool dlq_confirm(const char *verb, size_t count, const char *what)
{
    fprintf(stderr, "%s %zu dead letter%s matching %s? [y/N] ", verb, count,
            count == 1 ? "" : "s", what);
    fflush(stderr);
    char line[16];
    if (!fgets(line, sizeof line, stdin))
        return false;
    return strcmp(line, "y\n") == 0 || strcmp(line, "Y\n") == 0 || strcmp(line, "yes\n") == 0;
}

struct dlq_failures {
    size_t n;
};

static void dlq_on_failure(void *ud, const char *id, const char *why)
{
    struct dlq_failures *f = ud;
    if (f->n++ < DLQ_FAILURES_SHOWN)
        fprintf(stderr, "evbusctl dlq: %s: %s\n", id, why);
    else if (f->n == DLQ_FAILURES_SHOWN + 1)
        fprintf(stderr, "evbusctl dlq: more failures are only counted\n");
}

static const char *const DLQ_PAST[] = {"retried", "deleted", "purged"};

static void dlq_print_result(const struct dlq_args *a, dlq_bulk_action_t act,
                             const dlq_ids_t *ids, const dlq_bulk_result_t *r,
                             const char *archive)
{
    if (a->json) {
        json_t *o = json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I}", "action",
                              dlq_bulk_action_name(act), "dry_run", 0, "matching",
                              (json_int_t)ids->matching, "selected", (json_int_t)ids->n,
                              DLQ_PAST[act], (json_int_t)r->done, "failed", (json_int_t)r->failed,
                              "gone", (json_int_t)r->gone, "not_attempted",
                              (json_int_t)r->skipped);
        json_object_set_new(o, "stopped", r->stop[0] ? json_string(r->stop) : json_null());
        if (act != DLQ_BULK_RETRY)
            json_object_set_new(o, "marked_purged",
                                r->marked >= 0 ? json_integer(r->marked) : json_null());
        if (act == DLQ_BULK_PURGE)
            json_object_set_new(o, "archive", json_string(archive));
        dlq_print_json(o);
        return;
    }
    printf("%s %zu of %zu matching (%zu failed", DLQ_PAST[act], r->done, ids->matching,
           r->failed);
    if (r->gone)
        printf(", %zu already gone", r->gone);
    if (r->skipped)
        printf(", %zu not attempted", r->skipped);
    printf(")");
    if (act == DLQ_BULK_PURGE && r->done)
        printf("; archived to %s", archive);
    if (r->marked >= 0)
        printf("; %ld event%s marked PURGED", r->marked, r->marked == 1 ? "" : "s");
    printf("\n");
}

/* Whether stream id a is older than b (ids of different partitions). */
static bool sid_older(const char *a, const char *b)
{
    unsigned long long am, as, bm, bs;
    evbus_stream_id_split(a, &am, &as);
    evbus_stream_id_split(b, &bm, &bs);
    return am < bm || (am == bm && as < bs);
}

/*
 * The bulk forms (retry and delete without an ID, purge) over `n` dead-
 * letter streams: one per partition of a partitioned stream, else the one.
 * The filter selects in every stream; --limit keeps the oldest across all
 * of them (the runs go oldest first in each); one confirmation covers the
 * total, then each stream's run follows the other's, and one result sums
 * them.  A run that stops leaves the later streams' entries not attempted.
 */
static int dlq_bulk(evbus_client_t *c, const char *const *dlqs, size_t n,
                    const struct dlq_args *a, dlq_bulk_action_t act)
{
    dlq_ids_t *ids = calloc(n, sizeof *ids);
    if (!ids)
        return ctl_fail("dlq", "out of memory");
    char err[512], what[512];
    int rc = 0;
    dlq_ids_t total = {0};
    for (size_t p = 0; p < n && rc == 0; p++) {
        rc = dlq_ids_collect(c, dlqs[p], &a->f, n > 1 ? 0 : a->limit_n, &ids[p], err,
                             sizeof err);
        total.matching += ids[p].matching;
    }
    if (rc != 0) {
        for (size_t p = 0; p < n; p++)
            dlq_ids_free(&ids[p]);
        free(ids);
        return dlq_result(rc, err);
    }
    if (n > 1 && a->limit_n) {
        /* the oldest limit_n across the streams: a merge of their heads */
        size_t *keep = calloc(n, sizeof *keep), left = a->limit_n;
        for (;;) {
            size_t best = n;
            for (size_t p = 0; p < n; p++)
                if (keep[p] < ids[p].n &&
                    (best == n || sid_older(ids[p].id[keep[p]], ids[best].id[keep[best]])))
                    best = p;
            if (best == n || !left)
                break;
            keep[best]++;
            left--;
        }
        for (size_t p = 0; p < n; p++)
            ids[p].n = keep[p];
        free(keep);
    }
    for (size_t p = 0; p < n; p++)
        total.n += ids[p].n;
    dlq_filter_text(what, sizeof what, a);
    if (a->dry_run) {
        if (a->json)
            dlq_print_json(json_pack("{s:s, s:b, s:I, s:I}", "action", dlq_bulk_action_name(act),
                                     "dry_run", 1, "matching", (json_int_t)total.matching,
                                     "selected", (json_int_t)total.n));
        else
            printf("would %s %zu dead letter%s matching %s (dry run: nothing changed)\n",
                   dlq_bulk_action_name(act), total.n, total.n == 1 ? "" : "s", what);
        for (size_t p = 0; p < n; p++)
            dlq_ids_free(&ids[p]);
        free(ids);
        return CTL_OK;
    }
    const char *archive = a->archive ? a->archive : ctl_env()->dlq_archive;
    PGconn *pg = NULL;
    if (act != DLQ_BULK_RETRY && total.n > 0) {
        /* usage problems first, then the servers, then the question */
        if (!a->yes && !isatty(STDIN_FILENO))
            rc = ctl_usage_error("dlq", "%s of %zu dead letters matching %s needs "
                                        "confirmation, and stdin is not a terminal: add --yes",
                                 a->sub, total.n, what);
        else if (act == DLQ_BULK_PURGE && !archive)
            rc = ctl_usage_error("dlq", "no archive file: give --archive PATH (or -c DIR for "
                                        "dlq.archive)");
        if (rc == CTL_OK)
            pg = dlq_metadata(a, &rc);
        if (rc == CTL_OK && !a->yes && !dlq_confirm(act == DLQ_BULK_PURGE ? "Purge" : "Delete",
                                                   total.n, what))
            rc = ctl_fail("dlq", "%s cancelled; nothing was removed", a->sub);
    }
    if (rc == CTL_OK) {
        struct dlq_failures fails = {0};
        dlq_bulk_opts_t o = {.action = act, .tenant = a->tenant, .rate = a->rate_n,
                             .archive_path = archive, .pg = pg, .on_failure = dlq_on_failure,
                             .ud = &fails};
        dlq_bulk_result_t sum = {.marked = pg ? 0 : -1};
        for (size_t p = 0; p < n; p++) {
            if (sum.stop[0]) {
                sum.skipped += ids[p].n; /* after a stop: not attempted */
                continue;
            }
            if (!ids[p].n)
                continue;
            dlq_bulk_result_t res;
            dlq_bulk_run(c, dlqs[p], &o, &ids[p], &res);
            sum.done += res.done;
            sum.failed += res.failed;
            sum.gone += res.gone;
            sum.skipped += res.skipped;
            if (res.marked >= 0 && sum.marked >= 0)
                sum.marked += res.marked;
            else
                sum.marked = -1;
            memcpy(sum.stop, res.stop, sizeof sum.stop);
        }
        dlq_print_result(a, act, &total, &sum, archive);
        if (sum.stop[0])
            rc = ctl_fail("dlq", "stopped: %s%s", sum.stop,
                          sum.skipped ? "; the dead letters not attempted are still there" : "");
        else if (sum.failed)
            rc = CTL_FAIL;
    }
    if (pg)
        PQfinish(pg);
    for (size_t p = 0; p < n; p++)
        dlq_ids_free(&ids[p]);
    free(ids);
    return rc;
}

/* The bulk form on this command's dead-letter streams: every partition's
 * of a partitioned stream (`dlq` is then NULL), else `dlq`. */
static int dlq_bulk_cmd(evbus_client_t *c, const char *dlq, const struct dlq_args *a,
                        dlq_bulk_action_t act)
{
    const ctl_env_t *env = ctl_env();
    if (dlq || env->partitions <= 1)
        return dlq_bulk(c, &dlq, 1, a, act);
    char **dlqs = partition_dlqs(env);
    if (!dlqs)
        return ctl_fail("dlq", "out of memory");
    int rc = dlq_bulk(c, (const char *const *)dlqs, env->partitions, a, act);
    free_dlqs(dlqs, env->partitions);
    return rc;
}

static int dlq_retry(evbus_client_t *c, const char *dlq, const struct dlq_args *a)
{
    return a->id ? dlq_retry_one(c, dlq, a) : dlq_bulk_cmd(c, dlq, a, DLQ_BULK_RETRY);
}

static int dlq_delete(evbus_client_t *c, const char *dlq, const struct dlq_args *a)
{
    return a->id ? dlq_delete_one(c, dlq, a) : dlq_bulk_cmd(c, dlq, a, DLQ_BULK_DELETE);
}

static int dlq_purge(evbus_client_t *c, const char *dlq, const struct dlq_args *a)
{
    return dlq_bulk_cmd(c, dlq, a, DLQ_BULK_PURGE);
}

int cmd_dlq(int argc, char **argv)
{
    static const struct {
        const char *name;
        unsigned bit;
        int (*fn)(evbus_client_t *, const char *, const struct dlq_args *);
    } subs[] = {{"list", S_LIST, dlq_list},         {"show", S_SHOW, dlq_show},
                {"summary", S_SUMMARY, dlq_summary_cmd}, {"retry", S_RETRY, dlq_retry},
                {"delete", S_DELETE, dlq_delete},   {"purge", S_PURGE, dlq_purge}};
    if (argc < 2)
        return ctl_usage_error("dlq",
                               "missing subcommand (list, show, summary, retry, delete, purge)");
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        dlq_usage(stdout);
        return CTL_OK;
    }
    size_t k = 0;
    while (k < sizeof subs / sizeof subs[0] && strcmp(argv[1], subs[k].name) != 0)
        k++;
    if (k == sizeof subs / sizeof subs[0])
        return ctl_usage_error("dlq", "unknown subcommand \"%s\"", argv[1]);
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            dlq_usage(stdout);
            return CTL_OK;
        }
    struct dlq_args a = {.sub = argv[1], .bit = subs[k].bit};
    int rc = dlq_parse(argc, argv, &a);
    if (rc != CTL_OK)
        return rc;

    /* with partitions, list, summary, purge and the bulk forms take them
     * all (dlq_bulk_cmd), and an ID:P names one dead letter */
    const ctl_env_t *env = ctl_env();
    char plain[EVBUS_STREAM_ID_LEN], *pdlq = NULL;
    bool all_parts = env->partitions > 1 && !a.id;
    if (env->partitions > 1 && a.id) {
        size_t part = 0;
        if (evbus_dlq_merged_id(a.id, env->partitions, plain, &part) != 0)
            return ctl_usage_error("dlq", "\"%s\": a dead letter of a partitioned stream is "
                                   "ID:PARTITION (evbusctl dlq list prints them)", a.id);
        int len = evbus_partition_key_name(NULL, 0, env->stream, (unsigned)part, true, ":dlq");
        if (len < 0 || !(pdlq = malloc((size_t)len + 1)))
            return ctl_fail("dlq", "out of memory");
        evbus_partition_key_name(pdlq, (size_t)len + 1, env->stream, (unsigned)part, true,
                                 ":dlq");
        a.id = plain;
    }
    if (!env->redis_url && !env->redis_cluster) {
        free(pdlq);
        return ctl_no_config("dlq", "Redis", "--redis URL (or EVBUS_REDIS_URL)");
    }
    char err[256];
    evbus_client_t *c = ctl_client(env, err, sizeof err);
    if (!c) {
        free(pdlq);
        return ctl_usage_error("dlq", "%s", err);
    }
    ctl_apply_retention(c);
    ctl_apply_wait(c);
    rc = subs[k].fn(c, pdlq ? pdlq : all_parts ? NULL : env->dlq_stream, &a);
    evbus_client_free(c);
    free(pdlq);
    return rc;
}
