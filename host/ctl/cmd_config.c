/*
 * evbusctl config show — every setting with its effective value, where it
 * came from (default, FILE:LINE:COL, or an environment variable), its
 * reload class, and which changes in the files wait for a restart: what
 * PostgreSQL's pg_settings view gives its operators.
 *
 * Where the values come from, first that answers: the running evbusd's
 * admin endpoint (GET /config), its record in STATE_DIR
 * (evbusd-running.json), and, with --files or when no daemon answers, the
 * configuration directory itself, which must then be valid: showing what
 * part of a broken conf.d says would look like an answer.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/settings.h"
#include "ctl/ctl.h"

/* The settings array of a running evbusd, or NULL with why in err. */
static json_t *running_settings(const char *admin, const char *state_dir, char **from,
                                char *err, size_t errlen)
{
    if (admin) {
        char *body = NULL, herr[256];
        int code = ctl_http_request(admin, "GET", "/api/v1/config", &body, herr, sizeof herr);
        json_t *doc = code == 200 ? json_loads(body, 0, NULL) : NULL;
        free(body);
        if (doc && json_is_array(json_object_get(doc, "settings"))) {
            if (asprintf(from, "the running evbusd (admin %s, generation %lld)", admin,
                         (long long)json_integer_value(json_object_get(doc, "generation"))) < 0)
                *from = NULL;
            return doc;
        }
        json_decref(doc);
        snprintf(err, errlen, "admin %s: %s", admin, code < 0 ? herr : "no settings in answer");
    }
    if (state_dir) {
        char path[1100];
        snprintf(path, sizeof path, "%s/%s", state_dir, EVBUS_RUNNING_FILE);
        json_t *doc = json_load_file(path, 0, NULL);
        if (doc && json_is_array(json_object_get(doc, "settings"))) {
            if (asprintf(from, "the running evbusd (pid %lld, generation %lld, from %s)",
                         (long long)json_integer_value(json_object_get(doc, "pid")),
                         (long long)json_integer_value(json_object_get(doc, "generation")),
                         path) < 0)
                *from = NULL;
            return doc;
        }
        json_decref(doc);
        if (!admin)
            snprintf(err, errlen, "no running evbusd recorded in %.400s", path);
    }
    return NULL;
}

static int show(bool json, bool files_only, const char *admin)
{
    const ctl_env_t *env = NULL;
    char err[512] = "no admin endpoint and no configuration directory";
    char *from = NULL;
    json_t *doc = NULL;
    if (!files_only) {
        if (!admin)
            admin = ctl_env()->admin_listen;
        env = admin ? NULL : ctl_env();
        doc = running_settings(admin, env ? env->state_dir : NULL, &from, err, sizeof err);
    }
    if (!doc) {
        if (!(env = ctl_env_valid("config")))
            return CTL_USAGE;
        if (!env->cfg)
            return ctl_no_config("config", "the settings", "--admin HOST:PORT");
        doc = json_pack("{s:o}", "settings", config_settings_json(env->cfg, NULL));
        int n = files_only ? asprintf(&from, "the files in %s", env->conf_dir)
                           : asprintf(&from, "the files in %s (no running evbusd answered: %s)",
                                      env->conf_dir, err);
        if (n < 0)
            from = NULL;
    }
    json_t *settings = json_object_get(doc, "settings");
    /* The state file and the files hold passwords whole; a terminal or a
     * script's log is no place for them (the admin answer is masked already). */
    config_settings_redact(settings);
    if (json) {
        json_t *out = json_pack("{s:s, s:O}", "from", from ? from : "", "settings", settings);
        char *s = json_dumps(out, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
        json_decref(out);
    } else {
        printf("# settings in force, from %s\n", from ? from : "?");
        printf("%-30s %-28s %-8s %s\n", "KEY", "VALUE", "RELOAD", "SOURCE");
        size_t i;
        json_t *row;
        size_t pending = 0;
        json_array_foreach(settings, i, row)
        {
            const char *pend = json_string_value(json_object_get(row, "pending_restart"));
            printf("%-30s %-28s %-8s %s", json_string_value(json_object_get(row, "key")),
                   json_string_value(json_object_get(row, "value")),
                   json_string_value(json_object_get(row, "reload")),
                   json_string_value(json_object_get(row, "source")));
            if (pend) {
                printf("  [pending restart: files say %s]", pend);
                pending++;
            }
            putchar('\n');
        }
        if (pending)
            printf("# %zu setting%s changed in the files wait%s for a restart\n", pending,
                   pending == 1 ? "" : "s", pending == 1 ? "s" : "");
    }
    free(from);
    json_decref(doc);
    return CTL_OK;
}

static void usage(void)
{
    printf("Usage: evbusctl config show [--admin HOST:PORT] [--files] [--json]\n\n"
           "Prints every setting: its value in force, where it came from (default,\n"
           "FILE:LINE:COL or an environment variable), whether a reload applies it\n"
           "(live) or it needs a restart, and, for a running evbusd, the changes in\n"
           "the files that wait for a restart.  Asks the running evbusd (its admin\n"
           "endpoint, else its record in STATE_DIR); --files, or no daemon answering,\n"
           "shows what the configuration directory says; it must then be valid\n"
           "(a broken one has every error printed and exits 2).  Passwords in URLs\n"
           "and libpq password= values are shown as ***.\n"
           "Exit status: 0, 2 usage or configuration error.\n");
}

int cmd_config(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage();
        return CTL_OK;
    }
    if (argc < 2)
        return ctl_usage_error("config", "missing subcommand (show)");
    if (strcmp(argv[1], "show") != 0)
        return ctl_usage_error("config", "unknown subcommand '%s' (show)", argv[1]);
    bool json = false, files = false;
    const char *admin = NULL;
    for (int i = 2; i < argc; i++) {
        const char *val;
        int m;
        if (!strcmp(argv[i], "--json"))
            json = true;
        else if (!strcmp(argv[i], "--files"))
            files = true;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage();
            return CTL_OK;
        } else if ((m = ctl_opt_value(argc, argv, &i, "--admin", &val)) != 0) {
            if (m < 0)
                return ctl_usage_error("config", "--admin needs HOST:PORT");
            admin = val;
        } else
            return ctl_usage_error("config", "unknown option '%s'", argv[i]);
    }
    return show(json, files, admin);
}
