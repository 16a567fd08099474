/*
 * cmd_replay.c — `evbusctl replay start|status|list|cancel`: creates and
 * follows replay jobs in PostgreSQL.  The jobs themselves run inside
 * evbusd (store_replay_worker); this file only parses arguments, calls the
 * store and formats output.  Times are RFC 3339 on the command line and in
 * output.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "store/store.h"

#define REPLAY_MAX_TYPES 64
#define REPLAY_WAIT_POLL_US (500 * 1000)

static void replay_usage(FILE *out)
{
    fputs("usage: evbusctl replay start --from T1 --to T2 [--type PATTERN]... [--tenant X]\n"
          "                             [--rate N[/s]] [--wait] [--json]\n"
          "       evbusctl replay status ID [--wait] [--json]\n"
          "       evbusctl replay list [--limit N] [--json]\n"
          "       evbusctl replay cancel ID [--json]\n"
          "\n"
          "Re-dispatches events still held by the stream whose ids fall in [T1, T2]\n"
          "(RFC 3339, e.g. 2024-05-01T10:00:00Z) to the subscribers of a running evbusd;\n"
          "with retention.archive: postgres, also those trimmed into the archive.\n"
          "Events in neither cannot be replayed (the job records a warning).\n"
          "With partitions above 1 a job replays each partition's window in turn,\n"
          "each in stream order; status shows every partition's progress.\n"
          "\n"
          "  start    create a pending job and print its id\n"
          "  status   show a job: status, progress, warning, error\n"
          "  list     newest jobs first (default 20)\n"
          "  cancel   stop a pending or running job\n"
          "\n"
          "  --type PATTERN  only these types (repeatable; * one segment, ** any)\n"
          "  --tenant X      only this tenant's events\n"
          "  --rate N        at most N events per second (\"500\" or \"500/s\")\n"
          "  --wait          follow the job until it ends (progress bar on a terminal);\n"
          "                  exit 0 when it completed, 1 when it failed or was cancelled\n"
          "  --json          machine-readable output\n"
          "  -h, --help      show this help\n"
          "\n"
          "Exit status: 0 done, 1 failed (PostgreSQL unreachable, job not found,\n"
          "job failed with --wait), 2 usage error.\n",
          out);
}

struct replay_args {
    const char *sub, *id, *from, *to, *tenant, *rate;
    const char *types[REPLAY_MAX_TYPES];
    size_t n_types;
    int limit;
    bool json, wait;
};

static int replay_parse(int argc, char **argv, struct replay_args *a, bool *help)
{
    static const struct option opts[] = {
        {"from", required_argument, NULL, 'f'}, {"to", required_argument, NULL, 't'},
        {"type", required_argument, NULL, 'y'}, {"tenant", required_argument, NULL, 'n'},
        {"rate", required_argument, NULL, 'r'}, {"limit", required_argument, NULL, 'l'},
        {"wait", no_argument, NULL, 'w'},       {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0}};
    memset(a, 0, sizeof *a);
    a->limit = 20;
    *help = false;
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        *help = argc >= 2;
        return argc >= 2 ? 0 : ctl_usage_error("replay", "missing subcommand");
    }
    a->sub = argv[1];
    /* getopt over "SUB ARGS...": element 0 plays the program name. */
    int sargc = argc - 1;
    char **sargv = argv + 1;
    optind = 0;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(sargc, sargv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'f': a->from = optarg; break;
        case 't': a->to = optarg; break;
        case 'n': a->tenant = optarg; break;
        case 'r': a->rate = optarg; break;
        case 'w': a->wait = true; break;
        case 'j': a->json = true; break;
        case 'h': *help = true; return 0;
        case 'y':
            if (a->n_types == REPLAY_MAX_TYPES)
                return ctl_usage_error("replay", "--type: at most %d patterns",
                                       REPLAY_MAX_TYPES);
            a->types[a->n_types++] = optarg;
            break;
        case 'l': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 1000)
                return ctl_usage_error("replay", "--limit: expected 1..1000, got '%s'", optarg);
            a->limit = (int)v;
            break;
        }
        default:
            return ctl_usage_error("replay", "%s: unknown option or missing value",
                                   sargv[optind - 1]);
        }
    }
    if (optind < sargc)
        a->id = sargv[optind++];
    if (optind < sargc)
        return ctl_usage_error("replay", "unexpected argument '%s'", sargv[optind]);
    return 0;
}

static PGconn *replay_connect(int *rc)
{
    const ctl_env_t *env = ctl_env();
    if (!env->postgres_url) {
        *rc = ctl_no_postgres("replay");
        return NULL;
    }
    char err[512];
    PGconn *c = store_connect(env->postgres_url, err, sizeof err);
    if (!c)
        *rc = ctl_fail("replay", "%s", err);
    return c;
}

static void print_json(const json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2));
    if (s)
        puts(s);
    free(s);
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "-";
}

static long long jint(const json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

/* A partitioned job's partitions, one line each, and their warnings. */
static void print_partitions(const json_t *parts)
{
    size_t done = 0, i;
    const json_t *p;
    json_array_foreach(parts, i, p)
        done += strcmp(jstr(p, "status"), "completed") == 0;
    printf("partitions: %zu (%zu completed)\n", json_array_size(parts), done);
    printf("  %-9s  %-9s  %10s  %10s  %10s  %10s  %s\n", "PARTITION", "STATUS", "PROCESSED",
           "SKIPPED", "FAILED", "TOTAL", "POSITION");
    json_array_foreach(parts, i, p)
        printf("  %-9lld  %-9s  %10lld  %10lld  %10lld  %10lld  %s\n", jint(p, "partition"),
               jstr(p, "status"), jint(p, "processed"), jint(p, "skipped"), jint(p, "failed"),
               jint(p, "total"), jstr(p, "position"));
    json_array_foreach(parts, i, p)
        if (json_is_string(json_object_get(p, "warning")))
            printf("  partition %lld warning: %s\n", jint(p, "partition"), jstr(p, "warning"));
}

static void print_job(const json_t *job)
{
    printf("id:        %s\nstatus:    %s\nfrom:      %s\nto:        %s\n", jstr(job, "id"),
           jstr(job, "status"), jstr(job, "from_ts"), jstr(job, "to_ts"));
    const json_t *types = json_object_get(job, "types");
    printf("types:     ");
    if (json_array_size(types) == 0)
        printf("(all)");
    for (size_t i = 0; i < json_array_size(types); i++)
        printf("%s%s", i ? ", " : "", json_string_value(json_array_get(types, i)));
    printf("\ntenant:    %s\n", jstr(job, "tenant"));
    if (json_is_integer(json_object_get(job, "rate")))
        printf("rate:      %lld/s\n", jint(job, "rate"));
    printf("progress:  %lld processed, %lld skipped, %lld failed of %lld\n",
           jint(job, "processed"), jint(job, "skipped"), jint(job, "failed"), jint(job, "total"));
    /* a job on a partitioned stream (migration 0011): its own counts are
     * the sums, and each partition has its own */
    if (json_is_array(json_object_get(job, "partitions")))
        print_partitions(json_object_get(job, "partitions"));
    printf("created:   %s\nstarted:   %s\nfinished:  %s\n", jstr(job, "created_at"),
           jstr(job, "started_at"), jstr(job, "finished_at"));
    /* the lease (migration 0005): where a new host would resume, and how
     * often hosts took the job */
    if (json_is_string(json_object_get(job, "position")))
        printf("position:  %s (last entry handled)\n", jstr(job, "position"));
    if (json_is_string(json_object_get(job, "heartbeat_at")))
        printf("heartbeat: %s\n", jstr(job, "heartbeat_at"));
    if (jint(job, "claims") > 1)
        printf("claims:    %lld (taken over after a host went away)\n", jint(job, "claims"));
    if (json_is_string(json_object_get(job, "warning")))
        printf("warning:   %s\n", jstr(job, "warning"));
    if (json_is_string(json_object_get(job, "error")))
        printf("error:     %s\n", jstr(job, "error"));
}

static bool job_finished(const json_t *job)
{
    const char *st = jstr(job, "status");
    return strcmp(st, "pending") != 0 && strcmp(st, "running") != 0;
}

/* Poll until the job ends; prints it; 0 completed, 1 otherwise. */
static int replay_follow(PGconn *c, const char *id, bool json)
{
    bool bar = !json && ctl_stderr_tty();
    for (;;) {
        json_t *job = NULL;
        char err[512];
        if (store_replay_get(c, id, &job, err, sizeof err) != 0)
            return ctl_fail("replay", "%s", err);
        if (!job)
            return ctl_fail("replay", "no replay job %s", id);
        if (bar) {
            uint64_t done = (uint64_t)(jint(job, "processed") + jint(job, "skipped") +
                                       jint(job, "failed"));
            ctl_progress(jstr(job, "status"), done, (uint64_t)jint(job, "total"));
        }
        if (job_finished(job)) {
            if (bar)
                ctl_progress_end();
            if (json)
                print_json(job);
            else
                print_job(job);
            int rc = strcmp(jstr(job, "status"), "completed") == 0 ? CTL_OK : CTL_FAIL;
            json_decref(job);
            return rc;
        }
        json_decref(job);
        usleep(REPLAY_WAIT_POLL_US);
    }
}

/* "500" or "500/s" -> 500; -1 when not a positive number. */
static int parse_rate(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || (*end && strcmp(end, "/s") != 0) || v < 1 || v > 1000000)
        return -1;
    return (int)v;
}

/* Checks start's flags before any connection, so usage errors exit 2 even
 * when PostgreSQL is down. */
static int replay_start_check(const struct replay_args *a, store_replay_request_t *req)
{
    if (!a->from || !a->to)
        return ctl_usage_error("replay", "start needs --from and --to");
    if (a->id)
        return ctl_usage_error("replay", "unexpected argument '%s'", a->id);
    *req = (store_replay_request_t){.types = a->types, .n_types = a->n_types,
                                    .tenant = a->tenant};
    if (store_parse_rfc3339(a->from, &req->from_ms) != 0)
        return ctl_usage_error("replay", "--from: '%s' is not an RFC 3339 time "
                                         "(e.g. 2024-05-01T10:00:00Z)", a->from);
    if (store_parse_rfc3339(a->to, &req->to_ms) != 0)
        return ctl_usage_error("replay", "--to: '%s' is not an RFC 3339 time "
                                         "(e.g. 2024-05-01T10:00:00Z)", a->to);
    if (a->rate && (req->rate = parse_rate(a->rate)) < 0)
        return ctl_usage_error("replay", "--rate: expected a positive number of events per "
                                         "second (\"500\" or \"500/s\"), got '%s'", a->rate);
    return 0;
}

static int replay_start(PGconn *c, const struct replay_args *a)
{
    store_replay_request_t req;
    int rc = replay_start_check(a, &req);
    if (rc != 0)
        return rc;
    char who[256], host[128] = "";
    const char *user = getenv("USER");
    gethostname(host, sizeof host - 1);
    snprintf(who, sizeof who, "evbusctl %s@%s", user ? user : "?", host);
    req.requested_by = who;
    const ctl_env_t *env = ctl_env();
    req.partitions = env->partitions; /* one progress record per partition */
    uint32_t max_range = env->cfg ? env->cfg->store.replay_max_range_s : 31u * 86400u;
    char id[64], err[512];
    rc = store_replay_create(c, &req, max_range, id, sizeof id, err, sizeof err);
    if (rc == STORE_EINVAL) {
        /* The store names its fields; show them as the flags the user typed. */
        if (strncmp(err, "types[", 6) == 0 && strstr(err, "]: "))
            return ctl_usage_error("replay", "--type: %s", strstr(err, "]: ") + 3);
        return ctl_usage_error("replay", "--%s", err);
    }
    if (rc != 0)
        return ctl_fail("replay", "%s", err);
    if (a->wait) {
        if (!a->json)
            fprintf(stderr, "replay job %s created; waiting\n", id);
        return replay_follow(c, id, a->json);
    }
    if (a->json) {
        json_t *o = json_pack("{s:s, s:s}", "id", id, "status", "pending");
        print_json(o);
        json_decref(o);
    } else {
        puts(id);
    }
    return CTL_OK;
}

static int replay_status(PGconn *c, const struct replay_args *a)
{
    if (!a->id)
        return ctl_usage_error("replay", "status needs a job ID");
    if (a->wait)
        return replay_follow(c, a->id, a->json);
    json_t *job = NULL;
    char err[512];
    if (store_replay_get(c, a->id, &job, err, sizeof err) != 0)
        return ctl_fail("replay", "%s", err);
    if (!job)
        return ctl_fail("replay", "no replay job %s", a->id);
    if (a->json)
        print_json(job);
    else if (!job_finished(job) && ctl_stderr_tty()) {
        print_job(job);
        ctl_progress(jstr(job, "status"),
                     (uint64_t)(jint(job, "processed") + jint(job, "skipped") +
                                jint(job, "failed")),
                     (uint64_t)jint(job, "total"));
        ctl_progress_end();
    } else
        print_job(job);
    json_decref(job);
    return CTL_OK;
}

static int replay_list(PGconn *c, const struct replay_args *a)
{
    if (a->id)
        return ctl_usage_error("replay", "unexpected argument '%s'", a->id);
    json_t *jobs = NULL;
    char err[512];
    if (store_replay_list(c, a->limit, &jobs, err, sizeof err) != 0)
        return ctl_fail("replay", "%s", err);
    if (a->json) {
        print_json(jobs);
    } else {
        printf("%-36s  %-9s  %-25s  %-25s  %s\n", "ID", "STATUS", "FROM", "TO",
               "DONE/TOTAL");
        size_t i;
        json_t *job;
        json_array_foreach(jobs, i, job)
        {
            printf("%-36s  %-9s  %-25s  %-25s  %lld/%lld\n", jstr(job, "id"),
                   jstr(job, "status"), jstr(job, "from_ts"), jstr(job, "to_ts"),
                   jint(job, "processed") + jint(job, "skipped") + jint(job, "failed"),
                   jint(job, "total"));
        }
    }
    json_decref(jobs);
    return CTL_OK;
}

static int replay_cancel(PGconn *c, const struct replay_args *a)
{
    if (!a->id)
        return ctl_usage_error("replay", "cancel needs a job ID");
    char err[512];
    if (store_replay_cancel(c, a->id, err, sizeof err) != 0)
        return ctl_fail("replay", "%s", err);
    if (a->json) {
        json_t *o = json_pack("{s:s, s:s}", "id", a->id, "status", "cancelled");
        print_json(o);
        json_decref(o);
    } else {
        printf("cancelled %s\n", a->id);
    }
    return CTL_OK;
}

int cmd_replay(int argc, char **argv)
{
    struct replay_args a;
    bool help;
    int rc = replay_parse(argc, argv, &a, &help);
    if (rc != 0)
        return rc;
    if (help) {
        replay_usage(stdout);
        return CTL_OK;
    }
    int (*fn)(PGconn *, const struct replay_args *) = NULL;
    if (strcmp(a.sub, "start") == 0)
        fn = replay_start;
    else if (strcmp(a.sub, "status") == 0)
        fn = replay_status;
    else if (strcmp(a.sub, "list") == 0)
        fn = replay_list;
    else if (strcmp(a.sub, "cancel") == 0)
        fn = replay_cancel;
    else
        return ctl_usage_error("replay", "unknown subcommand '%s'", a.sub);
    store_replay_request_t req;
    if (fn == replay_start && (rc = replay_start_check(&a, &req)) != 0)
        return rc;
    PGconn *c = replay_connect(&rc);
    if (!c)
        return rc;
    rc = fn(c, &a);
    PQfinish(c);
    return rc;
}
