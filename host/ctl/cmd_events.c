/*
 * cmd_events.c — `evbusctl events show|list`: reads the per-event metadata
 * the daemon writes to PostgreSQL (status, attempts, handler outcomes).
 * Read-only; the data is best-effort (see docs/storage.md: updates are
 * dropped rather than slowing delivery when PostgreSQL lags).
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/settings.h"
#include "ctl/ctl.h"
#include "store/store.h"

static void events_usage(FILE *out)
{
    fputs("usage: evbusctl events show ID [--json]\n"
          "       evbusctl events list [--tenant X] [--type T] [--status S]\n"
          "                            [--since RFC3339] [--limit N] [--offset N] [--json]\n"
          "\n"
          "  show      one event's metadata: status, attempts, last error, outcomes\n"
          "  list      newest first; --limit 1..1000 (default 100)\n"
          "  --status  PENDING, PROCESSING, COMPLETED, RETRYING, DEAD_LETTERED, IGNORED\n"
          "            or PURGED (its dead letter was deleted or purged)\n"
          "  --since   only events created at or after this time (2024-05-01T10:00:00Z)\n"
          "  --json    machine-readable output\n"
          "  -h, --help  show this help\n"
          "\n"
          "show of an id that is not found says when metadata older than the retention\n"
          "(postgres.metadata.retention) was dropped: the id may have been among it.\n"
          "\n"
          "Exit status: 0 done, 1 not found or PostgreSQL unreachable, 2 usage error.\n",
          out);
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "-";
}

static void print_event(const json_t *ev)
{
    const char *keys[] = {"id", "type", "tenant", "status", "attempts", "last_error",
                          "correlation_id", "source", "stream_id", "schema_version",
                          "created_at", "status_at", "updated_at", "completed_at"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const json_t *v = json_object_get(ev, keys[i]);
        if (json_is_integer(v))
            printf("%-15s %lld\n", keys[i], (long long)json_integer_value(v));
        else
            printf("%-15s %s\n", keys[i], json_is_string(v) ? json_string_value(v) : "-");
    }
    const json_t *oc = json_object_get(ev, "handler_outcomes");
    if (json_is_object(oc)) {
        printf("handlers:\n");
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)oc, k, v)
        {
            char *s = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            printf("  %-30s %s\n", k, s ? s : json_string_value(v));
            free(s);
        }
    }
    /* every transition, oldest first (docs/storage.md, status_history) */
    const json_t *hist = json_object_get(ev, "status_history");
    if (json_array_size(hist)) {
        printf("history:\n");
        size_t i;
        const json_t *x;
        json_array_foreach((json_t *)hist, i, x)
        {
            const char *e = json_string_value(json_object_get(x, "error"));
            printf("  %-24s %-13s attempt %lld%s%s\n", jstr(x, "at"), jstr(x, "status"),
                   (long long)json_integer_value(json_object_get(x, "attempts")), e ? "  " : "",
                   e ? e : "");
        }
    }
}

/* Why an id may be missing: "; metadata created before T has expired
 * (retention 30d)", or "" when retention never dropped anything.  Event ids
 * carry no time, so whether this id was among what expired cannot be
 * told, only that metadata of that age is gone. */
static void expired_note(PGconn *c, char *out, size_t len)
{
    out[0] = '\0';
    json_t *exp = NULL;
    char err[256];
    if (store_events_expired(c, &exp, err, sizeof err) != 0 || !exp)
        return;
    char retention[32];
    cfg_duration_text((uint64_t)json_integer_value(json_object_get(exp, "retention_s")) * 1000,
                      retention, sizeof retention);
    snprintf(out, len, "; metadata created before %s has expired (retention %s)",
             jstr(exp, "before"), retention);
    json_decref(exp);
}

int cmd_events(int argc, char **argv)
{
    static const struct option opts[] = {
        {"tenant", required_argument, NULL, 'n'}, {"type", required_argument, NULL, 't'},
        {"status", required_argument, NULL, 's'}, {"since", required_argument, NULL, 'S'},
        {"limit", required_argument, NULL, 'l'},  {"offset", required_argument, NULL, 'o'},
        {"json", no_argument, NULL, 'j'},         {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    store_event_filter_t f = {.status = -1, .limit = 100};
    bool json = false;
    optind = 0;
    opterr = 0;
    int ch;
    char *end;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'n': f.tenant = optarg; break;
        case 't': f.type = optarg; break;
        case 'j': json = true; break;
        case 'h': events_usage(stdout); return CTL_OK;
        case 's':
            if ((f.status = store_status_parse(optarg)) < 0)
                return ctl_usage_error("events", "--status: unknown status '%s'", optarg);
            break;
        case 'S':
            if (store_parse_rfc3339(optarg, &f.since_ms) != 0)
                return ctl_usage_error("events", "--since: '%s' is not an RFC 3339 time "
                                                 "(e.g. 2024-05-01T10:00:00Z)", optarg);
            break;
        case 'l':
            f.limit = (int)strtol(optarg, &end, 10);
            if (*end || f.limit < 1 || f.limit > 1000)
                return ctl_usage_error("events", "--limit: expected 1..1000, got '%s'", optarg);
            break;
        case 'o':
            f.offset = (int)strtol(optarg, &end, 10);
            if (*end || f.offset < 0)
                return ctl_usage_error("events", "--offset: expected >= 0, got '%s'", optarg);
            break;
        default:
            return ctl_usage_error("events", "%s: unknown option or missing value",
                                   argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return ctl_usage_error("events", "missing subcommand (show or list)");
    const char *sub = argv[optind++];
    const char *id = optind < argc ? argv[optind++] : NULL;
    if (optind < argc)
        return ctl_usage_error("events", "unexpected argument '%s'", argv[optind]);
    bool show = strcmp(sub, "show") == 0;
    if (!show && strcmp(sub, "list") != 0)
        return ctl_usage_error("events", "unknown subcommand '%s' (show or list)", sub);
    if (show && !id)
        return ctl_usage_error("events", "show needs an event ID");
    if (!show && id)
        return ctl_usage_error("events", "unexpected argument '%s'", id);

    const ctl_env_t *env = ctl_env();
    if (!env->postgres_url)
        return ctl_no_postgres("events");
    char err[512];
    PGconn *c = store_connect(env->postgres_url, err, sizeof err);
    if (!c)
        return ctl_fail("events", "%s", err);
    json_t *out = NULL;
    int rc = show ? store_events_get(c, id, &out, err, sizeof err)
                  : store_events_list(c, &f, &out, err, sizeof err);
    if (rc == 0 && show && !out) {
        char note[256];
        expired_note(c, note, sizeof note);
        PQfinish(c);
        return ctl_fail("events", "no event %s%s", id, note);
    }
    PQfinish(c);
    if (rc == STORE_EINVAL)
        return ctl_usage_error("events", "--%s", err);
    if (rc != 0)
        return ctl_fail("events", "%s", err);
    if (json) {
        char *s = json_dumps(out, JSON_INDENT(2));
        if (s)
            puts(s);
        free(s);
    } else if (show) {
        print_event(out);
    } else {
        printf("%-36s  %-13s  %-28s  %-12s  %3s  %s\n", "ID", "STATUS", "TYPE", "TENANT", "ATT",
               "CREATED");
        size_t i;
        json_t *ev;
        json_array_foreach(out, i, ev)
        {
            printf("%-36s  %-13s  %-28s  %-12s  %3lld  %s\n", jstr(ev, "id"),
                   jstr(ev, "status"), jstr(ev, "type"), jstr(ev, "tenant"),
                   (long long)json_integer_value(json_object_get(ev, "attempts")),
                   jstr(ev, "created_at"));
        }
    }
    json_decref(out);
    return CTL_OK;
}
