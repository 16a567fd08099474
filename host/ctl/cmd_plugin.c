/*
 * cmd_plugin.c — `evbusctl plugin new NAME`: a plugin project to start
 * from, copied from the installed template (scaffold.h does the copying).
 *
 * The template is found at build time (EVBUS_PLUGIN_TEMPLATE_DIR, the
 * templatedir of `pkg-config evbus-plugin`); --template or
 * $EVBUS_PLUGIN_TEMPLATE name another one, for an evbus installed under
 * another prefix or staged with DESTDIR (the tests do that).  It needs no
 * configuration and no server.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ctl/ctl.h"
#include "ctl/scaffold.h"
#include "evbus_build_config.h"

static void plugin_usage(FILE *out)
{
    fprintf(out,
            "usage: evbusctl plugin new NAME [--dir DIR] [--template DIR] [--json]\n"
            "\n"
            "  new   make a plugin project in a new folder from the plugin template:\n"
            "        meson.build, a Makefile, NAME.c and a README, with the plugin named\n"
            "        NAME in the file names, EVBUS_PLUGIN(), the C functions, the meson\n"
            "        project and the Makefile.  Then build it: cd DIR && meson setup\n"
            "        build && ninja -C build, or make.\n"
            "\n"
            "  NAME             the plugin's name: 1 to 32 characters, a lowercase letter\n"
            "                   then lowercase letters, digits or '_'; not a C keyword\n"
            "  --dir DIR        the folder to make (default ./NAME): it must not exist,\n"
            "                   its parent must\n"
            "  --template DIR   the template to copy (default $EVBUS_PLUGIN_TEMPLATE, else\n"
            "                   %s)\n"
            "  --json           {name, dir, template, files}\n"
            "  -h, --help       show this help\n"
            "\n"
            "Exit status: 0 made, 1 reading the template or writing the folder failed,\n"
            "2 usage or input error (a bad NAME, DIR exists, no template there).\n",
            EVBUS_PLUGIN_TEMPLATE_DIR);
}

static int plugin_new(int argc, char **argv, bool json)
{
    const char *name = NULL, *dir = NULL, *tmpl = NULL;
    for (int i = 0; i < argc; i++) {
        const char *v;
        int m;
        if ((m = ctl_opt_value(argc, argv, &i, "--dir", &v)) != 0) {
            if (m < 0)
                return ctl_usage_error("plugin", "--dir needs a value");
            dir = v;
        } else if ((m = ctl_opt_value(argc, argv, &i, "--template", &v)) != 0) {
            if (m < 0)
                return ctl_usage_error("plugin", "--template needs a value");
            tmpl = v;
        } else if (argv[i][0] == '-' || name) {
            return ctl_usage_error("plugin", "unexpected argument '%s'", argv[i]);
        } else {
            name = argv[i];
        }
    }
    if (!name)
        return ctl_usage_error("plugin", "new needs the plugin's NAME");
    char why[512];
    if (scaffold_name_check(name, why, sizeof why) != 0)
        return ctl_usage_error("plugin", "NAME: %s", why);
    const char *env = getenv("EVBUS_PLUGIN_TEMPLATE"), *origin = "--template";
    if (!tmpl) {
        bool from_env = env && *env;
        tmpl = from_env ? env : EVBUS_PLUGIN_TEMPLATE_DIR;
        origin = from_env ? "EVBUS_PLUGIN_TEMPLATE" : "the installed default";
    }
    struct stat st;
    if (stat(tmpl, &st) != 0 || !S_ISDIR(st.st_mode))
        return ctl_usage_error("plugin", "no template folder at %s (%s): name the installed "
                               "one with --template DIR or EVBUS_PLUGIN_TEMPLATE (`pkg-config "
                               "--variable=templatedir evbus-plugin` prints it)", tmpl, origin);
    if (!dir)
        dir = name;

    char **files = NULL, err[1024];
    int rc = scaffold_plugin(tmpl, dir, name, &files, err, sizeof err);
    if (rc == -2)
        return ctl_usage_error("plugin", "%s", err);
    if (rc != 0)
        return ctl_fail("plugin", "%s", err);

    json_t *jfiles = json_array();
    for (size_t i = 0; files[i]; i++) {
        json_array_append_new(jfiles, json_string(files[i]));
        free(files[i]);
    }
    free(files);
    if (json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:o}", "name", name, "dir", dir, "template", tmpl,
                              "files", jfiles);
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(o);
    } else {
        printf("made %s/ from %s:", dir, tmpl);
        size_t i;
        json_t *f;
        json_array_foreach(jfiles, i, f) printf(" %s", json_string_value(f));
        printf("\nbuild it:  cd %s && meson setup build && ninja -C build   (or: make)\n", dir);
        json_decref(jfiles);
    }
    return fflush(stdout) == 0 ? CTL_OK : CTL_FAIL;
}

int cmd_plugin(int argc, char **argv)
{
    bool json;
    char *rest[64];
    int nrest, rc = ctl_group_args(argc, argv, "plugin", plugin_usage, &json, rest, 64, &nrest);
    if (rc >= 0)
        return rc;
    if (nrest == 0)
        return ctl_usage_error("plugin", "missing subcommand (new)");
    if (strcmp(rest[0], "new") == 0)
        return plugin_new(nrest - 1, rest + 1, json);
    return ctl_usage_error("plugin", "unknown subcommand '%s' (new)", rest[0]);
}
