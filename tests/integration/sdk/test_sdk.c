/*
 * The plugin author's kit (issue 20), as an author outside this tree uses it.
 *
 * `plugin_new`: `evbusctl plugin new` from the template in the source tree:
 * what it renames, what it refuses (exit 2, nothing made, nothing touched).
 *
 * `author_path`: this build is installed into a DESTDIR (meson install), and
 * from then on only the installed files are used, found the way an author
 * finds them, through `pkg-config evbus-plugin` (PKG_CONFIG_PATH into the
 * staged prefix, PKG_CONFIG_SYSROOT_DIR for the DESTDIR): the installed
 * evbusctl scaffolds a plugin from the installed template, the plugin is
 * built out of tree with its meson.build and with its Makefile, both
 * builds are installed where pkg-config's plugindir says, and the installed
 * evbusd checks a manifest using them (--check-config, no trace) and then
 * drains real events from a real Redis through both.  A template, a .pc
 * file or a Makefile that is broken fails here.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "harness.h"

struct run {
    int status;
    char *out, *err;
};

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
}

/* Run argv (a bare name is looked up in PATH) with extra environment envp;
 * out and err are never NULL. */
static struct run run(const char *const *argv, char *const *envp, int timeout_ms)
{
    struct run r = {0};
    r.status = harness_run((char *const *)argv, envp, NULL, &r.out, &r.err, timeout_ms);
    if (!r.out)
        r.out = strdup("");
    if (!r.err)
        r.err = strdup("");
    return r;
}
#define RUN(envp, timeout_ms, ...) run((const char *const[]){__VA_ARGS__, NULL}, envp, timeout_ms)

/* Run and assert exit 0, printing what it said otherwise; returns stdout. */
static char *run_ok(const char *what, const char *const *argv, char *const *envp, int timeout_ms)
{
    struct run r = run(argv, envp, timeout_ms);
    cr_assert_eq(r.status, 0, "%s: exit %d\nstdout: %.3000s\nstderr: %.3000s", what, r.status,
                 r.out, r.err);
    free(r.err);
    return r.out;
}
#define RUN_OK(what, envp, timeout_ms, ...)                                                     \
    run_ok(what, (const char *const[]){__VA_ARGS__, NULL}, envp, timeout_ms)

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static char *file_in(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = harness_read_file(path);
    cr_assert_not_null(text, "%s is missing", path);
    return text;
}

/* ---------------------------------------------------------------------- */
/* evbusctl plugin new (build tree, source template)                       */

static char *tmp, *ctl_bin, *template_dir;

static void new_setup(void)
{
    tmp = harness_tmpdir("sdk-new");
    ctl_bin = harness_build_path("host/ctl/evbusctl");
    template_dir = harness_source_path("plugin-api/template");
}

static void new_teardown(void)
{
    harness_rmrf(tmp);
    free(tmp);
    free(ctl_bin);
    free(template_dir);
}

TestSuite(plugin_new, .init = new_setup, .fini = new_teardown, .timeout = 60);

Test(plugin_new, names_the_plugin_in_file_names_the_descriptor_meson_and_make)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/p", tmp);
    char *out = RUN_OK("plugin new", NULL, 10000, ctl_bin, "plugin", "new", "seen_2", "--dir", dir,
                       "--template", template_dir, "--json");
    json_error_t jerr;
    json_t *doc = json_loads(out, 0, &jerr);
    cr_assert_not_null(doc, "--json output is not JSON (%s): %s", jerr.text, out);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "name")), "seen_2");
    cr_assert_str_eq(json_string_value(json_object_get(doc, "dir")), dir);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "template")), template_dir);
    char *files = json_dumps(json_object_get(doc, "files"), JSON_COMPACT);
    cr_assert_str_eq(files, "[\"Makefile\",\"README.md\",\"meson.build\",\"seen_2.c\"]");
    free(files);
    json_decref(doc);
    free(out);

    char *c = file_in(dir, "seen_2.c");
    cr_assert(strstr(c, "EVBUS_PLUGIN(\"seen_2\", "), "%s", c);
    cr_assert(strstr(c, "static int seen_2_init("), "%s", c);
    cr_assert_null(strstr(c, "example"), "seen_2.c still says example: %s", strstr(c, "example"));
    free(c);
    char *m = file_in(dir, "meson.build");
    cr_assert(strstr(m, "project('seen_2-plugin', 'c',"), "%s", m);
    cr_assert(strstr(m, "shared_module('seen_2', files('seen_2.c'),"), "%s", m);
    cr_assert_null(strstr(m, "example"), "%s", m);
    free(m);
    char *mk = file_in(dir, "Makefile");
    cr_assert(strstr(mk, "\nPLUGIN     = seen_2\n"), "%s", mk);
    cr_assert_null(strstr(mk, "example"), "%s", mk);
    free(mk);
    char *readme = file_in(dir, "README.md");
    cr_assert(strstr(readme, "plugin: seen_2\n"), "%s", readme);
    free(readme);
    char path[700];
    snprintf(path, sizeof path, "%s/example.c", dir);
    cr_assert(!is_file(path), "example.c was copied under its old name");
}

Test(plugin_new, makes_folder_NAME_by_default_and_says_how_to_build_it)
{
    char cwd[1024];
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    cr_assert_eq(chdir(tmp), 0);
    struct run r = RUN(NULL, 10000, ctl_bin, "plugin", "new", "counter", "--template",
                       template_dir);
    cr_assert_eq(chdir(cwd), 0);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    char want[1200];
    snprintf(want, sizeof want,
             "made counter/ from %s: Makefile README.md counter.c meson.build\n"
             "build it:  cd counter && meson setup build && ninja -C build   (or: make)\n",
             template_dir);
    cr_assert_str_eq(r.out, want);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/counter", tmp);
    char *c = file_in(dir, "counter.c");
    free(c);
    run_free(&r);
}

Test(plugin_new, refuses_a_name_that_is_not_a_lowercase_c_identifier_with_exit_2)
{
    const char *bad[] = {"",     "Seen",     "9lives", "my-plugin", "a.b",
                         "a b",  "_x",       "int",    "struct",
                         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" /* 33 */};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char dir[600];
        snprintf(dir, sizeof dir, "%s/bad%zu", tmp, i);
        struct run r = RUN(NULL, 10000, ctl_bin, "plugin", "new", bad[i], "--dir", dir,
                           "--template", template_dir);
        cr_expect_eq(r.status, 2, "'%s': exit %d, stderr %s", bad[i], r.status, r.err);
        cr_expect(strstr(r.err, "a lowercase letter, then lowercase letters, digits or '_'; "
                                "not a C keyword"),
                  "'%s': the message does not say what is allowed: %s", bad[i], r.err);
        cr_expect(!is_dir(dir), "'%s': a folder was made", bad[i]);
        cr_expect_str_eq(r.out, "");
        run_free(&r);
    }
    /* the longest allowed name, and digits and '_' after the first letter */
    char dir[600];
    snprintf(dir, sizeof dir, "%s/ok", tmp);
    free(RUN_OK("a 32-character name", NULL, 10000, ctl_bin, "plugin", "new",
                "a_234567890123456789012345678901", "--dir", dir, "--template", template_dir));
}

Test(plugin_new, refuses_an_existing_folder_and_leaves_it_alone)
{
    char dir[600], keep[700];
    snprintf(dir, sizeof dir, "%s/mine", tmp);
    cr_assert_eq(harness_write_file(dir, "Makefile", "my own\n"), 0);
    struct run r = RUN(NULL, 10000, ctl_bin, "plugin", "new", "mine", "--dir", dir, "--template",
                       template_dir);
    cr_assert_eq(r.status, 2, "exit %d, stderr %s", r.status, r.err);
    cr_assert(strstr(r.err, "already exists"), "%s", r.err);
    snprintf(keep, sizeof keep, "%s/Makefile", dir);
    char *text = harness_read_file(keep);
    cr_assert_str_eq(text, "my own\n");
    free(text);
    snprintf(keep, sizeof keep, "%s/mine.c", dir);
    cr_assert(!is_file(keep));
    run_free(&r);
}

Test(plugin_new, names_the_template_it_cannot_find_and_how_to_point_at_one)
{
    char dir[600], missing[600];
    snprintf(dir, sizeof dir, "%s/x", tmp);
    snprintf(missing, sizeof missing, "%s/no-template", tmp);
    char env[700];
    snprintf(env, sizeof env, "EVBUS_PLUGIN_TEMPLATE=%s", missing);
    char *envp[] = {env, NULL};
    struct run r = RUN(envp, 10000, ctl_bin, "plugin", "new", "x", "--dir", dir);
    cr_assert_eq(r.status, 2, "exit %d, stderr %s", r.status, r.err);
    char want[900];
    snprintf(want, sizeof want, "no template folder at %s (EVBUS_PLUGIN_TEMPLATE)", missing);
    cr_assert(strstr(r.err, want), "%s", r.err);
    cr_assert(strstr(r.err, "--template DIR"), "%s", r.err);
    cr_assert(!is_dir(dir));
    run_free(&r);
    /* the flag wins over the environment */
    free(RUN_OK("--template over EVBUS_PLUGIN_TEMPLATE", envp, 10000, ctl_bin, "plugin", "new",
                "x", "--dir", dir, "--template", template_dir));
}

/* ---------------------------------------------------------------------- */
/* The author's path, from an installed evbus                              */

/* getenv that must be set (tests/integration/sdk/meson.build sets them) */
static const char *need_env(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v && *v, "%s is not set: run this test through meson test", name);
    return v;
}

/* The one line pkg-config prints for a variable, without its newline. */
static char *pc_variable(char *const *envp, const char *var)
{
    char flag[128];
    snprintf(flag, sizeof flag, "--variable=%s", var);
    char *out = RUN_OK("pkg-config", envp, 10000, "pkg-config", flag, "evbus-plugin");
    out[strcspn(out, "\n")] = '\0';
    cr_assert(out[0], "pkg-config --variable=%s evbus-plugin is empty", var);
    return out;
}

static fx_t f;

/* fx_stop also when an assertion ended the test: no evbusd or redis-server
 * outlives it */
static void author_teardown(void)
{
    if (f.dir)
        fx_stop(&f);
}

TestSuite(author_path, .fini = author_teardown, .timeout = 150);

/* path holds exactly the lines "approval.item.approved sdk-<i>", i < n, in
 * any order (two worker threads) */
static void assert_recorded(const char *path, int n)
{
    char *got = harness_read_file(path);
    cr_assert_not_null(got, "%s is missing", path);
    cr_assert_eq(harness_count_lines(path), (size_t)n, "%s:\n%s", path, got);
    for (int i = 0; i < n; i++) {
        char line[64];
        snprintf(line, sizeof line, "approval.item.approved sdk-%d\n", i);
        cr_assert(strstr(got, line), "%s lacks %s:\n%s", path, line, got);
    }
    free(got);
}

/* The .so's dynamic symbol table defines evbus_plugin_descriptor and
 * nothing else (nm -D: binutils, which the C toolchain brings). */
static void assert_exports_only_the_descriptor(const char *so)
{
    char *syms = RUN_OK("nm", NULL, 10000, "nm", "-D", "--defined-only", so);
    cr_assert(strstr(syms, " T evbus_plugin_descriptor\n"), "%s: %s", so, syms);
    cr_assert_eq(strchr(syms, '\n'), strrchr(syms, '\n'),
                 "%s exports more than the descriptor (is -fvisibility=hidden lost?):\n%s", so,
                 syms);
    free(syms);
}

Test(author_path, a_plugin_made_with_plugin_new_builds_with_meson_and_make_and_runs)
{
    fx_start(&f, false);
    const char *prefix = need_env("EVBUS_INSTALL_PREFIX");
    char dest[700], pcpath[1400], sysroot[800], evbusctl[1200], evbusd[1200];
    snprintf(dest, sizeof dest, "%s/dest", f.dir);
    free(RUN_OK("meson install", NULL, 60000, need_env("EVBUS_MESON"), "install", "-C",
                need_env("EVBUS_BUILD_ROOT"), "--destdir", dest, "--no-rebuild", "--quiet"));

    /* From here on only what was installed. */
    snprintf(pcpath, sizeof pcpath, "PKG_CONFIG_PATH=%s%s", dest,
             need_env("EVBUS_INSTALL_PKGCONFIGDIR"));
    snprintf(sysroot, sizeof sysroot, "PKG_CONFIG_SYSROOT_DIR=%s", dest);
    snprintf(evbusctl, sizeof evbusctl, "%s%s/evbusctl", dest, need_env("EVBUS_INSTALL_BINDIR"));
    snprintf(evbusd, sizeof evbusd, "%s%s/evbusd", dest, need_env("EVBUS_INSTALL_SBINDIR"));
    char *templatedir = pc_variable((char *[]){pcpath, sysroot, NULL}, "templatedir");
    char *plugindir = pc_variable((char *[]){pcpath, sysroot, NULL}, "plugindir");
    cr_assert(strncmp(plugindir, dest, strlen(dest)) == 0 &&
                  strncmp(plugindir + strlen(dest), prefix, strlen(prefix)) == 0,
              "plugindir %s is not under the installed prefix %s%s", plugindir, dest, prefix);
    char tmpl_env[1000];
    snprintf(tmpl_env, sizeof tmpl_env, "EVBUS_PLUGIN_TEMPLATE=%s", templatedir);
    char *const env[] = {pcpath, sysroot, tmpl_env, NULL};

    char src[800], mbuild[900], stage[800];
    snprintf(src, sizeof src, "%s/seen", f.dir);
    snprintf(mbuild, sizeof mbuild, "%s/build", src);
    snprintf(stage, sizeof stage, "%s/stage", f.dir);
    free(RUN_OK("evbusctl plugin new", env, 10000, evbusctl, "plugin", "new", "seen", "--dir",
                src));
    /* a function that is not static, as an author's helper would be: the
     * builds' -fvisibility=hidden must keep it out of the symbol table */
    char seen_c[900];
    snprintf(seen_c, sizeof seen_c, "%s/seen.c", src);
    FILE *c = fopen(seen_c, "a");
    cr_assert_not_null(c);
    fputs("\nint seen_helper(void);\nint seen_helper(void) { return 42; }\n", c);
    cr_assert_eq(fclose(c), 0);

    /* meson: out of tree, installed into plugindir (inside the DESTDIR) */
    free(RUN_OK("meson setup", env, 60000, need_env("EVBUS_MESON"), "setup", mbuild, src));
    free(RUN_OK("ninja", env, 60000, "ninja", "-C", mbuild));
    free(RUN_OK("meson install (plugin)", env, 30000, need_env("EVBUS_MESON"), "install", "-C",
                mbuild, "--quiet"));
    char meson_so[1200];
    snprintf(meson_so, sizeof meson_so, "%s/seen.so", plugindir);
    cr_assert(is_file(meson_so), "meson install did not put seen.so into plugindir %s", plugindir);

    /* make: in the source folder, installed with DESTDIR */
    free(RUN_OK("make", env, 60000, "make", "-C", src));
    char destdir[900], make_so[2200];
    snprintf(destdir, sizeof destdir, "DESTDIR=%s", stage);
    free(RUN_OK("make install", env, 30000, "make", "-C", src, "install", destdir));
    snprintf(make_so, sizeof make_so, "%s%s/seen.so", stage, plugindir);
    cr_assert(is_file(make_so), "make install DESTDIR=%s did not make %s", stage, make_so);
    assert_exports_only_the_descriptor(meson_so);
    assert_exports_only_the_descriptor(make_so);

    /* the installed evbusd: one instance from plugin_dir (the meson build),
     * one by path (the make build) */
    char extra[1600], manifest[4000], out_meson[700], out_make[700];
    snprintf(extra, sizeof extra, "plugin_dir: %s\n", plugindir);
    fx_host_conf(&f, "sdk", extra);
    fx_path(&f, "seen-meson.txt", out_meson, sizeof out_meson);
    fx_path(&f, "seen-make.txt", out_make, sizeof out_make);
    snprintf(manifest, sizeof manifest,
             "plugins:\n"
             "  - name: seen-meson\n"
             "    plugin: seen\n"
             "    config: { path: \"%s\" }\n"
             "  - name: seen-make\n"
             "    plugin: \"%s\"\n"
             "    config: { path: \"%s\" }\n",
             out_meson, make_so, out_make);
    fx_conf(&f, "10-seen.yaml", manifest);
    char *ok = RUN_OK("evbusd --check-config", NULL, 30000, evbusd, "-c", f.conf,
                      "--check-config");
    cr_assert_str_eq(ok, "OK\n");
    free(ok);
    cr_assert(!is_file(out_meson) && !is_file(out_make),
              "--check-config created the plugin's output file");

    char *argv[] = {evbusd, "-c", f.conf, NULL};
    cr_assert_eq(harness_spawn(&f.d, argv, NULL, f.log), 0);
    fx_publish(&f, "sdk", 3, "approval.item.approved", "acme", FX_APPROVED_V2);
    cr_assert(fx_wait_lines(out_meson, 3, 20000) && fx_wait_lines(out_make, 3, 20000),
              "the scaffolded plugin did not record 3 events; evbusd's log: %s", f.log);
    cr_assert(fx_wait_drained(&f, 10000));
    assert_recorded(out_meson, 3);
    assert_recorded(out_make, 3);
    cr_assert_eq(harness_kill(&f.d, SIGTERM, 15000), 0, "evbusd did not stop cleanly");
    f.d.pid = 0;
    free(templatedir);
    free(plugindir);
}
