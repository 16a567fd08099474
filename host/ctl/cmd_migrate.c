/*
 * cmd_migrate.c — `evbusctl migrate status|up`: shows or applies the
 * PostgreSQL migrations embedded in the binary (store_migrate).  Safe to
 * run while evbusd hosts migrate too: the store serialises runs with an
 * advisory lock.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "store/store.h"

static void migrate_usage(FILE *out)
{
    fputs("usage: evbusctl migrate status [--json]\n"
          "       evbusctl migrate up [--json]\n"
          "\n"
          "  status   list every known migration and whether it is applied\n"
          "  up       apply the missing ones, each in its own transaction; a failing\n"
          "           migration is rolled back and stops the run\n"
          "  --json   machine-readable output\n"
          "  -h, --help  show this help\n"
          "\n"
          "Exit status: 0 done, 1 PostgreSQL unreachable or a migration failed,\n"
          "2 usage error.\n",
          out);
}

int cmd_migrate(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bool json = false;
    optind = 0;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'j': json = true; break;
        case 'h': migrate_usage(stdout); return CTL_OK;
        default:
            return ctl_usage_error("migrate", "%s: unknown option", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return ctl_usage_error("migrate", "missing subcommand (status or up)");
    const char *sub = argv[optind++];
    if (optind < argc)
        return ctl_usage_error("migrate", "unexpected argument '%s'", argv[optind]);
    bool up = strcmp(sub, "up") == 0;
    if (!up && strcmp(sub, "status") != 0)
        return ctl_usage_error("migrate", "unknown subcommand '%s' (status or up)", sub);

    const ctl_env_t *env = ctl_env();
    if (!env->postgres_url)
        return ctl_no_postgres("migrate");
    char err[512];
    PGconn *c = store_connect(env->postgres_url, err, sizeof err);
    if (!c)
        return ctl_fail("migrate", "%s", err);
    store_migration_status_t *st = NULL;
    size_t n = 0;
    int rc = store_migrate(c, up ? 0 : 1, &st, &n, err, sizeof err);
    PQfinish(c);
    if (rc != 0)
        return ctl_fail("migrate", "%s", err);

    size_t pending = 0, now = 0;
    for (size_t i = 0; i < n; i++) {
        pending += !st[i].applied;
        now += st[i].applied_now;
    }
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(
                arr, json_pack("{s:i, s:s, s:b, s:b, s:o}", "version", st[i].version, "name",
                               st[i].name, "applied", st[i].applied, "applied_now",
                               st[i].applied_now,
                               "applied_at", st[i].applied ? json_string(st[i].applied_at)
                                                           : json_null()));
        json_t *o = json_pack("{s:o, s:i, s:i}", "migrations", arr, "pending", (int)pending,
                              "applied_now", (int)now);
        char *s = json_dumps(o, JSON_INDENT(2));
        if (s)
            puts(s);
        free(s);
        json_decref(o);
    } else {
        for (size_t i = 0; i < n; i++)
            printf("%04d  %-40s  %s%s\n", st[i].version, st[i].name,
                   st[i].applied_now ? "applied now " : st[i].applied ? "applied " : "pending",
                   st[i].applied ? st[i].applied_at : "");
        if (up)
            printf("%zu migration(s) applied, schema up to date\n", now);
        else
            printf("%zu pending\n", pending);
    }
    free(st);
    return CTL_OK;
}
