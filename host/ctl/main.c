/*
 * evbusctl — the operator's and scripter's CLI.  This file only parses the
 * global options and hands over to one cmd_*.c per command family.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "evbus_build_config.h"
#include <evbus/plugin.h> /* EVBUS_ABI_VERSION for --version */

/* set by the global options, read by ctl_env() */
const char *ctl_opt_conf_dir, *ctl_opt_redis, *ctl_opt_redis_cluster, *ctl_opt_postgres,
    *ctl_opt_stream;

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"publish", cmd_publish, "publish events (flags, --file NDJSON, or stdin)"},
    {"dlq", cmd_dlq, "inspect, retry, delete or purge dead letters"},
    {"validate", cmd_validate, "validate NDJSON events or payloads against schemas"},
    {"migrate", cmd_migrate, "show or apply PostgreSQL migrations (status | up)"},
    {"events", cmd_events, "read event metadata (show ID | list)"},
    {"replay", cmd_replay, "replay events by time range (start | status | list | cancel)"},
    {"status", cmd_status, "show the running evbusd's health"},
    {"reload", cmd_reload, "ask the running evbusd to reload its configuration"},
    {"config", cmd_config, "show every setting in force, its source and reload class"},
    {"pending", cmd_pending, "list pending entries; quarantine one to the DLQ by hand"},
    {"token", cmd_token, "make an admin API token and its admin.tokens line (create | hash)"},
    {"handlers", cmd_handlers, "list handler instances; pause or resume one (list | pause | resume)"},
    {"plugin", cmd_plugin, "start a plugin project from the installed template (new)"},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: evbusctl [-c DIR] [--redis URL | --redis-cluster SEEDS] [--postgres URL] "
               "[--stream NAME] COMMAND [ARGS]\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nGlobal options (before the command):\n"
               "  -c, --config DIR   configuration directory (default $EVBUS_CONF_DIR, else %s\n"
               "                     when it exists; a broken file in it costs a warning, not\n"
               "                     the command, except `config show --files`)\n"
               "      --redis URL    Redis URL (overrides EVBUS_REDIS_URL and the config)\n"
               "      --redis-cluster SEEDS\n"
               "                     a Redis Cluster's seed URLs, comma-separated (overrides\n"
               "                     EVBUS_REDIS_CLUSTER and the config)\n"
               "      --postgres URL PostgreSQL URL (overrides EVBUS_POSTGRES_URL and the "
               "config)\n"
               "      --stream NAME  the event stream (default from the config, evbus:events)\n"
               "  -h, --help         this help; `evbusctl COMMAND --help` for a command\n"
               "  -v, --version      print the version\n"
               "\nEnvironment: EVBUS_TOKEN is the operator API token commands send to evbusd's\n"
               "admin endpoint (reload, config show); never pass a token as an argument.\n"
               "\nExit status: 0 success, 1 the operation failed, 2 usage or configuration "
               "error,\n3 `reload` applied but changed settings wait for a restart.\n",
            EVBUS_CONF_DIR);
    const char *origin, *dir = ctl_conf_dir(&origin);
    if (dir)
        fprintf(f, "\nConfiguration: %s (%s)\n", dir, origin);
    else
        fprintf(f, "\nConfiguration: none (%s does not exist): commands that need a server\n"
                   "take it from --redis, --postgres or --admin, or refuse\n", EVBUS_CONF_DIR);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"redis", required_argument, NULL, 'r'},
        {"redis-cluster", required_argument, NULL, 'C'},
        {"postgres", required_argument, NULL, 'p'}, {"stream", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},          {"version", no_argument, NULL, 'v'},
        {NULL, 0, NULL, 0}};
    int ch;
    /* "+": stop at the first non-option, the command */
    while ((ch = getopt_long(argc, argv, "+c:hv", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': ctl_opt_conf_dir = optarg; break;
        case 'r': ctl_opt_redis = optarg; break;
        case 'C': ctl_opt_redis_cluster = optarg; break;
        case 'p': ctl_opt_postgres = optarg; break;
        case 's': ctl_opt_stream = optarg; break;
        case 'h': usage(stdout); return CTL_OK;
        case 'v': printf("evbusctl %s (plugin ABI %u.%u)\n", EVBUS_VERSION, EVBUS_ABI_VERSION,
                         EVBUS_ABI_MINOR); return CTL_OK;
        default: usage(stderr); return CTL_USAGE;
        }
    }
    if (ctl_opt_redis && ctl_opt_redis_cluster) {
        fprintf(stderr, "evbusctl: --redis and --redis-cluster name two different Redis "
                        "deployments: give one\n");
        return CTL_USAGE;
    }
    if (optind >= argc) {
        fprintf(stderr, "evbusctl: missing command\n");
        usage(stderr);
        return CTL_USAGE;
    }
    const char *cmd = argv[optind];
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(cmd, commands[i].name) == 0) {
            int sub_argc = argc - optind;
            char **sub_argv = argv + optind;
            optind = 1; /* subcommands run their own getopt from the start */
            return commands[i].fn(sub_argc, sub_argv);
        }
    fprintf(stderr, "evbusctl: unknown command '%s'\n", cmd);
    usage(stderr);
    return CTL_USAGE;
}
