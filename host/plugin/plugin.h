/*
 * plugin — loads evbus plugin shared objects and runs their instances.
 *
 * A plugin_lib_t is one dlopen'd .so.  The file is first copied to a private
 * file (then dlopen'd and unlinked at once) because glibc hands back the
 * already-loaded handle for a path or inode it knows: without the copy, a
 * .so replaced on disk would keep running its old code after a reload.
 * Every descriptor field is checked before the host relies on it, and every
 * error message starts with the ORIGINAL path and says what is wrong.
 *
 * A plugin_instance_t is one `plugins:` entry: a name, the state init()
 * returned, and (for EVBUS_PLUGIN_F_SERIAL plugins) the mutex held around
 * each handler call.
 *
 * Before init() an instance's config is checked against the plugin's
 * config map, when the descriptor declares one (config_map.h); with the
 * parsed manifest's positions, plugin_config_check() reports each problem
 * at its file:line:column.
 *
 * This module does not read manifests, route events or decide when to
 * reload; it only offers what the reload logic needs to decide (file
 * identity + SHA-256, the instance's config text, state adoption).
 *
 * Ownership and lifetime
 *  - A library is reference counted: plugin_lib_open() returns one
 *    reference, plugin_lib_ref() adds one, plugin_lib_close() drops one, and
 *    every live instance holds one.  The .so is dlclose'd when the last
 *    reference goes, so it is never unmapped under a live instance.
 *  - An instance's state belongs to a state box shared by the instances
 *    that adopted it (plugin_instance_adopt); fini() runs when the last of
 *    them is freed.
 *
 * Thread rules
 *  - plugin_lib_open/ref/close, plugin_file_identify, plugin_instance_new,
 *    plugin_instance_adopt and plugin_instance_free run on the control thread
 *    (they call init()/fini(), which the ABI promises run there).
 *    plugin_instance_free() must only run after every in-flight
 *    plugin_instance_call() on that instance returned.
 *  - plugin_instance_call() may run on any number of threads at once.
 *  - plugin_config_check() may run on any thread.
 *  - The accessors are read-only and may be called from any thread.
 *  - plugin_set_current()/plugin_current() act on the calling thread only.
 */
#ifndef EVBUS_HOST_PLUGIN_H
#define EVBUS_HOST_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <evbus/plugin.h>

#include "config/config.h"

#define PLUGIN_DIGEST_LEN 32 /* SHA-256 */

/* Identity and content of a file as seen when it was read. */
typedef struct plugin_file_id {
    dev_t dev;
    ino_t ino;
    struct timespec mtime;
    off_t size;
    unsigned char digest[PLUGIN_DIGEST_LEN];
} plugin_file_id_t;

/*
 * Stats and hashes `path` into *out.  Returns 0, or -1 with
 * "<path>: <what failed>: <strerror>" in err.
 */
int plugin_file_identify(const char *path, plugin_file_id_t *out, char *err, size_t errlen);

/* Whether two identities describe the same bytes (compares the digests). */
bool plugin_file_same_content(const plugin_file_id_t *a, const plugin_file_id_t *b);

typedef struct plugin_lib plugin_lib_t;
typedef struct plugin_instance plugin_instance_t;

/*
 * Opens the plugin at `path`: copies it to a new file under private_dir
 * (created like mkdir -p, mode 0700, and refused unless it is owned by this
 * process's user and not writable by group or others: private_dir.h),
 * dlopen's the copy with
 * RTLD_NOW|RTLD_LOCAL, unlinks the copy, calls evbus_plugin_descriptor()
 * and checks the descriptor:
 *   - abi_version == EVBUS_ABI_VERSION  ("<path>: ABI version 999, host supports 1")
 *   - struct_size covers the v1 descriptor, reserved[] all zero, no unknown flag
 *   - name, version and init set
 *   - subscribers: names non-empty and unique, handler set, pattern valid
 *     per router_pattern_check(), priority >= 0
 *   - upcasters: type valid per router_type_check(), from_version >= 1,
 *     function set, no two for the same (type, from_version)
 *   - at least one subscriber or one upcaster
 *   - the config map, per config_map_check_descriptor() (config_map.h)
 * Every message starts with `path` as given.  On failure nothing is left
 * behind (library closed, copy removed) and *out is untouched.
 * On success *out holds one reference; release it with plugin_lib_close().
 */
int plugin_lib_open(const char *path, const char *private_dir, plugin_lib_t **out, char *err,
                    size_t errlen);

/* Adds a reference (the reload logic keeps an unchanged library this way
 * instead of opening a second copy).  Returns lib. */
plugin_lib_t *plugin_lib_ref(plugin_lib_t *lib);

/* Drops a reference; the .so is dlclose'd once no reference and no
 * instance remains.  NULL is fine. */
void plugin_lib_close(plugin_lib_t *lib);

const evbus_plugin_descriptor_t *plugin_lib_descriptor(const plugin_lib_t *lib);
const char *plugin_lib_path(const plugin_lib_t *lib);            /* as given to open */
const unsigned char *plugin_lib_digest(const plugin_lib_t *lib); /* PLUGIN_DIGEST_LEN bytes */
const plugin_file_id_t *plugin_lib_file_id(const plugin_lib_t *lib); /* of the bytes loaded */

/*
 * Checks the config of instance `ci` against lib's config map (see
 * config_map.h; a plugin without a map accepts any config) and appends
 * every problem to errs at its manifest position: an unknown key at the
 * key, a wrong type or range at the value, a missing required key at
 * `config:` (or at the instance's entry when it has no `config:`).
 * Returns 0, or -1 when it appended anything.
 */
int plugin_config_check(const plugin_lib_t *lib, const cfg_instance_t *ci, cfg_errors_t *errs);

/*
 * Creates an instance: checks config_json against lib's config map, then
 * calls init(api, config_json, &state) with the current-instance name set
 * to `name` (so api->log/instance_name work in init) and its init flags
 * (EVBUS_INIT_*, read through plugin_current_init_flags(); the same flags
 * are current again around its fini()).  config_json NULL
 * means "{}".  On a config problem returns -1 with
 * "instance 'NAME' (PATH): <the first problem>" (use
 * plugin_config_check() first for every problem with its position); on
 * init failure returns -1 with
 * "instance 'NAME' (PATH): init failed: <plugin's message>" in err, or
 * "instance 'NAME' (PATH): init failed (returned N) and gave no message".
 * Either way it creates nothing.  The instance holds a reference to lib
 * and copies name and config_json.
 */
int plugin_instance_new(plugin_lib_t *lib, const char *name, const char *config_json,
                        const evbus_host_api_t *api, uint32_t init_flags,
                        plugin_instance_t **out, char *err, size_t errlen);

/*
 * An instance whose init(), handlers and fini() run in another process
 * (`isolation: process`, host/isolation/).  This module keeps what it
 * keeps for every instance (name, library, config, the state box that
 * KEEP_STATE shares) and forwards each handler call through `call`; the
 * remote is what the box holds instead of init()'s state.
 *  - call(remote, sub_index, ev): one handler call, sub_index into the
 *    descriptor's subscribers; any thread, concurrently.
 *  - stop(remote): the last instance sharing the remote was freed: fini()
 *    over there, then release everything (control thread).
 *  - prepare/run/outcome/release: the same call in steps, so that many
 *    calls travel together: prepare copies what the call needs from ev
 *    (ev may go away after; PLUGIN_CALL_* flags), run hands n prepared calls over at once and
 *    returns when all have an outcome, outcome reads one (its reason and
 *    how long it ran over there), release frees it.  Any thread; a call
 *    belongs to the thread that prepared it.
 */
/* The data the handler sees is the `data` of the entry's raw envelope (no
 * upcast): a remote may take it from the raw entry instead of a copy. */
#define PLUGIN_CALL_OWN_DATA 0x1u

typedef struct plugin_remote_ops {
    evbus_result_t (*call)(void *remote, size_t sub_index, const evbus_event_t *ev);
    void (*stop)(void *remote);
    void *(*prepare)(void *remote, size_t sub_index, const evbus_event_t *ev, unsigned flags);
    void (*run)(void *remote, void *const *calls, size_t n);
    evbus_result_t (*outcome)(void *call, const char **reason, int64_t *took_ms);
    void (*release)(void *call);
} plugin_remote_ops_t;

/*
 * Creates an instance of lib called `name` forwarding to `remote` (whose
 * init already succeeded over there).  Takes `remote`: on failure (-1, out
 * of memory, message in err) ops->stop(remote) has run.  ops must outlive
 * the instance (a static table).
 */
int plugin_instance_new_remote(plugin_lib_t *lib, const char *name, const char *config_json,
                               const plugin_remote_ops_t *ops, void *remote,
                               plugin_instance_t **out, char *err, size_t errlen);

/* Whether inst forwards to another process (plugin_instance_new_remote). */
bool plugin_instance_is_remote(const plugin_instance_t *inst);

/*
 * Calls of a remote instance in steps (see plugin_remote_ops_t): a call
 * of sub on ev prepared now, run later with others of the same instance.
 * plugin_call_prepare returns NULL for an instance that is not remote.
 * The reason that plugin_call_outcome returns lives until the release.
 */
void *plugin_call_prepare(plugin_instance_t *inst, const evbus_subscriber_t *sub,
                          const evbus_event_t *ev, unsigned flags);
void plugin_call_run(plugin_instance_t *inst, void *const *calls, size_t n);
evbus_result_t plugin_call_outcome(const plugin_instance_t *inst, void *call,
                                   const char **reason, int64_t *took_ms);
void plugin_call_release(const plugin_instance_t *inst, void *call);

/*
 * KEEP_STATE reload: creates a new instance of the SAME library and name
 * that shares old's state (and its serial mutex, so a SERIAL plugin never
 * runs two handlers at once while the old generation drains).  init() is
 * not called; fini() runs once, when the last sharing instance is freed.
 * Refused (-1 with a message) unless the descriptor sets
 * EVBUS_PLUGIN_F_KEEP_STATE.  Whether the file and the config are
 * unchanged is the caller's decision: see plugin_instance_can_adopt().
 */
int plugin_instance_adopt(plugin_instance_t *old, plugin_instance_t **out, char *err,
                          size_t errlen);

/*
 * Whether a new generation may adopt old's state for an instance named
 * `name` of a library whose current file has identity `file` with config
 * `config_json`: same name, KEEP_STATE set, same digest, same config text.
 */
bool plugin_instance_can_adopt(const plugin_instance_t *old, const char *name,
                               const plugin_file_id_t *file, const char *config_json);

/* Releases the instance: fini(state) with the current-instance name set,
 * unless another instance still shares the state.  NULL is fine. */
void plugin_instance_free(plugin_instance_t *inst);

const char *plugin_instance_name(const plugin_instance_t *inst);
const char *plugin_instance_config(const plugin_instance_t *inst); /* JSON text, "{}" default */
void *plugin_instance_state(const plugin_instance_t *inst);
plugin_lib_t *plugin_instance_lib(const plugin_instance_t *inst);

/* The descriptor's subscriber called `name`, or the first one when name is
 * NULL; NULL when there is no such subscriber. */
const evbus_subscriber_t *plugin_lib_find_subscriber(const plugin_lib_t *lib, const char *name);
const evbus_subscriber_t *plugin_instance_find_subscriber(const plugin_instance_t *inst,
                                                          const char *name);

/* The subscriber names of lib as "a, b, c" into out (truncated to fit). */
void plugin_lib_subscriber_names(const plugin_lib_t *lib, char *out, size_t len);

/*
 * For a remote instance: ops->call with the subscriber's index (nothing of
 * the plugin runs in this process).  Otherwise:
 * calls sub's handler with the current-instance name set to this instance
 * (restored afterwards, so nested calls are fine) and, for SERIAL plugins,
 * the instance mutex held: handler_api(api, ev, state) with the api init()
 * got when the descriptor sets EVBUS_PLUGIN_F_HANDLER_API, else
 * handler(ev, state) (sub is read the way the descriptor says: normally it
 * is one of its own subscribers).  A return value outside
 * evbus_result_t is logged and mapped to EVBUS_RETRY.
 */
evbus_result_t plugin_instance_call(plugin_instance_t *inst, const evbus_subscriber_t *sub,
                                    const evbus_event_t *ev);

/* Thread-local "current instance" name behind the host API's log prefix and
 * instance_name().  The pointer is stored, not copied: it must outlive its
 * use (instance names do).  NULL clears it. */
void plugin_set_current(const char *instance_name);
const char *plugin_current(void);

/* The EVBUS_INIT_* flags of the init() or fini() running on this thread
 * (api->init_flags()); 0 outside them. */
uint32_t plugin_current_init_flags(void);

#endif /* EVBUS_HOST_PLUGIN_H */
