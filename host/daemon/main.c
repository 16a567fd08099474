/*
 * evbusd — the host daemon: builds generation 1 from conf.d, runs the
 * engine, and is the control thread for signals and reloads.
 *
 * Signals are blocked in every thread and taken here with sigtimedwait(),
 * so a handler never runs in the middle of anything.  Because the main
 * thread reloads synchronously while SIGHUP stays blocked, a SIGHUP that
 * arrives during a reload stays pending and schedules exactly one more
 * reload afterwards: signals are coalesced, never lost.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin/admin.h"
#include "client/evbus_client.h"
#include "config/settings.h"
#include "core/core_settings.h"
#include "core/crash.h"
#include "core/engine.h"
#include "core/event.h"
#include "core/generation.h"
#include "core/jarena.h"
#include "daemon/notify.h"
#include "daemon/service.h"
#include "evbus_build_config.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/metrics.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: evbusd [-c DIR] [--check-config] [--exit-idle MS] [--pidfile PATH]\n"
            "\n"
            "Carries CloudEvents between plugins over a Redis Streams consumer group.\n"
            "\n"
            "  -c, --config DIR     configuration directory: DIR/*.yaml in lexical order\n"
            "                       (default %s)\n"
            "      --check-config   validate everything (plugins loaded and initialised as\n"
            "                       a check, schemas compiled) and print OK or the errors;\n"
            "                       exit 0 or 2\n"
            "      --diff-running   with --check-config: also compare every setting with\n"
            "                       what the running evbusd has in force (STATE_DIR/%s)\n"
            "                       and list the changes a reload would leave for a restart\n"
            "      --exit-idle MS   exit cleanly once nothing arrived for MS milliseconds\n"
            "                       and nothing is in flight or scheduled for retry\n"
            "      --pidfile PATH   write the pid there (default STATE_DIR/evbusd.pid)\n"
            "  -v, --version        print the version and the plugin ABI version\n"
            "  -h, --help           this help\n"
            "\n"
            "Signals: SIGHUP reloads conf.d and plugins without losing an event;\n"
            "SIGTERM/SIGINT stop reading, finish and ack the work in flight, then exit.\n"
            "Exit status: 0 clean stop, 1 runtime failure or shutdown timeout,\n"
            "2 configuration or usage error.\n",
            EVBUS_CONF_DIR, EVBUS_RUNNING_FILE);
}

static char *join_errors(const cfg_errors_t *errs)
{
    size_t len = 1;
    for (size_t i = 0; i < errs->count; i++)
        len += strlen(errs->msgs[i]) + 1;
    char *s = calloc(1, len);
    for (size_t i = 0; i < errs->count; i++) {
        strcat(s, errs->msgs[i]);
        if (i + 1 < errs->count)
            strcat(s, "\n");
    }
    return s;
}

/*
 * What this daemon runs, for tools on the same machine: the effective value
 * of every setting, the conf.d it came from (absolute) and the last
 * reload's outcome, rewritten (temp file + rename) at start and after every
 * reload attempt.  `evbusd --check-config --diff-running`, `evbusctl reload`
 * and, for a broken conf.d of the same directory, every evbusctl command
 * read it.
 */
static void write_running(engine_t *e)
{
    generation_t *g = engine_current(e);
    char path[1100], tmp[1200];
    snprintf(path, sizeof path, "%s/" EVBUS_RUNNING_FILE, g->cfg->daemon.state_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    json_t *h = engine_health(e);
    json_t *doc = json_pack("{s:I, s:I, s:s, s:O, s:O, s:o}", "pid", (json_int_t)getpid(),
                            "generation", (json_int_t)g->number, "conf_dir", g->cfg->dir,
                            "reload", json_object_get(h, "reload"), "config",
                            json_object_get(h, "config"), "settings",
                            config_settings_json(g->cfg, &g->pending_restart));
    json_decref(h);
    generation_unref(g);
    if (!doc || json_dump_file(doc, tmp, JSON_COMPACT) != 0 || rename(tmp, path) != 0)
        log_warn("evbusd", "cannot write %s: %s", path, strerror(errno));
    json_decref(doc);
}

/* log.format of the serving generation (log_level is set by the swap). */
static void apply_log_format(engine_t *e)
{
    generation_t *g = engine_current(e);
    int fmt = log_format_parse(g->cfg->daemon.log_format);
    log_set_format(fmt >= 0 ? fmt : LOG_FORMAT_TEXT);
    generation_unref(g);
}

/* Build to the side, swap whole, drain the old generation with a bound. */
static void reload(engine_t *e, const char *conf_dir, int64_t signalled_ms)
{
    generation_t *cur = engine_current(e);
    cfg_errors_t errs = {0};
    generation_t *next = NULL;
    log_info("reload", "reloading %s (generation %llu serving)", conf_dir,
             (unsigned long long)cur->number);
    if (generation_build(conf_dir, cur, cur->number + 1, false, &next, &errs) != 0) {
        for (size_t i = 0; i < errs.count; i++)
            log_error("reload", "%s", errs.msgs[i]);
        char *all = join_errors(&errs);
        METRIC_INC(reloads_failed);
        engine_note_reload(e, false, all);
        log_error("reload", "reload failed; generation %llu keeps serving",
                  (unsigned long long)cur->number);
        free(all);
        cfg_errors_free(&errs);
        generation_unref(cur);
        return;
    }
    cfg_errors_free(&errs);
    char err[512];
    uint64_t number = next->number;
    /* the new generation's bound: reload.drain_timeout_ms is live */
    uint32_t drain_ms = next->cfg->daemon.reload_drain_timeout_ms;
    size_t pending = next->pending_restart.count, live = next->live_changes;
    uint32_t wait_n = next->cfg->core.redis_wait_replicas,
             wait_ms = next->cfg->core.redis_wait_timeout_ms;
    if (engine_swap(e, next, err, sizeof err) != 0) {
        log_error("reload", "%s; generation %llu keeps serving", err,
                  (unsigned long long)cur->number);
        generation_destroy(next);
        METRIC_INC(reloads_failed);
        engine_note_reload(e, false, err);
        generation_unref(cur);
        return;
    }
    engine_note_reload(e, true, NULL);
    event_host_api_set_wait(wait_n, wait_ms); /* redis.wait_replicas is live */
    apply_log_format(e);
    if (pending) {
        METRIC_INC(reloads_partial);
        log_warn("reload", "generation %llu live %lld ms after the request, partial: %zu "
                 "setting%s changed, %zu wait%s for a restart (listed above)",
                 (unsigned long long)number, (long long)(clock_mono_ms() - signalled_ms), live,
                 live == 1 ? "" : "s", pending, pending == 1 ? "s" : "");
    } else {
        METRIC_INC(reloads_ok);
        log_info("reload", "generation %llu live %lld ms after the request (%zu setting%s "
                 "changed)", (unsigned long long)number,
                 (long long)(clock_mono_ms() - signalled_ms), live, live == 1 ? "" : "s");
    }
    if (!engine_wait_drained(cur, (int)drain_ms))
        log_warn("reload", "generation %llu still has events in flight after %u ms; its "
                 "unacked entries stay pending and it is finalised when they finish",
                 (unsigned long long)cur->number, drain_ms);
    generation_unref(cur);
    generation_reap();
}

static const char *running_value(void *arg, const char *key)
{
    json_t *settings = arg;
    size_t i;
    json_t *row;
    json_array_foreach(settings, i, row)
    {
        if (!strcmp(json_string_value(json_object_get(row, "key")) ?: "", key))
            return json_string_value(json_object_get(row, "value"));
    }
    return NULL;
}

/*
 * --check-config --diff-running: which changed settings a reload would
 * keep at their running value.  0 (the lines, if any, on stdout), or 1
 * when the running daemon's record cannot be read.
 */
static int print_diff_running(const evbus_config_t *cfg)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/" EVBUS_RUNNING_FILE, cfg->daemon.state_dir);
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    json_t *settings = doc ? json_object_get(doc, "settings") : NULL;
    if (!json_is_array(settings)) {
        fprintf(stderr, "evbusd: --diff-running: cannot read %s: %s (is evbusd running with "
                "this state_dir?)\n", path, doc ? "no settings in it" : jerr.text);
        json_decref(doc);
        return 1;
    }
    cfg_pending_list_t pend = {0};
    size_t live = config_diff_text(cfg, running_value, settings, &pend);
    for (size_t i = 0; i < pend.count; i++)
        printf("%s: %s: needs a restart: running %s, files say %s\n", pend.items[i].pos,
               pend.items[i].key, pend.items[i].old, pend.items[i].now);
    printf("%zu live change%s would apply on reload; %zu change%s would wait for a restart "
           "(evbusd pid %lld, generation %lld)\n",
           live, live == 1 ? "" : "s", pend.count, pend.count == 1 ? "" : "s",
           (long long)json_integer_value(json_object_get(doc, "pid")),
           (long long)json_integer_value(json_object_get(doc, "generation")));
    cfg_pending_free(&pend);
    json_decref(doc);
    return 0;
}

/* A reload as the service manager sees it: RELOADING=1 with the time of
 * the request, READY=1 once the outcome (any outcome) is known. */
static void reload_notified(engine_t *e, const char *conf_dir, const notify_t *nt)
{
    notify_send(nt, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading %s",
                (unsigned long long)notify_monotonic_usec(), conf_dir);
    reload(e, conf_dir, clock_mono_ms());
    write_running(e);
    if (!notify_enabled(nt))
        return;
    service_sample_t s;
    char status[256];
    service_sample(e, &s);
    service_status_text(&s, status, sizeof status);
    notify_send(nt, "READY=1\nSTATUS=%s", status);
}

static void write_pidfile(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        log_warn("evbusd", "cannot write pidfile %s: %s", path, strerror(errno));
        return;
    }
    fprintf(f, "%ld\n", (long)getpid());
    fclose(f);
}

/* A setting's position, for messages: "file:line:column", "env X" or
 * "default". */
static const char *setting_at(const evbus_config_t *cfg, const char *key, char *out, size_t len)
{
    size_t idx = 0;
    cfg_setting_find(key, &idx);
    return cfg_source_text(cfg, idx, out, len);
}

/* Whether `key` was given (in a file or the environment), not defaulted. */
static bool setting_given(const evbus_config_t *cfg, const char *key)
{
    size_t idx = 0;
    return cfg_setting_find(key, &idx) && cfg->sources[idx].kind != CFG_SRC_DEFAULT;
}

/* What the configuration combines that evbusd refuses by design
 * (docs/scale-out.md, Status: a cluster with one partition, whose one
 * stream would live on one master; dlq.stream with partitions, whose dead
 * letters live beside each partition's keys), as one message with the
 * settings' positions; "" when nothing. */
static void refused_combination(const evbus_config_t *cfg, char *out, size_t len)
{
    char at[600], pat[600];
    out[0] = '\0';
    if (core_redis_cluster(cfg) && cfg->core.partitions <= 1) {
        snprintf(out, len,
                 "redis.cluster (%s) with partitions: %u (%s): on a Redis Cluster the stream "
                 "is spread over the masters by its partitions; set partitions: 2 or more (a "
                 "few times the number of masters) — see docs/scale-out.md",
                 setting_at(cfg, "redis.cluster", at, sizeof at), cfg->core.partitions,
                 setting_at(cfg, "partitions", pat, sizeof pat));
        return;
    }
    if (cfg->core.partitions <= 1)
        return;
    setting_at(cfg, "partitions", pat, sizeof pat);
    if (setting_given(cfg, "dlq.stream"))
        snprintf(out, len,
                 "dlq.stream (%s) with partitions: %u (%s): each partition has its own "
                 "dead-letter stream {<stream>:<p>}:dlq; remove dlq.stream — see "
                 "docs/scale-out.md",
                 setting_at(cfg, "dlq.stream", at, sizeof at), cfg->core.partitions, pat);
}

/*
 * The partition count against the one recorded in Redis, when Redis can be
 * reached now: 0 agree (or not reachable: *unreached set, msg says why),
 * 1 they differ (msg is the refusal).  `record`: write the count of a new
 * stream (at start; --check-config changes nothing).
 */
static int recorded_partitions(const evbus_config_t *cfg, bool record, bool *unreached,
                               char *msg, size_t len)
{
    *unreached = false;
    if (core_redis_cluster(cfg))
        return 0; /* compared by the reader when it reaches the cluster */
    char err[512];
    redisContext *c = evbus_redis_connect(cfg->core.redis_url,
                                          (int)cfg->core.redis_connect_timeout_ms,
                                          (int)cfg->core.redis_command_timeout_ms, err, sizeof err);
    if (!c) {
        *unreached = true;
        snprintf(msg, len, "%s", err);
        return 0;
    }
    int rc = core_partitions_check(cfg, c, record, msg, len);
    redisFree(c);
    if (rc < 0) {
        *unreached = true;
        return 0;
    }
    return rc;
}

int main(int argc, char **argv)
{
    const char *conf_dir = getenv("EVBUS_CONF_DIR") ? getenv("EVBUS_CONF_DIR") : EVBUS_CONF_DIR;
    const char *pidfile = NULL;
    bool check = false, diff_running = false;
    long exit_idle = 0;
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'k'},
        {"diff-running", no_argument, NULL, 'd'},
        {"exit-idle", required_argument, NULL, 'x'}, {"pidfile", required_argument, NULL, 'p'},
        {"version", no_argument, NULL, 'v'},      {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': conf_dir = optarg; break;
        case 'k': check = true; break;
        case 'd': diff_running = true; break;
        case 'p': pidfile = optarg; break;
        case 'x': {
            char *end;
            exit_idle = strtol(optarg, &end, 10);
            if (*end || exit_idle <= 0 || exit_idle > 86400000) {
                fprintf(stderr, "evbusd: --exit-idle: expected milliseconds (1..86400000), got "
                                "'%s'\n", optarg);
                return 2;
            }
            break;
        }
        case 'v':
            printf("evbusd %s (plugin ABI %u.%u)\n", EVBUS_VERSION, EVBUS_ABI_VERSION,
                   EVBUS_ABI_MINOR);
            return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (diff_running && !check) {
        fprintf(stderr, "evbusd: --diff-running needs --check-config\n");
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "evbusd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    /* jansson's allocator is process-wide: switch it before anything
     * (plugins included) allocates, and before any thread exists. */
    jarena_install();

    /* before any thread: it unsets NOTIFY_SOCKET and WATCHDOG_* */
    notify_t nt;
    char nerr[256];
    bool notify_broken = notify_open(&nt, nerr, sizeof nerr) != 0;

    /* Block the signals we take synchronously before any thread exists. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    cfg_errors_t errs = {0};
    generation_t *gen = NULL;
    if (generation_build(conf_dir, NULL, 1, check, &gen, &errs) != 0) {
        for (size_t i = 0; i < errs.count; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        fprintf(stderr, "evbusd: %zu configuration error%s in %s\n", errs.count,
                errs.count == 1 ? "" : "s", conf_dir);
        cfg_errors_free(&errs);
        return 2;
    }
    cfg_errors_free(&errs);
    /* redis.cluster with one partition, and dlq.stream with several, are
     * checked like any setting but refused together: refuse to start
     * rather than run a layout the partitions' keys cannot have */
    char refused_msg[1024] = "";
    refused_combination(gen->cfg, refused_msg, sizeof refused_msg);
    /* a partition count that differs from the stream's recorded one would
     * read and write the wrong keys: refused like a configuration error */
    char parts_msg[2048] = "";
    bool unreached = false;
    if (recorded_partitions(gen->cfg, !check && !refused_msg[0], &unreached, parts_msg,
                            sizeof parts_msg) != 0) {
        fprintf(stderr, "evbusd: %s\n", parts_msg);
        generation_destroy(gen);
        return 2;
    }
    if (check) {
        int rc = diff_running ? print_diff_running(gen->cfg) : 0;
        if (rc == 0)
            printf("OK\n");
        if (unreached)
            fprintf(stderr, "evbusd: note: the partition count was not compared with the one "
                            "recorded in Redis (%s); evbusd compares it when it starts\n",
                    parts_msg);
        if (refused_msg[0])
            fprintf(stderr, "evbusd: note: valid, but evbusd will not start with it: %s\n",
                    refused_msg);
        generation_destroy(gen);
        return rc;
    }
    if (refused_msg[0]) {
        fprintf(stderr, "evbusd: %s\n", refused_msg);
        generation_destroy(gen);
        return 2;
    }
    const evbus_config_t *cfg = gen->cfg;
    int lvl = config_log_level(cfg->daemon.log_level);
    log_set_level(lvl >= 0 ? lvl : LOG_INFO);
    int lfmt = log_format_parse(cfg->daemon.log_format);
    log_set_format(lfmt >= 0 ? lfmt : LOG_FORMAT_TEXT);
    if (notify_broken)
        log_warn("evbusd", "%s; running without service manager notifications", nerr);
    /* on a cluster the host API publishes through its cluster client */
    event_host_api_configure(core_redis_cluster(cfg) ? NULL : cfg->core.redis_url,
                             core_redis_cluster(cfg), cfg->core.stream, cfg->core.partitions);
    event_host_api_set_wait(cfg->core.redis_wait_replicas, cfg->core.redis_wait_timeout_ms);
    /* only restart-class settings may be taken from the first generation
     * here; everything live is read from the serving generation.  The
     * build made state_dir (and checked that it is evbusd's alone). */
    /* before any worker: a fatal signal names what was running */
    crash_init(cfg->daemon.state_dir);

    if (cfg->store.postgres_url && cfg->store.migrate_on_start) {
        char err[1024];
        PGconn *pg = store_connect(cfg->store.postgres_url, err, sizeof err);
        int mrc = pg ? store_migrate(pg, 0, NULL, NULL, err, sizeof err) : -1;
        if (pg)
            PQfinish(pg);
        if (mrc != 0) {
            log_error("evbusd", "migrations failed: %s", err);
            generation_destroy(gen);
            return 1;
        }
        log_info("evbusd", "database schema is up to date");
    }

    char err[512];
    engine_opts_t eo = {.exit_idle_ms = (int)exit_idle};
    char *admin_listen = cfg->admin.listen ? strdup(cfg->admin.listen) : NULL;
    char pidpath[1024];
    char runpath[1100];
    snprintf(runpath, sizeof runpath, "%s/" EVBUS_RUNNING_FILE, cfg->daemon.state_dir);
    snprintf(pidpath, sizeof pidpath, "%s", pidfile ? pidfile : "");
    if (!pidfile)
        snprintf(pidpath, sizeof pidpath, "%s/evbusd.pid", cfg->daemon.state_dir);
    engine_t *e = engine_new(gen, &eo, err, sizeof err);
    if (!e) {
        log_error("evbusd", "%s", err);
        notify_send(&nt, "STATUS=failed to start: %s", err);
        return 1;
    }
    if (engine_start(e, err, sizeof err) != 0) {
        log_error("evbusd", "%s", err);
        notify_send(&nt, "STATUS=failed to start: %s", err);
        return 1;
    }
    atomic_int reload_requests = 0;
    admin_t *admin = NULL;
    if (admin_listen) {
        admin = admin_start(cfg, e, &reload_requests, err, sizeof err);
        if (!admin)
            log_error("admin", "%s; continuing without the HTTP endpoint", err);
        else
            log_info("admin", "listening on %s (port %d)", admin_listen, admin_port(admin));
    }
    write_pidfile(pidpath);
    write_running(e);
    log_info("evbusd", "evbusd %s started (pid %ld, config %s)", EVBUS_VERSION, (long)getpid(),
             conf_dir);
    /* the first generation is live: readiness, then keep-alives */
    if (notify_enabled(&nt)) {
        service_sample_t s0;
        char status[256];
        service_sample(e, &s0);
        service_status_text(&s0, status, sizeof status);
        notify_send(&nt, "READY=1\nSTATUS=%s", status);
        if (nt.watchdog_usec)
            log_info("service", "systemd watchdog every %llu ms",
                     (unsigned long long)(nt.watchdog_usec / 1000));
    }
    service_t *svc = service_start(&nt, e);

    int stop_signal = 0;
    while (!stop_signal) {
        struct timespec tick = {0, 100 * 1000000L};
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig == SIGHUP) {
            reload_notified(e, conf_dir, &nt);
        } else if (sig == SIGTERM || sig == SIGINT) {
            stop_signal = sig;
        }
        if (atomic_exchange(&reload_requests, 0) > 0)
            reload_notified(e, conf_dir, &nt);
        if (engine_wants_exit(e))
            break;
        generation_reap();
    }
    generation_t *last = engine_current(e);
    uint32_t shutdown_ms = last->cfg->daemon.shutdown_timeout_ms; /* live */
    generation_unref(last);
    notify_send(&nt, "STOPPING=1\nSTATUS=stopping: finishing in-flight work (up to %u ms)",
                shutdown_ms);
    if (stop_signal)
        log_info("evbusd", "%s received: stopping (finishing in-flight work, up to %u ms)",
                 stop_signal == SIGTERM ? "SIGTERM" : "SIGINT", shutdown_ms);
    admin_stop(admin);
    int rc = engine_stop(e, (int)shutdown_ms);
    service_stop(svc);
    if (rc != 0) {
        log_error("evbusd", "shutdown timeout (%u ms) hit: unfinished entries stay pending and "
                  "are redelivered on restart", shutdown_ms);
        unlink(pidpath);
        unlink(runpath);
        free(admin_listen);
        _exit(1);
    }
    bool failed = engine_failed(e);
    bool refused = engine_partitions_refused(e);
    engine_free(e);
    notify_close(&nt);
    generation_reap();
    unlink(pidpath);
    unlink(runpath);
    free(admin_listen);
    if (refused)
        return 2; /* the reason is logged: a configuration error found late */
    if (failed) {
        log_error("evbusd", "stopped: the Redis circuit opened and circuit.stop is set");
        return 1;
    }
    log_info("evbusd", "stopped cleanly");
    return 0;
}
