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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin/admin.h"
#include "core/engine.h"
#include "core/event.h"
#include "core/generation.h"
#include "core/jarena.h"
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
            "      --check-config   validate everything (plugins loaded and initialised,\n"
            "                       schemas compiled) and print OK or the errors; exit 0 or 2\n"
            "      --exit-idle MS   exit cleanly once nothing arrived for MS milliseconds\n"
            "                       and nothing is in flight or scheduled for retry\n"
            "      --pidfile PATH   write the pid there (default STATE_DIR/evbusd.pid)\n"
            "  -v, --version        print the version\n"
            "  -h, --help           this help\n"
            "\n"
            "Signals: SIGHUP reloads conf.d and plugins without losing an event;\n"
            "SIGTERM/SIGINT stop reading, finish and ack the work in flight, then exit.\n"
            "Exit status: 0 clean stop, 1 runtime failure or shutdown timeout,\n"
            "2 configuration or usage error.\n",
            EVBUS_CONF_DIR);
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

/* Build to the side, swap whole, drain the old generation with a bound. */
static void reload(engine_t *e, const char *conf_dir, int64_t signalled_ms)
{
    generation_t *cur = engine_current(e);
    cfg_errors_t errs = {0};
    generation_t *next = NULL;
    uint32_t drain_ms = cur->cfg->reload_drain_timeout_ms;
    log_info("reload", "reloading %s (generation %llu serving)", conf_dir,
             (unsigned long long)cur->number);
    if (generation_build(conf_dir, cur, cur->number + 1, &next, &errs) != 0) {
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
    if (engine_swap(e, next, err, sizeof err) != 0) {
        log_error("reload", "%s; generation %llu keeps serving", err,
                  (unsigned long long)cur->number);
        generation_destroy(next);
        METRIC_INC(reloads_failed);
        engine_note_reload(e, false, err);
        generation_unref(cur);
        return;
    }
    METRIC_INC(reloads_ok);
    engine_note_reload(e, true, NULL);
    log_info("reload", "generation %llu live %lld ms after the request",
             (unsigned long long)number, (long long)(clock_mono_ms() - signalled_ms));
    if (!engine_wait_drained(cur, (int)drain_ms))
        log_warn("reload", "generation %llu still has events in flight after %u ms; its "
                 "unacked entries stay pending and it is finalised when they finish",
                 (unsigned long long)cur->number, drain_ms);
    generation_unref(cur);
    generation_reap();
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

static void mkdir_p(const char *dir)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    mkdir(tmp, 0755);
}

int main(int argc, char **argv)
{
    const char *conf_dir = getenv("EVBUS_CONF_DIR") ? getenv("EVBUS_CONF_DIR") : EVBUS_CONF_DIR;
    const char *pidfile = NULL;
    bool check = false;
    long exit_idle = 0;
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'k'},
        {"exit-idle", required_argument, NULL, 'x'}, {"pidfile", required_argument, NULL, 'p'},
        {"version", no_argument, NULL, 'v'},      {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': conf_dir = optarg; break;
        case 'k': check = true; break;
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
        case 'v': printf("evbusd %s (plugin ABI %u)\n", EVBUS_VERSION, EVBUS_ABI_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "evbusd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    /* jansson's allocator is process-wide: switch it before anything
     * (plugins included) allocates, and before any thread exists. */
    jarena_install();

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
    if (generation_build(conf_dir, NULL, 1, &gen, &errs) != 0) {
        for (size_t i = 0; i < errs.count; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        fprintf(stderr, "evbusd: %zu configuration error%s in %s\n", errs.count,
                errs.count == 1 ? "" : "s", conf_dir);
        cfg_errors_free(&errs);
        return 2;
    }
    cfg_errors_free(&errs);
    if (check) {
        printf("OK\n");
        generation_destroy(gen);
        return 0;
    }
    const evbus_config_t *cfg = gen->cfg;
    int lvl = config_log_level(cfg->log_level);
    log_set_level(lvl >= 0 ? lvl : LOG_INFO);
    event_host_api_configure(cfg->redis_url, cfg->stream, cfg->publish_maxlen);
    mkdir_p(cfg->state_dir);

    if (cfg->postgres_url && cfg->migrate_on_start) {
        char err[1024];
        PGconn *pg = store_connect(cfg->postgres_url, err, sizeof err);
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
    uint32_t shutdown_ms = cfg->shutdown_timeout_ms;
    char *admin_listen = cfg->admin_listen ? strdup(cfg->admin_listen) : NULL;
    char pidpath[1024];
    snprintf(pidpath, sizeof pidpath, "%s", pidfile ? pidfile : "");
    if (!pidfile)
        snprintf(pidpath, sizeof pidpath, "%s/evbusd.pid", cfg->state_dir);
    engine_t *e = engine_new(gen, &eo, err, sizeof err);
    if (!e) {
        log_error("evbusd", "%s", err);
        return 1;
    }
    if (engine_start(e, err, sizeof err) != 0) {
        log_error("evbusd", "%s", err);
        return 1;
    }
    atomic_int reload_requests = 0;
    admin_t *admin = NULL;
    if (admin_listen) {
        admin = admin_start(admin_listen, e, &reload_requests, err, sizeof err);
        if (!admin)
            log_error("admin", "%s; continuing without the HTTP endpoint", err);
        else
            log_info("admin", "listening on %s (port %d)", admin_listen, admin_port(admin));
    }
    write_pidfile(pidpath);
    log_info("evbusd", "evbusd %s started (pid %ld, config %s)", EVBUS_VERSION, (long)getpid(),
             conf_dir);

    int stop_signal = 0;
    while (!stop_signal) {
        struct timespec tick = {0, 100 * 1000000L};
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig == SIGHUP) {
            reload(e, conf_dir, clock_mono_ms());
        } else if (sig == SIGTERM || sig == SIGINT) {
            stop_signal = sig;
            log_info("evbusd", "%s received: stopping (finishing in-flight work, up to %u ms)",
                     sig == SIGTERM ? "SIGTERM" : "SIGINT", shutdown_ms);
        }
        if (atomic_exchange(&reload_requests, 0) > 0)
            reload(e, conf_dir, clock_mono_ms());
        if (engine_wants_exit(e))
            break;
        generation_reap();
    }
    admin_stop(admin);
    int rc = engine_stop(e, (int)shutdown_ms);
    if (rc != 0) {
        log_error("evbusd", "shutdown timeout (%u ms) hit: unfinished entries stay pending and "
                  "are redelivered on restart", shutdown_ms);
        unlink(pidpath);
        free(admin_listen);
        _exit(1);
    }
    bool failed = engine_failed(e);
    engine_free(e);
    generation_reap();
    unlink(pidpath);
    free(admin_listen);
    if (failed) {
        log_error("evbusd", "stopped: the Redis circuit opened and circuit.stop is set");
        return 1;
    }
    log_info("evbusd", "stopped cleanly");
    return 0;
}
