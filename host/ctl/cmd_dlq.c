/*
 * cmd_dlq.c — `evbusctl dlq list|show|retry|delete|purge`: the operator's
 * view of the dead-letter stream, through libevbus's DLQ functions.
 *
 * This file only parses arguments, maps library results to exit codes and
 * formats output; filtering, tenant isolation and atomic retry are the
 * library's.  Every subcommand has --json for scripts.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/evbus_client.h"
#include "ctl/ctl.h"

#define DLQ_DEFAULT_LIMIT 20
/* Widest error text shown in the list table. */
#define DLQ_ERROR_COLS 60

static void dlq_usage(FILE *out)
{
    fputs("usage: evbusctl dlq list [--limit N] [--offset N] [--tenant T] [--type TYPE] [--json]\n"
          "       evbusctl dlq show ID [--tenant T] [--json]\n"
          "       evbusctl dlq retry ID [--tenant T] [--json]\n"
          "       evbusctl dlq delete ID [--tenant T] [--json]\n"
          "       evbusctl dlq purge [--tenant T] [--type TYPE] [--yes] [--json]\n"
          "\n"
          "Inspects and manages dead letters (events the daemon gave up on).\n"
          "\n"
          "  list     newest first; --limit 1..100 (default 20), --offset skips\n"
          "  show     one dead letter with its original event\n"
          "  retry    re-publish the original event to its stream as a new entry\n"
          "           (field retried_from = ID) and remove the dead letter; prints\n"
          "           the new stream id\n"
          "  delete   remove one dead letter\n"
          "  purge    remove every dead letter matching the filters; asks for\n"
          "           confirmation on a terminal, needs --yes otherwise\n"
          "\n"
          "  --tenant T    only this tenant's dead letters (others are 'not found')\n"
          "  --type TYPE   an exact type, TYPE.** for it and every type below, or **\n"
          "  --json        machine-readable output\n"
          "  -h, --help    show this help\n"
          "\n"
          "Exit status: 0 done, 1 not found or Redis failed, 2 usage error.\n",
          out);
}

struct dlq_args {
    const char *sub, *id, *tenant, *type;
    size_t limit, offset;
    bool json, yes, has_limit, has_offset;
};


static int dlq_parse_size(const char *opt, const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return ctl_usage_error("dlq", "%s \"%s\": not a non-negative integer", opt, s);
    *out = (size_t)v;
    return 0;
}

/* Parses everything after the subcommand; CTL_OK, or the exit code. */
static int dlq_parse(int argc, char **argv, struct dlq_args *a)
{
    bool list = strcmp(a->sub, "list") == 0, purge = strcmp(a->sub, "purge") == 0;
    bool one = !list && !purge;
    for (int i = 2; i < argc; i++) {
        const char *v;
        int m;
        if ((m = ctl_opt_value(argc, argv, &i, "--tenant", &v)) != 0) {
            if (m < 0)
                return ctl_usage_error("dlq", "--tenant needs a value");
            a->tenant = v;
        } else if ((list || purge) && (m = ctl_opt_value(argc, argv, &i, "--type", &v)) != 0) {
            if (m < 0)
                return ctl_usage_error("dlq", "--type needs a value");
            a->type = v;
        } else if (list && (m = ctl_opt_value(argc, argv, &i, "--limit", &v)) != 0) {
            if (m < 0 || dlq_parse_size("--limit", v, &a->limit) != 0)
                return m < 0 ? ctl_usage_error("dlq", "--limit needs a value") : CTL_USAGE;
            a->has_limit = true;
        } else if (list && (m = ctl_opt_value(argc, argv, &i, "--offset", &v)) != 0) {
            if (m < 0 || dlq_parse_size("--offset", v, &a->offset) != 0)
                return m < 0 ? ctl_usage_error("dlq", "--offset needs a value") : CTL_USAGE;
        } else if (strcmp(argv[i], "--json") == 0) {
            a->json = true;
        } else if (purge && strcmp(argv[i], "--yes") == 0) {
            a->yes = true;
        } else if (one && argv[i][0] != '-' && !a->id) {
            a->id = argv[i];
        } else {
            return ctl_usage_error("dlq", "%s: unexpected argument \"%s\"", a->sub, argv[i]);
        }
    }
    if (one && !a->id)
        return ctl_usage_error("dlq", "%s needs a dead-letter ID", a->sub);
    if (!a->has_limit)
        a->limit = DLQ_DEFAULT_LIMIT;
    if (list && (a->limit < 1 || a->limit > EVBUS_DLQ_LIST_MAX))
        return ctl_usage_error("dlq", "--limit %zu: must be 1..%d", a->limit,
                               EVBUS_DLQ_LIST_MAX);
    return CTL_OK;
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

static void dlq_filter_text(char *out, size_t len, const evbus_dlq_filter_t *f)
{
    if (f->tenant && f->type)
        snprintf(out, len, "tenant %s and type %s", f->tenant, f->type);
    else if (f->tenant)
        snprintf(out, len, "tenant %s", f->tenant);
    else if (f->type)
        snprintf(out, len, "type %s", f->type);
    else
        snprintf(out, len, "any tenant and type");
}

static int dlq_list(evbus_client_t *c, const char *dlq, const struct dlq_args *a)
{
    evbus_dlq_filter_t f = {a->tenant, a->type};
    evbus_dlq_entry_t *es;
    size_t n;
    char err[256];
    int rc = evbus_dlq_list(c, dlq, &f, a->offset, a->limit, &es, &n, err, sizeof err);
    if (rc != 0)
        return dlq_result(rc, err);
    ssize_t total = evbus_dlq_count(c, dlq, &f, err, sizeof err);
    if (total < 0) {
        evbus_dlq_list_free(es, n);
        return dlq_result((int)total, err);
    }
    if (a->json) {
        json_t *items = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(items, evbus_dlq_entry_json(&es[i]));
        dlq_print_json(json_pack("{s:o, s:I, s:I, s:I}", "items", items, "count",
                                 (json_int_t)total, "offset", (json_int_t)a->offset, "limit",
                                 (json_int_t)a->limit));
    } else if (n == 0) {
        char ft[256];
        dlq_filter_text(ft, sizeof ft, &f);
        printf("no dead letters (%s; %zd in total, offset %zu)\n", ft, total, a->offset);
    } else {
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
                   es[i].last_failure, wtype, type, wten, ten, wrsn, es[i].reason,
                   es[i].attempts, error);
        }
        printf("showing %zu-%zu of %zd\n", a->offset + 1, a->offset + n, total);
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
        printf("error:         %s\nevent:\n", e.error);
        json_t *ev = json_object_get(j, "event");
        char *pretty = json_is_null(ev) ? NULL : json_dumps(ev, JSON_INDENT(2));
        printf("%s\n", pretty ? pretty : e.event);
        free(pretty);
        json_decref(j);
    }
    evbus_dlq_entry_free(&e);
    return CTL_OK;
}

static int dlq_retry(evbus_client_t *c, const char *dlq, const struct dlq_args *a)
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

static int dlq_delete(evbus_client_t *c, const char *dlq, const struct dlq_args *a)
{
    char err[256];
    int rc = evbus_dlq_delete(c, dlq, a->id, a->tenant, err, sizeof err);
    if (rc != 0)
        return dlq_result(rc, err);
    if (a->json)
        dlq_print_json(json_pack("{s:s, s:b}", "dlq_id", a->id, "deleted", 1));
    else
        printf("deleted %s\n", a->id);
    return CTL_OK;
}

/* Asks on the terminal; true only for an explicit yes. */
static bool dlq_confirm(ssize_t count, const char *what)
{
    fprintf(stderr, "Purge %zd dead letter%s matching %s? [y/N] ", count, count == 1 ? "" : "s",
            what);
    fflush(stderr);
    char line[16];
    if (!fgets(line, sizeof line, stdin))
        return false;
    return strcmp(line, "y\n") == 0 || strcmp(line, "Y\n") == 0 || strcmp(line, "yes\n") == 0;
}

static int dlq_purge(evbus_client_t *c, const char *dlq, const struct dlq_args *a)
{
    evbus_dlq_filter_t f = {a->tenant, a->type};
    char err[256], what[256];
    dlq_filter_text(what, sizeof what, &f);
    ssize_t count = evbus_dlq_count(c, dlq, &f, err, sizeof err);
    if (count < 0)
        return dlq_result((int)count, err);
    if (count > 0 && !a->yes) {
        if (!isatty(STDIN_FILENO))
            return ctl_usage_error("dlq",
                                   "purge of %zd dead letters matching %s needs confirmation, "
                                   "and stdin is not a terminal: add --yes",
                                   count, what);
        if (!dlq_confirm(count, what))
            return ctl_fail("dlq", "purge cancelled; nothing was deleted");
    }
    ssize_t purged = count > 0 ? evbus_dlq_purge(c, dlq, &f, err, sizeof err) : 0;
    if (purged < 0)
        return dlq_result((int)purged, err);
    if (a->json)
        dlq_print_json(json_pack("{s:I}", "purged", (json_int_t)purged));
    else
        printf("purged %zd dead letter%s matching %s\n", purged, purged == 1 ? "" : "s", what);
    return CTL_OK;
}

int cmd_dlq(int argc, char **argv)
{
    if (argc < 2)
        return ctl_usage_error("dlq", "missing subcommand (list, show, retry, delete, purge)");
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        dlq_usage(stdout);
        return CTL_OK;
    }
    static const struct {
        const char *name;
        int (*fn)(evbus_client_t *, const char *, const struct dlq_args *);
    } subs[] = {{"list", dlq_list},
                {"show", dlq_show},
                {"retry", dlq_retry},
                {"delete", dlq_delete},
                {"purge", dlq_purge}};
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
    struct dlq_args a = {.sub = argv[1]};
    int rc = dlq_parse(argc, argv, &a);
    if (rc != CTL_OK)
        return rc;

    const ctl_env_t *env = ctl_env();
    if (!env->redis_url)
        return ctl_no_config("dlq", "Redis", "--redis URL (or EVBUS_REDIS_URL)");
    char err[256];
    evbus_client_t *c = evbus_client_new(env->redis_url, env->stream, err, sizeof err);
    if (!c)
        return ctl_usage_error("dlq", "%s", err);
    ctl_apply_retention(c);
    rc = subs[k].fn(c, env->dlq_stream, &a);
    evbus_client_free(c);
    return rc;
}
