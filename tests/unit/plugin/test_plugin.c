/*
 * plugin-loader tests — real plugin .so files built by meson, loaded
 * through host/plugin and driven through the fake host API.  Paths of the
 * built plugins come from compile-time defines (see meson.build).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "fake_host.h"
#include "harness.h"
#include "plugin/config_map.h"
#include "plugin/plugin.h"

static char *tmp;
static char priv[512];
static char err[1024];

static void setup(void)
{
    tmp = harness_tmpdir("plugin");
    cr_assert_not_null(tmp);
    snprintf(priv, sizeof priv, "%s/private/copies", tmp);
    err[0] = '\0';
    fake_host_log_clear();
}

static void teardown(void)
{
    harness_rmrf(tmp);
    free(tmp);
}

TestSuite(loader, .init = setup, .fini = teardown);
TestSuite(instance, .init = setup, .fini = teardown);
TestSuite(file_sink, .init = setup, .fini = teardown);
TestSuite(chaos, .init = setup, .fini = teardown);
TestSuite(bundled, .init = setup, .fini = teardown);

/* config maps: a conf.d written at run time, loaded with host/config */
static char confd[600];
static evbus_config_t *loaded;
static cfg_errors_t cerrs;

static void config_map_teardown(void)
{
    config_free(loaded);
    loaded = NULL;
    cfg_errors_free(&cerrs);
    teardown();
}

TestSuite(config_map, .init = setup, .fini = config_map_teardown);

static plugin_lib_t *open_ok(const char *path)
{
    plugin_lib_t *lib = NULL;
    int rc = plugin_lib_open(path, priv, &lib, err, sizeof err);
    cr_assert_eq(rc, 0, "open %s: %s", path, err);
    return lib;
}

static plugin_instance_t *new_ok(plugin_lib_t *lib, const char *name, const char *cfg)
{
    plugin_instance_t *inst = NULL;
    int rc = plugin_instance_new(lib, name, cfg, &fake_host_api, 0, &inst, err, sizeof err);
    cr_assert_eq(rc, 0, "instance %s: %s", name, err);
    return inst;
}

/* An instance of lib made and freed as a check (EVBUS_INIT_CHECK) is
 * accepted and leaves no file at `path`. */
static void check_leaves_no_trace(plugin_lib_t *lib, const char *cfg, const char *path)
{
    plugin_instance_t *inst = NULL;
    cr_assert_eq(plugin_instance_new(lib, "checked", cfg, &fake_host_api, EVBUS_INIT_CHECK, &inst,
                                     err, sizeof err),
                 0, "%s", err);
    plugin_instance_free(inst);
    cr_assert_eq(plugin_current_init_flags(), 0, "the flags end with init() and fini()");
    cr_assert_neq(access(path, F_OK), 0, "the check created %s", path);
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void copy_file(const char *from, const char *to)
{
    char *cmd;
    cr_assert(asprintf(&cmd, "cp '%s' '%s.new' && mv '%s.new' '%s'", from, to, to, to) > 0);
    cr_assert_eq(system(cmd), 0);
    free(cmd);
}

/* ---- loader ------------------------------------------------------------ */

Test(loader, loads_a_valid_plugin_and_removes_its_private_copy)
{
    plugin_lib_t *lib = open_ok(TESTKIT_SO);
    const evbus_plugin_descriptor_t *d = plugin_lib_descriptor(lib);
    cr_assert_str_eq(d->name, "testkit");
    cr_assert_str_eq(d->version, "1.0.0");
    cr_assert_str_eq(plugin_lib_path(lib), TESTKIT_SO);
    cr_assert_eq(count_entries(priv), 0, "the private copy must be unlinked after dlopen");
    plugin_file_id_t id;
    cr_assert_eq(plugin_file_identify(TESTKIT_SO, &id, err, sizeof err), 0, "%s", err);
    cr_assert_eq(memcmp(plugin_lib_digest(lib), id.digest, PLUGIN_DIGEST_LEN), 0);
    cr_assert_eq(plugin_lib_file_id(lib)->ino, id.ino);
    cr_assert_eq(plugin_lib_file_id(lib)->size, id.size);
    plugin_lib_close(lib);
}

Test(loader, refuses_an_abi_mismatch_with_both_versions)
{
    plugin_lib_t *lib = NULL;
    cr_assert_eq(plugin_lib_open(ABI_MISMATCH_SO, priv, &lib, err, sizeof err), -1);
    cr_assert_null(lib);
    cr_assert_str_eq(err, ABI_MISMATCH_SO ": ABI version 999, host supports 1");
    cr_assert_eq(count_entries(priv), 0);
}

Test(loader, a_missing_descriptor_names_the_file_and_how_to_export_it)
{
    plugin_lib_t *lib = NULL;
    cr_assert_eq(plugin_lib_open(MISSING_SYMBOL_SO, priv, &lib, err, sizeof err), -1);
    cr_assert_str_eq(err, MISSING_SYMBOL_SO ": missing symbol evbus_plugin_descriptor: the "
                          "library exports no function of that name; define it with "
                          "EVBUS_PLUGIN() from <evbus/plugin.h>, or mark it EVBUS_PLUGIN_EXPORT "
                          "when building with -fvisibility=hidden");
    cr_assert_eq(count_entries(priv), 0);
}

Test(loader, reports_a_missing_file_by_its_path)
{
    char path[600];
    snprintf(path, sizeof path, "%s/nope.so", tmp);
    plugin_lib_t *lib = NULL;
    cr_assert_eq(plugin_lib_open(path, priv, &lib, err, sizeof err), -1);
    cr_assert_eq(strncmp(err, path, strlen(path)), 0, "got: %s", err);
    cr_assert_not_null(strstr(err, "No such file"), "got: %s", err);
}

Test(loader, reports_a_file_that_is_not_a_shared_object)
{
    cr_assert_eq(harness_write_file(tmp, "junk.so", "not an ELF file\n"), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/junk.so", tmp);
    plugin_lib_t *lib = NULL;
    cr_assert_eq(plugin_lib_open(path, priv, &lib, err, sizeof err), -1);
    char want[700];
    snprintf(want, sizeof want, "%s: dlopen failed: ", path);
    cr_assert_eq(strncmp(err, want, strlen(want)), 0, "got: %s", err);
    cr_assert(strlen(err) > strlen(want), "the loader's reason must follow: %s", err);
    cr_assert_null(strstr(err, priv), "the private copy is no name for the operator: %s", err);
    cr_assert_eq(count_entries(priv), 0, "a failed open leaves no copy behind");
}

static void expect_refused(const char *path, const char *what)
{
    plugin_lib_t *lib = NULL;
    cr_assert_eq(plugin_lib_open(path, priv, &lib, err, sizeof err), -1, "%s loaded", path);
    cr_assert_null(lib);
    char want[1200];
    snprintf(want, sizeof want, "%s: %s", path, what);
    cr_assert_str_eq(err, want);
    cr_assert_eq(count_entries(priv), 0);
}

Test(loader, refuses_descriptors_that_break_a_rule)
{
    char want[200];
    expect_refused(BAD_PATTERN_SO, "subscriber 'main': invalid pattern 'approval..x': "
                                   "empty segment at offset 9");
    expect_refused(DUP_SUBSCRIBER_SO, "subscriber name 'main' is used twice (0 and 1)");
    expect_refused(BAD_RESERVED_SO, "descriptor reserved[5] is not zero");
    expect_refused(BAD_CONFIG_MAP_SO, "config key 'mode': EVBUS_CONFIG_ENUM needs enum_values");
    expect_refused(CONFIG_MAP_NO_FLAG_SO,
                   "config_map is set but flags lack EVBUS_PLUGIN_F_CONFIG_MAP");
    snprintf(want, sizeof want,
             "descriptor struct_size is 24 bytes, ABI version 1 needs at least %zu",
             sizeof(evbus_plugin_descriptor_t));
    expect_refused(SMALL_STRUCT_SO, want);
}

/* plugins/testkit/minimal.c is written with the macros of <evbus/plugin.h>
 * and nothing else: they fill in what the loader checks. */
Test(loader, a_plugin_written_with_the_macros_only_loads)
{
    plugin_lib_t *lib = open_ok(MINIMAL_SO);
    const evbus_plugin_descriptor_t *d = plugin_lib_descriptor(lib);
    cr_assert_eq(d->abi_version, EVBUS_ABI_VERSION);
    cr_assert_eq(d->struct_size, sizeof(evbus_plugin_descriptor_t));
    cr_assert_eq(d->flags, EVBUS_PLUGIN_F_HANDLER_API);
    cr_assert_str_eq(d->name, "minimal");
    cr_assert_str_eq(d->version, "1.0.0");
    cr_assert_eq(d->n_subscribers, 1, "EVBUS_SUBSCRIBERS counts the array");
    cr_assert_str_eq(d->subscribers[0].name, "main");
    cr_assert_str_eq(d->subscribers[0].pattern, "approval.**");
    cr_assert_eq(d->subscribers[0].priority, 100);
    cr_assert_eq(d->n_upcasters, 0);
    cr_assert_eq(d->n_config_map, 0);
    plugin_instance_t *inst = new_ok(lib, "mini", "{}");
    evbus_event_t ev = {.id = "e1", .type = "approval.x"};
    cr_assert_eq(plugin_instance_call(inst, &d->subscribers[0], &ev), EVBUS_OK);
    cr_assert_eq(plugin_instance_call(inst, &d->subscribers[0], &ev), EVBUS_OK);
    cr_assert_eq(*(long *)plugin_instance_state(inst), 2);
    plugin_instance_free(inst);
    plugin_lib_close(lib);
}

/* EVBUS_COUNT() of a pointer does not compile (meson tries it at setup). */
Test(loader, evbus_count_refuses_a_pointer_at_compile_time)
{
    cr_assert_eq(EVBUS_COUNT_OF_ARRAY_COMPILES, 1, "the control case must compile");
    cr_assert_eq(EVBUS_COUNT_OF_POINTER_COMPILES, 0, "EVBUS_COUNT(pointer) compiled");
}

/* The copy folder is made mode 0700, and a folder another user could
 * write to is refused before anything is copied into it (OpenSSH's rule
 * for ~/.ssh; util/private_dir.h). */
Test(loader, the_copy_folder_is_made_private_and_refused_when_others_may_write)
{
    plugin_lib_close(open_ok(MINIMAL_SO));
    struct stat st;
    cr_assert_eq(stat(priv, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0700, "made with mode %o", st.st_mode & 07777);

    cr_assert_eq(chmod(priv, 0770), 0);
    plugin_lib_t *lib = NULL;
    cr_assert_eq(plugin_lib_open(MINIMAL_SO, priv, &lib, err, sizeof err), -1);
    char want[2048];
    snprintf(want, sizeof want, MINIMAL_SO ": plugin copy folder %s is writable by group or "
             "others (mode 0770); plugin copies are loaded from it: chmod go-w %s", priv, priv);
    cr_assert_str_eq(err, want);
    cr_assert_eq(count_entries(priv), 0, "nothing was copied into it");
    cr_assert_eq(chmod(priv, 0700), 0);
    plugin_lib_close(open_ok(MINIMAL_SO));

    char file[600];
    snprintf(file, sizeof file, "%s/not-a-dir", tmp);
    cr_assert_eq(harness_write_file(tmp, "not-a-dir", ""), 0);
    cr_assert_eq(plugin_lib_open(MINIMAL_SO, file, &lib, err, sizeof err), -1);
    snprintf(want, sizeof want, MINIMAL_SO ": plugin copy folder %s is not a directory", file);
    cr_assert_str_eq(err, want);
}

Test(loader, a_copy_folder_of_another_user_is_refused)
{
    plugin_lib_close(open_ok(MINIMAL_SO));
    if (chown(priv, geteuid() + 4242, (gid_t)-1) != 0)
        cr_skip_test("cannot give %s away (not root): %s", priv, strerror(errno));
    plugin_lib_t *lib = NULL;
    cr_assert_eq(plugin_lib_open(MINIMAL_SO, priv, &lib, err, sizeof err), -1);
    char want[2048];
    unsigned long me = (unsigned long)geteuid();
    snprintf(want, sizeof want, MINIMAL_SO ": plugin copy folder %s is owned by uid %lu, not by "
             "uid %lu that evbusd runs as: chown %lu %s, or run evbusd as uid %lu", priv,
             me + 4242, me, me, priv, me + 4242);
    cr_assert_str_eq(err, want);
}

Test(loader, a_replaced_file_loads_its_new_code_next_to_the_old)
{
    char path[600];
    snprintf(path, sizeof path, "%s/testkit.so", tmp);
    copy_file(TESTKIT_SO, path);
    plugin_lib_t *v1 = open_ok(path);
    copy_file(TESTKIT_V2_SO, path);
    plugin_lib_t *v2 = open_ok(path);
    cr_assert_str_eq(plugin_lib_descriptor(v1)->version, "1.0.0");
    cr_assert_str_eq(plugin_lib_descriptor(v2)->version, "2.0.0");
    cr_assert_neq(memcmp(plugin_lib_digest(v1), plugin_lib_digest(v2), PLUGIN_DIGEST_LEN), 0);
    plugin_lib_close(v1);
    plugin_lib_close(v2);
}

Test(loader, an_overwritten_file_in_place_also_loads_new_code)
{
    char path[600], cmd[1400];
    snprintf(path, sizeof path, "%s/same-inode.so", tmp);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", TESTKIT_SO, path);
    cr_assert_eq(system(cmd), 0);
    plugin_lib_t *v1 = open_ok(path);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", TESTKIT_V2_SO, path);
    cr_assert_eq(system(cmd), 0);
    plugin_lib_t *v2 = open_ok(path);
    cr_assert_str_eq(plugin_lib_descriptor(v1)->version, "1.0.0");
    cr_assert_str_eq(plugin_lib_descriptor(v2)->version, "2.0.0");
    plugin_lib_close(v2);
    plugin_lib_close(v1);
}

Test(loader, file_identity_tells_same_from_changed_content)
{
    plugin_file_id_t a, b, c;
    cr_assert_eq(plugin_file_identify(TESTKIT_SO, &a, err, sizeof err), 0);
    cr_assert_eq(plugin_file_identify(TESTKIT_SO, &b, err, sizeof err), 0);
    cr_assert_eq(plugin_file_identify(TESTKIT_V2_SO, &c, err, sizeof err), 0);
    cr_assert(plugin_file_same_content(&a, &b));
    cr_assert_not(plugin_file_same_content(&a, &c));
}

/* ---- instances ---------------------------------------------------------- */

Test(instance, init_failure_names_instance_path_and_plugin_message)
{
    plugin_lib_t *lib = open_ok(INIT_FAIL_SO);
    plugin_instance_t *inst = NULL;
    cr_assert_eq(plugin_instance_new(lib, "broken", "{}", &fake_host_api, 0, &inst, err,
                                     sizeof err),
                 -1);
    cr_assert_null(inst);
    cr_assert_str_eq(err, "instance 'broken' (" INIT_FAIL_SO
                          "): init failed: init refused: missing 'path'");
    plugin_lib_close(lib);
}

Test(instance, init_failure_without_a_message_says_so)
{
    plugin_lib_t *lib = open_ok(INIT_FAIL_SO);
    plugin_instance_t *inst = NULL;
    cr_assert_eq(plugin_instance_new(lib, "quiet", "{\"silent\":true}", &fake_host_api, 0, &inst,
                                     err, sizeof err),
                 -1);
    cr_assert_null(inst);
    cr_assert_str_eq(err, "instance 'quiet' (" INIT_FAIL_SO "): init failed (returned 3) and "
                          "gave no message");
    plugin_lib_close(lib);
}

Test(instance, two_instances_of_one_plugin_keep_their_own_config)
{
    plugin_lib_t *lib = open_ok(TESTKIT_SO);
    char cfg_a[800], cfg_b[800], out_a[600], out_b[600];
    snprintf(out_a, sizeof out_a, "%s/a.tsv", tmp);
    snprintf(out_b, sizeof out_b, "%s/b.tsv", tmp);
    snprintf(cfg_a, sizeof cfg_a, "{\"out\":\"%s\",\"tag\":\"alpha\"}", out_a);
    snprintf(cfg_b, sizeof cfg_b, "{\"out\":\"%s\",\"tag\":\"beta\"}", out_b);
    plugin_instance_t *a = new_ok(lib, "rec-a", cfg_a);
    plugin_instance_t *b = new_ok(lib, "rec-b", cfg_b);
    cr_assert_neq(plugin_instance_state(a), plugin_instance_state(b));
    cr_assert_str_eq(plugin_instance_config(a), cfg_a);

    evbus_event_t ev = {.id = "e1", .type = "approval.item.approved",
                        .data_json = "{\"k\":1}", .schema_version = 2, .attempt = 1};
    const evbus_subscriber_t *rec = plugin_instance_find_subscriber(a, NULL);
    cr_assert_str_eq(rec->name, "record");
    cr_assert_eq(plugin_instance_find_subscriber(a, "record"), rec);
    cr_assert_null(plugin_instance_find_subscriber(a, "nope"));
    cr_assert_eq(plugin_instance_call(a, rec, &ev), EVBUS_OK);
    ev.id = "e2";
    ev.is_replay = 1;
    cr_assert_eq(plugin_instance_call(b, rec, &ev), EVBUS_OK);
    plugin_instance_free(a);
    plugin_instance_free(b);
    plugin_lib_close(lib);

    char *ta = harness_read_file(out_a), *tb = harness_read_file(out_b);
    cr_assert_str_eq(ta, "rec-a\talpha\te1\tapproval.item.approved\t0\t2\t{\"k\":1}\n");
    cr_assert_str_eq(tb, "rec-b\tbeta\te2\tapproval.item.approved\t1\t2\t{\"k\":1}\n");
    free(ta);
    free(tb);
}

static const char *seen_current;
static const evbus_host_api_t *seen_api;
static evbus_result_t returns_seven(const evbus_host_api_t *api, const evbus_event_t *ev,
                                    void *state)
{
    (void)ev;
    (void)state;
    seen_current = plugin_current();
    seen_api = api;
    return (evbus_result_t)7;
}

Test(instance, call_sets_current_instance_and_maps_unknown_results_to_retry)
{
    plugin_lib_t *lib = open_ok(MINIMAL_SO);
    plugin_instance_t *inst = new_ok(lib, "mini", NULL);
    cr_assert_str_eq(plugin_instance_config(inst), "{}");
    /* minimal is built with EVBUS_PLUGIN(): its rows hold handler_api */
    evbus_subscriber_t odd = EVBUS_SUBSCRIBER("odd", "**", 0, returns_seven);
    evbus_event_t ev = {.id = "e1", .type = "approval.x"};
    plugin_set_current("outer");
    cr_assert_eq(plugin_instance_call(inst, &odd, &ev), EVBUS_RETRY);
    cr_assert_str_eq(seen_current, "mini");
    cr_assert_eq(seen_api, &fake_host_api, "the handler gets the table init() got");
    cr_assert_str_eq(plugin_current(), "outer", "the caller's current name is restored");
    plugin_set_current(NULL);
    plugin_instance_free(inst);
    plugin_lib_close(lib);
}

Test(instance, library_stays_loaded_until_its_last_instance_is_freed)
{
    plugin_lib_t *lib = open_ok(MINIMAL_SO);
    plugin_instance_t *inst = new_ok(lib, "mini", "{}");
    plugin_lib_close(lib); /* the instance still holds a reference */
    evbus_event_t ev = {.id = "e1", .type = "approval.x"};
    const evbus_subscriber_t *sub = plugin_instance_find_subscriber(inst, NULL);
    cr_assert_eq(plugin_instance_call(inst, sub, &ev), EVBUS_OK);
    cr_assert_eq(*(long *)plugin_instance_state(inst), 1);
    plugin_instance_free(inst);
}

Test(instance, keep_state_adoption_shares_state_and_finis_once)
{
    plugin_lib_t *lib = open_ok(LOG_SO);
    plugin_instance_t *old = new_ok(lib, "logger", "{\"level\":\"warn\"}");
    plugin_file_id_t id;
    cr_assert_eq(plugin_file_identify(LOG_SO, &id, err, sizeof err), 0);
    cr_assert(plugin_instance_can_adopt(old, "logger", &id, "{\"level\":\"warn\"}"));
    cr_assert_not(plugin_instance_can_adopt(old, "logger", &id, "{\"level\":\"info\"}"));
    cr_assert_not(plugin_instance_can_adopt(old, "other", &id, "{\"level\":\"warn\"}"));
    plugin_file_id_t other;
    cr_assert_eq(plugin_file_identify(TESTKIT_SO, &other, err, sizeof err), 0);
    cr_assert_not(plugin_instance_can_adopt(old, "logger", &other, "{\"level\":\"warn\"}"));

    plugin_instance_t *neu = NULL;
    cr_assert_eq(plugin_instance_adopt(old, &neu, err, sizeof err), 0, "%s", err);
    cr_assert_eq(plugin_instance_state(neu), plugin_instance_state(old));
    plugin_lib_close(lib);
    plugin_instance_free(old); /* must not fini the shared state */
    evbus_event_t ev = {.id = "e9", .type = "approval.item.approved", .attempt = 1};
    cr_assert_eq(plugin_instance_call(neu, plugin_instance_find_subscriber(neu, NULL), &ev),
                 EVBUS_OK);
    cr_assert_not_null(strstr(fake_host_log(), "WARN logger: event approval.item.approved id=e9"),
                       "log: %s", fake_host_log());
    plugin_instance_free(neu);
}

Test(instance, adoption_is_refused_without_keep_state)
{
    plugin_lib_t *lib = open_ok(MINIMAL_SO);
    plugin_instance_t *inst = new_ok(lib, "mini", "{}"), *neu = NULL;
    plugin_file_id_t id;
    cr_assert_eq(plugin_file_identify(MINIMAL_SO, &id, err, sizeof err), 0);
    cr_assert_not(plugin_instance_can_adopt(inst, "mini", &id, "{}"));
    cr_assert_eq(plugin_instance_adopt(inst, &neu, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "does not set KEEP_STATE"), "got: %s", err);
    plugin_instance_free(inst);
    plugin_lib_close(lib);
}

/* ---- file-sink ---------------------------------------------------------- */

Test(file_sink, appends_each_raw_event_as_one_line)
{
    plugin_lib_t *lib = open_ok(FILE_SINK_SO);
    char cfg[800], out[600];
    snprintf(out, sizeof out, "%s/events.jsonl", tmp);
    snprintf(cfg, sizeof cfg, "{\"path\":\"%s\",\"fsync\":\"always\"}", out);
    plugin_instance_t *inst = new_ok(lib, "sink", cfg);
    const evbus_subscriber_t *sub = plugin_instance_find_subscriber(inst, NULL);
    evbus_event_t e1 = {.id = "1", .type = "a.b", .raw = "{\"id\":\"1\"}"};
    evbus_event_t e2 = {.id = "2", .type = "a.b", .raw = "{\n  \"id\": \"2\"\n}"};
    cr_assert_eq(plugin_instance_call(inst, sub, &e1), EVBUS_OK);
    cr_assert_eq(plugin_instance_call(inst, sub, &e2), EVBUS_OK);
    char *text = harness_read_file(out);
    cr_assert_str_eq(text, "{\"id\":\"1\"}\n{   \"id\": \"2\" }\n");
    free(text);
    plugin_instance_free(inst);
    plugin_lib_close(lib);
}

Test(file_sink, byte_buffer_holds_lines_until_full_or_fini)
{
    plugin_lib_t *lib = open_ok(FILE_SINK_SO);
    char cfg[800], out[600];
    snprintf(out, sizeof out, "%s/buffered.jsonl", tmp);
    snprintf(cfg, sizeof cfg, "{\"path\":\"%s\",\"buffer\":64}", out);
    plugin_instance_t *inst = new_ok(lib, "sink", cfg);
    const evbus_subscriber_t *sub = plugin_instance_find_subscriber(inst, NULL);
    evbus_event_t ev = {.id = "1", .type = "a.b", .raw = "{\"id\":\"1\"}"};
    cr_assert_eq(plugin_instance_call(inst, sub, &ev), EVBUS_OK);
    cr_assert_eq(harness_count_lines(out), 0, "one short line stays in the buffer");
    for (int i = 0; i < 6; i++)
        cr_assert_eq(plugin_instance_call(inst, sub, &ev), EVBUS_OK);
    cr_assert_geq(harness_count_lines(out), 5, "a full buffer is written out");
    plugin_instance_free(inst);
    cr_assert_eq(harness_count_lines(out), 7, "fini flushes the rest");
    plugin_lib_close(lib);
}

/* A handler returns OK once its line is buffered, so a quiet stream must
 * not leave the last lines in memory: the instance's thread writes them
 * out after flush_interval_ms without waiting for another event. */
Test(file_sink, a_buffered_line_is_written_after_the_flush_interval_without_more_events)
{
    plugin_lib_t *lib = open_ok(FILE_SINK_SO);
    char cfg[800], out[600];
    snprintf(out, sizeof out, "%s/quiet.jsonl", tmp);
    snprintf(cfg, sizeof cfg,
             "{\"path\":\"%s\",\"buffer\":65536,\"flush_interval_ms\":100,"
             "\"fsync\":\"interval\",\"fsync_interval_ms\":100}",
             out);
    plugin_instance_t *inst = new_ok(lib, "sink", cfg);
    const evbus_subscriber_t *sub = plugin_instance_find_subscriber(inst, NULL);
    evbus_event_t ev = {.id = "1", .type = "a.b", .raw = "{\"id\":\"1\"}"};
    cr_assert_eq(plugin_instance_call(inst, sub, &ev), EVBUS_OK);
    cr_assert_eq(harness_count_lines(out), 0, "the line is buffered at first");
    long long deadline = harness_now_ms() + 5000;
    while (harness_count_lines(out) == 0 && harness_now_ms() < deadline)
        usleep(20 * 1000);
    cr_assert_eq(harness_count_lines(out), 1, "the buffered line was not written within 5 s");
    plugin_instance_free(inst); /* stops the thread, then flushes nothing more */
    cr_assert_eq(harness_count_lines(out), 1);
    plugin_lib_close(lib);
}

Test(file_sink, refuses_a_second_instance_on_the_same_file)
{
    plugin_lib_t *lib = open_ok(FILE_SINK_SO);
    char cfg[800], out[600], alias[800];
    snprintf(out, sizeof out, "%s/shared.jsonl", tmp);
    snprintf(cfg, sizeof cfg, "{\"path\":\"%s\"}", out);
    plugin_instance_t *first = new_ok(lib, "first", cfg);
    /* Spelled differently, same file: the registry compares inodes. */
    snprintf(alias, sizeof alias, "{\"path\":\"%s/./shared.jsonl\"}", tmp);
    plugin_instance_t *second = NULL;
    cr_assert_eq(plugin_instance_new(lib, "second", alias, &fake_host_api, 0, &second, err,
                                     sizeof err),
                 -1);
    cr_assert_not_null(strstr(err, "instance 'second' ("), "got: %s", err);
    cr_assert_not_null(strstr(err, "is already written by instance 'first'"), "got: %s", err);
    plugin_instance_free(first);
    /* Once the first is gone the file is free again. */
    second = new_ok(lib, "second", alias);
    plugin_instance_free(second);
    plugin_lib_close(lib);
}

Test(file_sink, its_config_map_requires_a_path_and_checks_fsync_and_intervals)
{
    plugin_lib_t *lib = open_ok(FILE_SINK_SO);
    plugin_instance_t *inst = NULL;
    cr_assert_eq(plugin_instance_new(lib, "s", "{\"fsync\":\"always\"}", &fake_host_api, 0, &inst,
                                     err, sizeof err),
                 -1);
    cr_assert_str_eq(err, "instance 's' (" FILE_SINK_SO "): missing required key 'path' in "
                          "config of plugin instance 's' (the file to append events to)");
    cr_assert_eq(plugin_instance_new(lib, "s", "{\"path\":\"/tmp/x\",\"fsync\":\"sometimes\"}",
                                     &fake_host_api, 0, &inst, err, sizeof err),
                 -1);
    cr_assert_str_eq(err, "instance 's' (" FILE_SINK_SO "): config.fsync: expected one of "
                          "never|always|interval, got 'sometimes'");
    cr_assert_eq(plugin_instance_new(lib, "s", "{\"path\":\"/tmp/x\",\"flush_interval_ms\":0}",
                                     &fake_host_api, 0, &inst, err, sizeof err),
                 -1);
    cr_assert_str_eq(err, "instance 's' (" FILE_SINK_SO "): config.flush_interval_ms: must be "
                          "between 1 and 86400000, got 0");
    cr_assert_eq(plugin_instance_new(lib, "s", "{\"path\":\"\"}", &fake_host_api, 0, &inst, err,
                                     sizeof err),
                 -1);
    cr_assert_not_null(strstr(err, "init failed: 'path' must not be empty"), "got: %s", err);
    plugin_lib_close(lib);
}

/* A check (EVBUS_INIT_CHECK) tells what it can and leaves no file behind. */
Test(file_sink, a_check_creates_nothing_but_reports_what_cannot_be_opened)
{
    plugin_lib_t *lib = open_ok(FILE_SINK_SO);
    char cfg[800], out[600];
    snprintf(out, sizeof out, "%s/never.jsonl", tmp);
    snprintf(cfg, sizeof cfg, "{\"path\":\"%s\",\"buffer\":4096,\"fsync\":\"interval\"}", out);
    check_leaves_no_trace(lib, cfg, out);

    plugin_instance_t *inst = NULL;
    snprintf(out, sizeof out, "%s/missing/never.jsonl", tmp);
    snprintf(cfg, sizeof cfg, "{\"path\":\"%s\"}", out);
    cr_assert_eq(plugin_instance_new(lib, "sink", cfg, &fake_host_api, EVBUS_INIT_CHECK, &inst,
                                     err, sizeof err),
                 -1);
    char want[2048];
    snprintf(want, sizeof want, "instance 'sink' (%s): init failed: %s: cannot be created in "
             "%s/missing: No such file or directory", FILE_SINK_SO, out, tmp);
    cr_assert_str_eq(err, want);

    /* a file that exists is known by its inode, as in a real start */
    snprintf(out, sizeof out, "%s/exists.jsonl", tmp);
    cr_assert_eq(harness_write_file(tmp, "exists.jsonl", ""), 0);
    snprintf(cfg, sizeof cfg, "{\"path\":\"%s\"}", out);
    plugin_instance_t *first = NULL, *second = NULL;
    cr_assert_eq(plugin_instance_new(lib, "first", cfg, &fake_host_api, EVBUS_INIT_CHECK, &first,
                                     err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(plugin_instance_new(lib, "second", cfg, &fake_host_api, EVBUS_INIT_CHECK,
                                     &second, err, sizeof err),
                 -1);
    cr_assert_not_null(strstr(err, "is already written by instance 'first'"), "got: %s", err);
    plugin_instance_free(first);
    plugin_lib_close(lib);
}

/* ---- chaos -------------------------------------------------------------- */

static plugin_instance_t *chaos_new(plugin_lib_t *lib, char *count_path, size_t len)
{
    char cfg[800];
    snprintf(count_path, len, "%s/calls.txt", tmp);
    snprintf(cfg, sizeof cfg, "{\"count_file\":\"%s\"}", count_path);
    return new_ok(lib, "chaos-1", cfg);
}

Test(chaos, retry_n_retries_while_attempt_is_at_most_n)
{
    plugin_lib_t *lib = open_ok(CHAOS_SO);
    char count[600];
    plugin_instance_t *inst = chaos_new(lib, count, sizeof count);
    const evbus_subscriber_t *sub = plugin_instance_find_subscriber(inst, NULL);
    evbus_event_t ev = {.id = "ev-7", .type = "a.b", .data_json = "{\"fault\":\"retry:2\"}"};
    ev.attempt = 1;
    cr_assert_eq(plugin_instance_call(inst, sub, &ev), EVBUS_RETRY);
    cr_assert_str_eq(ev.reason, "data.fault asks for 2 retries; this was attempt 1");
    ev.attempt = 2;
    cr_assert_eq(plugin_instance_call(inst, sub, &ev), EVBUS_RETRY);
    cr_assert_str_eq(ev.reason, "data.fault asks for 2 retries; this was attempt 2");
    ev.attempt = 3;
    cr_assert_eq(plugin_instance_call(inst, sub, &ev), EVBUS_OK);
    char *text = harness_read_file(count);
    cr_assert_str_eq(text, "chaos-1 ev-7 1 RETRY\nchaos-1 ev-7 2 RETRY\nchaos-1 ev-7 3 OK\n");
    free(text);
    plugin_instance_free(inst);
    plugin_lib_close(lib);
}

Test(chaos, reject_no_fault_unknown_fault_and_sleep)
{
    plugin_lib_t *lib = open_ok(CHAOS_SO);
    plugin_instance_t *inst = new_ok(lib, "c", "{}");
    const evbus_subscriber_t *sub = plugin_instance_find_subscriber(inst, NULL);
    evbus_event_t ev = {.id = "1", .type = "a.b", .attempt = 1};
    ev.data_json = "{\"fault\":\"reject\"}";
    cr_assert_eq(plugin_instance_call(inst, sub, &ev), EVBUS_REJECT);
    cr_assert_str_eq(ev.reason, "data.fault asks for a rejection");
    ev.data_json = "{\"amount\":3}";
    cr_assert_eq(plugin_instance_call(inst, sub, &ev), EVBUS_OK);
    ev.data_json = NULL;
    cr_assert_eq(plugin_instance_call(inst, sub, &ev), EVBUS_OK);
    ev.data_json = "{\"fault\":\"explode\"}";
    cr_assert_eq(plugin_instance_call(inst, sub, &ev), EVBUS_REJECT);
    cr_assert_str_eq(ev.reason, "unknown data.fault 'explode'");
    ev.data_json = "{\"fault\":7}";
    cr_assert_eq(plugin_instance_call(inst, sub, &ev), EVBUS_REJECT);
    cr_assert_str_eq(ev.reason, "data.fault is not a string");
    ev.data_json = "{\"fault\":\"sleep:60\"}";
    long long t0 = harness_now_ms();
    cr_assert_eq(plugin_instance_call(inst, sub, &ev), EVBUS_OK);
    cr_assert_geq(harness_now_ms() - t0, 60);
    plugin_instance_free(inst);
    plugin_lib_close(lib);
}

Test(chaos, crash_aborts_after_counting_the_call, .signal = SIGABRT)
{
    plugin_lib_t *lib = open_ok(CHAOS_SO);
    char count[600];
    plugin_instance_t *inst = chaos_new(lib, count, sizeof count);
    evbus_event_t ev = {.id = "boom", .type = "a.b", .attempt = 1,
                        .data_json = "{\"fault\":\"crash\"}"};
    plugin_instance_call(inst, plugin_instance_find_subscriber(inst, NULL), &ev);
}

/* ---- log, testkit upcaster, bench-counter -------------------------------- */

Test(bundled, log_plugin_formats_its_template_at_its_level)
{
    plugin_lib_t *lib = open_ok(LOG_SO);
    plugin_instance_t *inst =
        new_ok(lib, "audit", "{\"level\":\"error\",\"format\":\"{type}/{id} v{version} {data} {nope}\"}");
    evbus_event_t ev = {.id = "42", .type = "a.b", .schema_version = 2,
                        .data_json = "{\"x\":true}"};
    cr_assert_eq(plugin_instance_call(inst, plugin_instance_find_subscriber(inst, NULL), &ev),
                 EVBUS_OK);
    cr_assert_str_eq(fake_host_log(), "ERROR audit: a.b/42 v2 {\"x\":true} {nope}\n");
    plugin_instance_t *bad = NULL;
    cr_assert_eq(plugin_instance_new(lib, "b", "{\"level\":\"loud\"}", &fake_host_api, 0, &bad, err,
                                     sizeof err),
                 -1);
    cr_assert_str_eq(err, "instance 'b' (" LOG_SO "): config.level: expected one of "
                          "debug|info|warn|error, got 'loud'");
    plugin_instance_free(inst);
    plugin_lib_close(lib);
}

/* api->init_flags() is EVBUS_INIT_CHECK in init() and fini() of a checked
 * instance, so even a report written at fini is left out. */
Test(bundled, a_checked_instance_sees_the_flag_in_init_and_fini)
{
    plugin_lib_t *lib = open_ok(TESTKIT_SO);
    char cfg[800], out[600];
    snprintf(out, sizeof out, "%s/rec.tsv", tmp);
    snprintf(cfg, sizeof cfg, "{\"out\":\"%s\"}", out);
    check_leaves_no_trace(lib, cfg, out);
    cr_assert_str_eq(fake_host_log(), "INFO checked: testkit 1.0.0 checked\n"
                                      "INFO checked: testkit 1.0.0 check done\n");
    plugin_lib_close(lib);

    /* bench-counter writes its report at fini, except after a check */
    lib = open_ok(BENCH_COUNTER_SO);
    char report[600];
    snprintf(report, sizeof report, "%s/count.txt", tmp);
    snprintf(cfg, sizeof cfg, "{\"report_file\":\"%s\"}", report);
    check_leaves_no_trace(lib, cfg, report);
    plugin_lib_close(lib);
}

/* The installed template (share/evbus/plugin-template) works as its
 * comments say: a line per event, a reason when it fails, no trace on a
 * check. */
Test(bundled, the_plugin_template_loads_records_and_checks)
{
    plugin_lib_t *lib = open_ok(TEMPLATE_EXAMPLE_SO);
    char cfg[800], out[600];
    snprintf(out, sizeof out, "%s/seen.txt", tmp);
    snprintf(cfg, sizeof cfg, "{\"path\":\"%s\"}", out);
    check_leaves_no_trace(lib, cfg, out);

    plugin_instance_t *inst = new_ok(lib, "seen", cfg);
    evbus_event_t ev = {.id = "e1", .type = "approval.item.approved"};
    const evbus_subscriber_t *sub = plugin_instance_find_subscriber(inst, NULL);
    cr_assert_eq(plugin_instance_call(inst, sub, &ev), EVBUS_OK);
    char *text = harness_read_file(out);
    cr_assert_str_eq(text, "approval.item.approved e1\n");
    free(text);
    char long_id[600];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    ev.id = long_id;
    cr_assert_eq(plugin_instance_call(inst, sub, &ev), EVBUS_REJECT);
    cr_assert_str_eq(ev.reason, "the type and id do not fit in 512 bytes");
    plugin_instance_free(inst);
    cr_assert_eq(plugin_instance_new(lib, "bad", "{}", &fake_host_api, 0, &inst, err, sizeof err),
                 -1);
    cr_assert_str_eq(err, "instance 'bad' (" TEMPLATE_EXAMPLE_SO "): missing required key 'path' "
                          "in config of plugin instance 'bad' (the file that gets one line per "
                          "event)");
    plugin_lib_close(lib);
}

static char *upcast(const evbus_plugin_descriptor_t *d, const char *in, int *rc)
{
    evbus_buf_t buf = {0};
    char uerr[256] = "";
    cr_assert_eq(d->n_upcasters, 1);
    cr_assert_str_eq(d->upcasters[0].type, "approval.item.approved");
    cr_assert_eq(d->upcasters[0].from_version, 1);
    *rc = d->upcasters[0].upcast(&fake_host_api, in, strlen(in), &buf, uerr, sizeof uerr);
    if (*rc != 0) {
        free(buf.bytes);
        return strdup(uerr);
    }
    return buf.bytes;
}

Test(bundled, testkit_upcasts_approved_v1_to_v2)
{
    plugin_lib_t *lib = open_ok(TESTKIT_SO);
    int rc;
    char *out = upcast(plugin_lib_descriptor(lib),
                       "{\"approvalId\":\"a1\",\"spaceId\":\"s1\",\"approverId\":\"u1\","
                       "\"comment\":\"ok\"}",
                       &rc);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_str_eq(out, "{\"approvalId\":\"a1\",\"spaceId\":\"s1\",\"comment\":\"ok\","
                          "\"decidedBy\":{\"id\":\"u1\",\"kind\":\"user\"},"
                          "\"decisionAt\":\"1970-01-01T00:00:00Z\"}");
    free(out);
    out = upcast(plugin_lib_descriptor(lib), "{\"approvalId\":\"a1\"}", &rc);
    cr_assert_eq(rc, -1);
    cr_assert_str_eq(out, "v1 data has no string approverId");
    free(out);
    plugin_lib_close(lib);
}

Test(bundled, bench_counter_counts_all_three_subscribers_and_reports_at_fini)
{
    plugin_lib_t *lib = open_ok(BENCH_COUNTER_SO);
    const evbus_plugin_descriptor_t *d = plugin_lib_descriptor(lib);
    cr_assert_eq(d->n_subscribers, 3);
    cr_assert_eq(d->subscribers[0].priority, 1);
    cr_assert_eq(d->subscribers[1].priority, 10);
    cr_assert_eq(d->subscribers[2].priority, 100);
    char cfg[800], report[600];
    snprintf(report, sizeof report, "%s/count.txt", tmp);
    snprintf(cfg, sizeof cfg, "{\"report_file\":\"%s\"}", report);
    plugin_instance_t *inst = new_ok(lib, "bench", cfg);
    evbus_event_t ev = {.id = "1", .type = "approval.item.requested"};
    for (size_t i = 0; i < d->n_subscribers; i++)
        cr_assert_eq(plugin_instance_call(inst, &d->subscribers[i], &ev), EVBUS_OK);
    plugin_instance_free(inst);
    char *text = harness_read_file(report);
    cr_assert_str_eq(text, "3\n");
    free(text);
    plugin_lib_close(lib);
}

/* ---- config maps ---------------------------------------------------------- */

/*
 * Writes `yaml` as conf.d/10-audit.yaml (each %s is the plugin path `so`),
 * loads it and checks every instance's config against its plugin, as a
 * generation build does.  The problems are in cerrs.
 */
static void load_and_check(const char *so, const char *yaml)
{
    char text[4096];
    snprintf(text, sizeof text, yaml, so, so, so);
    snprintf(confd, sizeof confd, "%s/conf.d", tmp);
    cr_assert_eq(mkdir(confd, 0755), 0);
    cr_assert_eq(harness_write_file(confd, "10-audit.yaml", text), 0);
    loaded = config_load(confd, &cerrs);
    cr_assert_not_null(loaded, "config: %s", cerrs.count ? cerrs.msgs[0] : "?");
    plugin_lib_t *lib = open_ok(so);
    for (size_t i = 0; i < loaded->n_instances; i++)
        plugin_config_check(lib, &loaded->instances[i], &cerrs);
    plugin_lib_close(lib);
}

/* Asserts that cerrs holds exactly these lines; %s in each is conf.d. */
static void expect_problems(size_t n, ...)
{
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        char want[1024];
        snprintf(want, sizeof want, va_arg(ap, const char *), confd);
        if (i < cerrs.count)
            cr_expect_str_eq(cerrs.msgs[i], want, "problem %zu", i);
        else
            cr_expect_fail("missing problem %zu: %s", i, want);
    }
    va_end(ap);
    for (size_t i = n; i < cerrs.count; i++)
        cr_expect_fail("unexpected problem: %s", cerrs.msgs[i]);
}

Test(config_map, an_unknown_key_is_reported_at_the_key_with_the_valid_ones)
{
    load_and_check(FILE_SINK_SO, "plugins:\n"
                                 "  - name: audit\n"
                                 "    plugin: %s\n"
                                 "    config:\n"
                                 "      path: /tmp/audit.jsonl\n"
                                 "      fsnyc: always\n");
    expect_problems(1, "%s/10-audit.yaml:6:7: unknown key 'fsnyc' in config of plugin instance "
                       "'audit' (valid: path, buffer, flush_interval_ms, fsync, "
                       "fsync_interval_ms)");
}

Test(config_map, a_value_of_the_wrong_type_is_reported_at_the_value)
{
    load_and_check(FILE_SINK_SO, "plugins:\n"
                                 "  - name: audit\n"
                                 "    plugin: %s\n"
                                 "    config:\n"
                                 "      path: 12\n"
                                 "      buffer: true\n"
                                 "      fsync: [always]\n");
    expect_problems(3, "%s/10-audit.yaml:5:13: config.path: expected a string, got 12",
                    "%s/10-audit.yaml:6:15: config.buffer: expected an integer or one of "
                    "line|none, got true",
                    "%s/10-audit.yaml:7:14: config.fsync: expected one of never|always|interval, "
                    "got a sequence");
}

Test(config_map, a_number_out_of_range_is_reported_at_the_value)
{
    load_and_check(FILE_SINK_SO, "plugins:\n"
                                 "  - name: audit\n"
                                 "    plugin: %s\n"
                                 "    config: { path: /tmp/a.jsonl, buffer: 0,\n"
                                 "              fsync_interval_ms: 86400001 }\n");
    expect_problems(2, "%s/10-audit.yaml:4:43: config.buffer: must be between 1 and 1073741824, "
                       "got 0",
                    "%s/10-audit.yaml:5:34: config.fsync_interval_ms: must be between 1 and "
                    "86400000, got 86400001");
}

Test(config_map, a_missing_required_key_is_reported_at_config_or_else_at_the_instance)
{
    load_and_check(FILE_SINK_SO, "plugins:\n"
                                 "  - name: audit\n"
                                 "    plugin: %s\n"
                                 "    config: { fsync: always }\n"
                                 "  - name: bare\n"
                                 "    plugin: %s\n");
    expect_problems(2, "%s/10-audit.yaml:4:13: missing required key 'path' in config of plugin "
                       "instance 'audit' (the file to append events to)",
                    "%s/10-audit.yaml:5:5: missing required key 'path' in config of plugin "
                    "instance 'bare' (the file to append events to)");
}

Test(config_map, a_valid_config_has_no_problem)
{
    load_and_check(TESTKIT_SO, "plugins:\n"
                               "  - name: audit\n"
                               "    plugin: %s\n"
                               "    config: { out: /tmp/rec.tsv, tag: a, init_sleep_ms: 0 }\n");
    expect_problems(0);
}

Test(config_map, a_plugin_built_for_abi_1_0_loads_takes_any_config_and_is_called_the_old_way)
{
    const char *yaml = "plugins:\n"
                       "  - name: audit\n"
                       "    plugin: %s\n"
                       "    config: { pth: 1, anything: [1, { x: 2 }] }\n";
    load_and_check(ABI_V1_0_SO, yaml);
    expect_problems(0);
    plugin_lib_t *lib = open_ok(ABI_V1_0_SO);
    const evbus_plugin_descriptor_t *d = plugin_lib_descriptor(lib);
    cr_assert_eq(d->flags, 0);
    cr_assert_null(d->config_map);
    cr_assert_eq(d->n_config_map, 0);
    plugin_instance_t *inst = new_ok(lib, "audit", loaded->instances[0].config_json);
    cr_assert_str_eq(plugin_instance_state(inst), "{\"pth\":1,\"anything\":[1,{\"x\":2}]}");
    /* its handler is called the 1.0 way, (event, state) */
    evbus_event_t ev = {.id = "e1", .type = "approval.x"};
    const evbus_subscriber_t *sub = plugin_instance_find_subscriber(inst, "main");
    cr_assert_eq(plugin_instance_call(inst, sub, &ev), EVBUS_OK);
    plugin_instance_free(inst);
    inst = new_ok(lib, "again", "{\"result\":\"retry\"}");
    cr_assert_eq(plugin_instance_call(inst, sub, &ev), EVBUS_RETRY);
    plugin_instance_free(inst);
    /* a plugin of today's header that declares no map is the same */
    plugin_lib_t *mini = open_ok(MINIMAL_SO);
    plugin_instance_free(new_ok(mini, "mini", "{\"whatever\":true}"));
    plugin_lib_close(mini);
    plugin_lib_close(lib);
}

Test(config_map, instance_new_refuses_a_config_that_breaks_the_map_before_init)
{
    plugin_lib_t *lib = open_ok(TESTKIT_SO);
    plugin_instance_t *inst = NULL;
    cr_assert_eq(plugin_instance_new(lib, "rec", "{\"tga\":\"x\"}", &fake_host_api, 0, &inst, err,
                                     sizeof err),
                 -1);
    cr_assert_null(inst);
    cr_assert_str_eq(err, "instance 'rec' (" TESTKIT_SO "): unknown key 'tga' in config of "
                          "plugin instance 'rec' (valid: out, tag, init_sleep_ms) (and 1 more)");
    cr_assert_null(strstr(fake_host_log(), "ready"), "init ran: %s", fake_host_log());
    plugin_lib_close(lib);
}

Test(config_map, bundled_plugins_declare_the_keys_they_read)
{
    static const struct {
        const char *so, *keys;
    } bundled[] = {
        {FILE_SINK_SO, "path buffer flush_interval_ms fsync fsync_interval_ms"},
        {LOG_SO, "level format"},
        {CHAOS_SO, "count_file"},
        {TESTKIT_SO, "out tag init_sleep_ms"},
        {BENCH_COUNTER_SO, "report_file"},
    };
    for (size_t i = 0; i < sizeof bundled / sizeof bundled[0]; i++) {
        plugin_lib_t *lib = open_ok(bundled[i].so);
        const evbus_plugin_descriptor_t *d = plugin_lib_descriptor(lib);
        cr_assert(d->flags & EVBUS_PLUGIN_F_CONFIG_MAP, "%s", bundled[i].so);
        char keys[256] = "";
        for (size_t k = 0; k < d->n_config_map; k++)
            snprintf(keys + strlen(keys), sizeof keys - strlen(keys), "%s%s", k ? " " : "",
                     d->config_map[k].key);
        cr_assert_str_eq(keys, bundled[i].keys, "%s", bundled[i].so);
        plugin_lib_close(lib);
    }
}

/* The rules config_map_check() applies, on descriptors made here. */
static char problems[2048];

static void collect(void *arg, const char *key, config_map_at_t at, const char *msg)
{
    (void)arg;
    static const char *const where[] = {"config", "key", "value"};
    snprintf(problems + strlen(problems), sizeof problems - strlen(problems), "%s %s: %s\n",
             where[at], key ? key : "-", msg);
}

static const char *check_with(const evbus_config_key_t *map, size_t n, const char *json)
{
    evbus_plugin_descriptor_t d = {.name = "made-here", .flags = EVBUS_PLUGIN_F_CONFIG_MAP,
                                   .config_map = map, .n_config_map = n};
    char perr[256] = "";
    cr_assert_eq(config_map_check_descriptor("made-here.so", &d, perr, sizeof perr), 0, "%s",
                 perr);
    problems[0] = '\0';
    size_t count = config_map_check(&d, "x", json, collect, NULL);
    size_t lines = 0;
    for (const char *p = problems; (p = strchr(p, '\n')); p++)
        lines++;
    cr_assert_eq(count, lines, "%s", problems);
    return problems;
}

Test(config_map, a_map_without_keys_takes_no_config)
{
    cr_assert_str_eq(check_with(NULL, 0, "{}"), "");
    cr_assert_str_eq(check_with(NULL, 0, "{\"a\":1}"),
                     "key a: unknown key 'a' in config of plugin instance 'x' (plugin "
                     "'made-here' takes no config)\n");
}

Test(config_map, one_sided_bounds_say_at_least_or_at_most)
{
    static const evbus_config_key_t map[] = {
        {.key = "lo", .type = EVBUS_CONFIG_INT, .min = 1, .max = INT64_MAX},
        {.key = "hi", .type = EVBUS_CONFIG_INT, .min = INT64_MIN, .max = -1},
    };
    cr_assert_str_eq(check_with(map, 2, "{\"lo\":0,\"hi\":0}"),
                     "value lo: config.lo: must be at least 1, got 0\n"
                     "value hi: config.hi: must be at most -1, got 0\n");
    cr_assert_str_eq(check_with(map, 2, "{\"lo\":9223372036854775807,\"hi\":-5}"), "");
}

Test(config_map, a_number_accepts_integers_and_reals_within_its_bounds)
{
    static const evbus_config_key_t map[] = {
        {.key = "ratio", .type = EVBUS_CONFIG_NUMBER, .min = 0, .max = 1},
        {.key = "count", .type = EVBUS_CONFIG_INT},
    };
    cr_assert_str_eq(check_with(map, 2, "{\"ratio\":0.5,\"count\":-3}"), "");
    cr_assert_str_eq(check_with(map, 2, "{\"ratio\":1}"), "");
    cr_assert_str_eq(check_with(map, 2, "{\"ratio\":1.5,\"count\":2.0}"),
                     "value ratio: config.ratio: must be between 0 and 1, got 1.5\n"
                     "value count: config.count: expected an integer, got 2.0\n");
}

Test(config_map, any_takes_every_value_and_required_keys_come_last_in_map_order)
{
    static const evbus_config_key_t map[] = {
        {.key = "b", .type = EVBUS_CONFIG_BOOL, .required = 1},
        {.key = "extra", .type = EVBUS_CONFIG_ANY},
        {.key = "a", .type = EVBUS_CONFIG_OBJECT | EVBUS_CONFIG_ARRAY, .required = 1,
         .description = "what to do"},
    };
    cr_assert_str_eq(check_with(map, 3, "{\"extra\":null,\"zz\":1}"),
                     "key zz: unknown key 'zz' in config of plugin instance 'x' (valid: b, extra, "
                     "a)\n"
                     "config -: missing required key 'b' in config of plugin instance 'x'\n"
                     "config -: missing required key 'a' in config of plugin instance 'x' (what "
                     "to do)\n");
    cr_assert_str_eq(check_with(map, 3, "{\"b\":false,\"a\":[],\"extra\":{}}"), "");
    cr_assert_str_eq(check_with(map, 3, "{\"b\":\"yes\",\"a\":\"x\"}"),
                     "value b: config.b: expected true or false, got 'yes'\n"
                     "value a: config.a: expected a mapping or a sequence, got 'x'\n");
}

Test(config_map, text_that_is_not_an_object_is_one_problem)
{
    cr_assert_str_eq(check_with(NULL, 0, "[1]"),
                     "config -: config of plugin instance 'x' is not a JSON object\n");
}

/* ---- docs ---------------------------------------------------------------- */

Test(bundled, docs_quote_the_minimal_plugin_byte_for_byte)
{
    char *doc = harness_read_file(DOCS_PLUGINS_MD), *src = harness_read_file(MINIMAL_C);
    cr_assert_not_null(doc);
    cr_assert_not_null(src);
    const char *marker = "<!-- verbatim: plugins/testkit/minimal.c -->\n```c\n";
    char *start = strstr(doc, marker);
    cr_assert_not_null(start, "docs/plugins.md lost its verbatim marker");
    start += strlen(marker);
    char *end = strstr(start, "\n```\n");
    cr_assert_not_null(end);
    end[1] = '\0'; /* keep the block's last newline, like the file's */
    cr_assert_str_eq(start, src, "docs/plugins.md and plugins/testkit/minimal.c differ");
    cr_assert_leq(harness_count_lines(MINIMAL_C), 40, "the smallest plugin must stay short");
    free(doc);
    free(src);
}

Test(bundled, docs_quote_the_file_sink_config_map_from_its_source)
{
    char *doc = harness_read_file(DOCS_PLUGINS_MD), *src = harness_read_file(FILE_SINK_C);
    cr_assert_not_null(doc);
    cr_assert_not_null(src);
    const char *marker = "<!-- excerpt: plugins/file-sink/file_sink.c -->\n```c\n";
    char *start = strstr(doc, marker);
    cr_assert_not_null(start, "docs/plugins.md lost its excerpt marker");
    start += strlen(marker);
    char *end = strstr(start, "\n```\n");
    cr_assert_not_null(end);
    *end = '\0';
    size_t checked = 0;
    for (char *line = strtok(start, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "/* descriptor:", 14) == 0)
            break;
        char needle[256];
        snprintf(needle, sizeof needle, "\n%s\n", line);
        cr_expect_not_null(strstr(src, needle), "not in file_sink.c: %s", line);
        checked++;
    }
    cr_assert_geq(checked, 10);
    free(doc);
    free(src);
}
