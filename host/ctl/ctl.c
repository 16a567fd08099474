/* ctl — shared plumbing of evbusctl's subcommands; see ctl.h. */
#include "ctl/ctl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evbus_build_config.h"

static ctl_env_t env;
static bool loaded;

static char *dup_or(const char *a, const char *b) { return a ? strdup(a) : b ? strdup(b) : NULL; }

static bool is_dir(const char *p)
{
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const ctl_env_t *ctl_env(void)
{
    if (loaded)
        return &env;
    loaded = true;
    const char *dir = ctl_opt_conf_dir;
    if (!dir && getenv("EVBUS_CONF_DIR"))
        dir = getenv("EVBUS_CONF_DIR");
    if (!dir && is_dir(EVBUS_CONF_DIR))
        dir = EVBUS_CONF_DIR;
    if (dir) {
        cfg_errors_t errs = {0};
        env.cfg = config_load(dir, &errs);
        if (!env.cfg) {
            for (size_t i = 0; i < errs.count; i++)
                fprintf(stderr, "%s\n", errs.msgs[i]);
            fprintf(stderr, "evbusctl: configuration %s is invalid\n", dir);
            exit(CTL_USAGE);
        }
        cfg_errors_free(&errs);
        env.conf_dir = dir;
    }
    const evbus_config_t *c = env.cfg;
    /* config_load already applied EVBUS_REDIS_URL / EVBUS_POSTGRES_URL */
    env.redis_url = dup_or(ctl_opt_redis, c ? c->core.redis_url : getenv("EVBUS_REDIS_URL"));
    if (!env.redis_url)
        env.redis_url = strdup("redis://127.0.0.1:6379/0");
    env.postgres_url = dup_or(ctl_opt_postgres, c ? c->store.postgres_url : getenv("EVBUS_POSTGRES_URL"));
    env.stream = dup_or(ctl_opt_stream, c ? c->core.stream : "evbus:events");
    env.group = strdup(c ? c->core.group : "evbus");
    if (c && c->core.dlq_stream && !ctl_opt_stream)
        env.dlq_stream = strdup(c->core.dlq_stream);
    else if (asprintf(&env.dlq_stream, "%s:dlq", env.stream) < 0)
        env.dlq_stream = NULL;
    env.state_dir = strdup(c ? c->daemon.state_dir : "/var/lib/evbus");
    if (c && c->core.dlq_archive)
        env.dlq_archive = strdup(c->core.dlq_archive);
    else if (asprintf(&env.dlq_archive, "%s/dlq-archive.jsonl", env.state_dir) < 0)
        env.dlq_archive = NULL;
    env.admin_listen = c && c->admin.listen ? strdup(c->admin.listen) : NULL;
    return &env;
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

void ctl_apply_retention(evbus_client_t *c)
{
    const evbus_config_t *cfg = ctl_env()->cfg;
    if (!cfg || (!cfg->retention.max_entries && !cfg->retention.max_bytes))
        return; /* the client reads the policy evbusd publishes */
    evbus_client_set_retention(c, cfg->retention.max_entries,
                               cfg->retention.on_full == RETENTION_BLOCK,
                               cfg->retention.block_timeout_ms);
}
