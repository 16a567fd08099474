/* ctl — shared plumbing of evbusctl's subcommands; see ctl.h. */
#include "ctl/ctl.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/settings.h"
#include "core/core_settings.h"
#include "evbus_build_config.h"

static ctl_env_t env;
static bool loaded;
static cfg_errors_t conf_errs; /* of env.conf_dir, kept for ctl_env_valid() */

static char *dup_or(const char *a, const char *b) { return a ? strdup(a) : b ? strdup(b) : NULL; }

/* getenv, with an empty value counting as unset */
static const char *env_var(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static bool is_dir(const char *p)
{
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *ctl_conf_dir(const char **origin)
{
    const char *dir = NULL;
    *origin = NULL;
    if (ctl_opt_conf_dir) {
        dir = ctl_opt_conf_dir;
        *origin = "from -c";
    } else if (env_var("EVBUS_CONF_DIR")) {
        dir = env_var("EVBUS_CONF_DIR");
        *origin = "from EVBUS_CONF_DIR";
    } else if (is_dir(EVBUS_CONF_DIR)) {
        dir = EVBUS_CONF_DIR;
        *origin = "the installed default";
    }
    return dir;
}

/* The settings evbusctl reads, each with the global option that overrides
 * it (a row the command line overrides does not matter). */
static const struct {
    const char *key;
    const char *const *flag;
} ctl_rows[] = {
    {"redis.url", &ctl_opt_redis},
    {"redis.cluster", &ctl_opt_redis_cluster},
    {"postgres.url", &ctl_opt_postgres},
    {"postgres.metadata.enabled", NULL},
    {"stream", &ctl_opt_stream},
    {"dlq.stream", &ctl_opt_stream},
    {"group", NULL},
    {"state_dir", NULL},
    {"admin.listen", NULL},
    {"retention.max_entries", NULL},
    {"retention.max_bytes", NULL},
    {"retention.on_full", NULL},
    {"retention.block_timeout", NULL},
    {"replay.max_range_s", NULL},
};
#define N_CTL_ROWS (sizeof ctl_rows / sizeof ctl_rows[0])

/* The running evbusd's record (pid, generation, settings) when it runs
 * with this very directory; NULL otherwise. */
static json_t *running_record(const evbus_config_t *cfg, const char *path)
{
    json_t *doc = json_load_file(path, 0, NULL);
    const char *dir = json_string_value(json_object_get(doc, "conf_dir"));
    char *real = dir ? realpath(dir, NULL) : NULL;
    bool same = real && strcmp(real, cfg->dir) == 0;
    free(real);
    if (!same || !json_is_array(json_object_get(doc, "settings"))) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static const char *recorded_value(const json_t *doc, const char *key)
{
    size_t i;
    const json_t *row;
    json_array_foreach(json_object_get(doc, "settings"), i, row)
    {
        const char *k = json_string_value(json_object_get(row, "key"));
        if (k && !strcmp(k, key))
            return json_string_value(json_object_get(row, "value"));
    }
    return NULL;
}

/* "a, b, c and N more" from names[0..n) */
static void name_list(const char *const *names, size_t n, char *out, size_t len)
{
    size_t shown = n < 4 ? n : 3, used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < shown && used < len; i++)
        used += (size_t)snprintf(out + used, len - used, "%s%s",
                                 i == 0 ? "" : i + 1 == n ? " and " : ", ", names[i]);
    if (shown < n && used < len)
        snprintf(out + used, len - used, " and %zu more", n - shown);
}

/*
 * The doubtful rows evbusctl reads take the value the running evbusd
 * records for the same directory (what it serves with: the file's earlier
 * version, before the bad deploy); without such a record they keep what
 * earlier files or the defaults give.  Defaults computed from a row taken
 * so follow it, as the loader computes them.  Writes the clause the warning
 * says it with ("" when no row evbusctl reads was doubtful).
 */
static void settle_doubtful(evbus_config_t *cfg, const bool *doubtful, char *out, size_t len)
{
    const char *kept[N_CTL_ROWS], *taken[N_CTL_ROWS];
    size_t n_kept = 0, n_taken = 0, taken_row[N_CTL_ROWS];
    char path[1100];
    snprintf(path, sizeof path, "%s/%s", cfg->daemon.state_dir, EVBUS_RUNNING_FILE);
    json_t *doc = NULL;
    for (size_t r = 0; r < N_CTL_ROWS; r++) {
        size_t i;
        if (!cfg_setting_find(ctl_rows[r].key, &i) || !doubtful[i] ||
            (ctl_rows[r].flag && *ctl_rows[r].flag))
            continue;
        if (!doc && !n_taken && !n_kept)
            doc = running_record(cfg, path);
        const char *v = doc ? recorded_value(doc, ctl_rows[r].key) : NULL;
        char err[300];
        if (v && cfg_value_set(cfg, i, v, err, sizeof err) == 0) {
            taken_row[n_taken] = i;
            taken[n_taken++] = ctl_rows[r].key;
        } else {
            kept[n_kept++] = ctl_rows[r].key;
        }
    }
    json_decref(doc);
    for (size_t i = 0, n = n_taken ? cfg_settings_count() : 0; i < n; i++) {
        const cfg_setting_t *s = cfg_setting_at(i);
        bool was_taken = false;
        for (size_t t = 0; t < n_taken; t++)
            /* cppcheck-suppress uninitvar ; only the n_taken entries already set are read */
            was_taken |= taken_row[t] == i;
        if (!s->compute || cfg->sources[i].kind != CFG_SRC_DEFAULT || was_taken)
            continue;
        char *v = s->compute(cfg), err[300];
        if (cfg_value_set(cfg, i, v ? v : "", err, sizeof err) != 0)
            fprintf(stderr, "evbusctl: %s: %s\n", s->key, err);
        free(v);
    }
    out[0] = '\0';
    char names[200];
    size_t used = 0;
    if (n_taken) {
        name_list(taken, n_taken, names, sizeof names);
        used = (size_t)snprintf(out, len, ", and for %s the value%s the running evbusd "
                                "recorded in %s", names, n_taken == 1 ? "" : "s", path);
    }
    if (n_kept && used < len) {
        name_list(kept, n_kept, names, sizeof names);
        if (n_taken)
            snprintf(out + used, len - used, ", and for %s what earlier files or the defaults "
                     "give", names);
        else
            snprintf(out + used, len - used, ", and for %s what earlier files or the defaults "
                     "give (no evbusd running this directory is recorded in %s)", names, path);
    }
}

/* The one warning line a broken conf.d costs a command that does not need it
 * whole; `fallback` says where the doubtful settings came from. */
static void warn_partial(const char *fallback)
{
    size_t n = conf_errs.count;
    const char *first = conf_errs.msgs[0];
    fprintf(stderr, "evbusctl: warning: %s has %zu error%s (first: %.300s%s); using the "
            "settings that parsed%s; `evbusd -c %s --check-config` lists them\n", env.conf_dir,
            n, n == 1 ? "" : "s", first, strlen(first) > 300 ? "..." : "", fallback,
            env.conf_dir);
}

static const ctl_env_t *load_env(bool quiet)
{
    if (loaded)
        return &env;
    loaded = true;
    env.conf_dir = ctl_conf_dir(&env.conf_origin);
    if (env.conf_dir) {
        bool *doubtful = NULL;
        env.cfg = config_load_partial(env.conf_dir, &conf_errs, &doubtful);
        if (!env.cfg) {
            for (size_t i = 0; i < conf_errs.count; i++)
                fprintf(stderr, "%s\n", conf_errs.msgs[i]);
            fprintf(stderr, "evbusctl: cannot read the configuration %s (%s)\n", env.conf_dir,
                    env.conf_origin);
            exit(CTL_USAGE);
        }
        env.conf_errors = conf_errs.count;
        if (env.conf_errors) {
            char fallback[1600];
            settle_doubtful(env.cfg, doubtful, fallback, sizeof fallback);
            if (!quiet)
                warn_partial(fallback);
        }
        free(doubtful);
    }
    const evbus_config_t *c = env.cfg;
    /* config_load already applied EVBUS_REDIS_URL / EVBUS_POSTGRES_URL; without
     * a configuration nothing but them or the flags names a server */
    env.redis_url = dup_or(ctl_opt_redis, c ? c->core.redis_url : env_var("EVBUS_REDIS_URL"));
    const char *cluster = ctl_opt_redis ? NULL
                          : ctl_opt_redis_cluster ? ctl_opt_redis_cluster
                          : c ? core_redis_cluster(c)
                          : env_var("EVBUS_REDIS_URL") ? NULL
                                                       : env_var("EVBUS_REDIS_CLUSTER");
    if (cluster) {
        /* never redis.url's default server behind the operator's back:
         * the commands that need Redis use the cluster (ctl_client) */
        free(env.redis_url);
        env.redis_url = NULL;
        env.redis_cluster = strdup(cluster);
    }
    env.postgres_url =
        dup_or(ctl_opt_postgres, c ? c->store.postgres_url : env_var("EVBUS_POSTGRES_URL"));
    env.stream = dup_or(ctl_opt_stream, c ? c->core.stream : "evbus:events");
    env.partitions = c ? c->core.partitions : 1;
    env.group = strdup(c ? c->core.group : "evbus");
    if (c && c->core.dlq_stream && !ctl_opt_stream)
        env.dlq_stream = strdup(c->core.dlq_stream);
    else if (asprintf(&env.dlq_stream, "%s:dlq", env.stream) < 0)
        env.dlq_stream = NULL;
    env.state_dir = c ? strdup(c->daemon.state_dir) : NULL;
    if (c && c->core.dlq_archive)
        env.dlq_archive = strdup(c->core.dlq_archive);
    else if (!env.state_dir || asprintf(&env.dlq_archive, "%s/dlq-archive.jsonl", env.state_dir) < 0)
        env.dlq_archive = NULL;
    env.admin_listen = c && c->admin.listen ? strdup(c->admin.listen) : NULL;
    return &env;
}

const ctl_env_t *ctl_env(void) { return load_env(false); }

const ctl_env_t *ctl_env_valid(const char *cmd)
{
    const ctl_env_t *e = load_env(true);
    if (!e->conf_errors)
        return e;
    for (size_t i = 0; i < conf_errs.count; i++)
        fprintf(stderr, "%s\n", conf_errs.msgs[i]);
    fprintf(stderr, "evbusctl %s: the configuration %s is invalid (%zu error%s)\n", cmd,
            e->conf_dir, e->conf_errors, e->conf_errors == 1 ? "" : "s");
    return NULL;
}

int ctl_no_config(const char *cmd, const char *what, const char *flags)
{
    fprintf(stderr, "evbusctl %s: no configuration to find %s in: no -c DIR, EVBUS_CONF_DIR is "
            "not set and %s does not exist; pass -c DIR, set EVBUS_CONF_DIR, or give %s\n",
            cmd, what, EVBUS_CONF_DIR, flags);
    return CTL_USAGE;
}

int ctl_no_postgres(const char *cmd)
{
    if (!ctl_env()->cfg)
        return ctl_no_config(cmd, "PostgreSQL", "--postgres URL (or EVBUS_POSTGRES_URL)");
    return ctl_usage_error(cmd, "no PostgreSQL configured (--postgres, EVBUS_POSTGRES_URL or "
                                "postgres.url in %s)", ctl_env()->conf_dir);
}

static void vmsg(const char *cmd, const char *fmt, va_list ap)
{
    fprintf(stderr, "evbusctl %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int ctl_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(cmd, fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try 'evbusctl %s --help'.\n", cmd);
    return CTL_USAGE;
}

int ctl_group_args(int argc, char **argv, const char *cmd, void (*usage)(FILE *), bool *json,
                   char **rest, int cap, int *nrest)
{
    *json = false;
    *nrest = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            *json = true;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return CTL_OK;
        } else if (*nrest < cap) {
            rest[(*nrest)++] = argv[i];
        } else {
            return ctl_usage_error(cmd, "too many arguments");
        }
    }
    return -1;
}

int ctl_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(cmd, fmt, ap);
    va_end(ap);
    return CTL_FAIL;
}

int ctl_opt_value(int argc, char **argv, int *i, const char *name, const char **val)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return 0;
    if (argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *val = argv[++*i];
    return 1;
}

bool ctl_stdout_tty(void) { return isatty(STDOUT_FILENO) == 1; }
bool ctl_stderr_tty(void) { return isatty(STDERR_FILENO) == 1; }

static bool progress_drawn;

void ctl_progress(const char *label, uint64_t done, uint64_t total)
{
    if (!ctl_stderr_tty())
        return;
    int width = 30;
    int filled = total ? (int)(done * (uint64_t)width / total) : 0;
    if (filled > width)
        filled = width;
    char bar[64];
    memset(bar, '#', (size_t)filled);
    memset(bar + filled, '-', (size_t)(width - filled));
    bar[width] = '\0';
    if (total)
        fprintf(stderr, "\r%s [%s] %llu/%llu (%3.0f%%)", label, bar, (unsigned long long)done,
                (unsigned long long)total, 100.0 * (double)done / (double)total);
    else
        fprintf(stderr, "\r%s %llu", label, (unsigned long long)done);
    fflush(stderr);
    progress_drawn = true;
}

void ctl_progress_end(void)
{
    if (progress_drawn && ctl_stderr_tty())
        fputc('\n', stderr);
    progress_drawn = false;
}

void ctl_apply_wait(evbus_client_t *c)
{
    const evbus_config_t *cfg = ctl_env()->cfg;
    if (cfg && cfg->core.redis_wait_replicas)
        evbus_client_set_wait_replicas(c, cfg->core.redis_wait_replicas,
                                       cfg->core.redis_wait_timeout_ms);
}

void ctl_apply_retention(evbus_client_t *c)
{
    const evbus_config_t *cfg = ctl_env()->cfg;
    if (!cfg || (!cfg->retention.max_entries && !cfg->retention.max_bytes))
        return; /* the client reads the policy evbusd publishes */
    evbus_client_set_retention(c, cfg->retention.max_entries,
                               cfg->retention.on_full == RETENTION_BLOCK,
                               cfg->retention.block_timeout_ms);
}

evbus_client_t *ctl_client(const ctl_env_t *env, char *err, size_t errlen)
{
    if (env->redis_cluster && env->partitions < 2) {
        /* the stream lives on a cluster in partitions; with one, every
         * event would go to a stream no evbusd reads there */
        snprintf(err, errlen, "a Redis Cluster is named, but the configuration has %s"
                 "partitions: %u; give the configuration evbusd runs with (partitions: 2 or "
                 "more, -c DIR)", env->cfg ? "" : "none, so ", env->partitions);
        return NULL;
    }
    evbus_client_t *c = env->redis_cluster
                            ? evbus_client_new_cluster(env->redis_cluster, env->stream, err, errlen)
                            : evbus_client_new(env->redis_url, env->stream, err, errlen);
    if (c && evbus_client_set_partitions(c, env->partitions) != 0) {
        snprintf(err, errlen, "%s", evbus_client_error(c));
        evbus_client_free(c);
        c = NULL;
    }
    return c;
}
