/*
 * generation — one immutable snapshot of everything configuration decides:
 * the parsed config, compiled schemas, loaded plugins and their instances,
 * foreign handlers, upcasters and the compiled router.
 *
 * A reload builds a complete new generation to the side with exactly the
 * same code --check-config runs, and the engine swaps the current pointer
 * whole.  Nothing in a generation changes after generation_build() returns.
 *
 * Lifetime: reference counted.  Whoever dispatches with a generation holds
 * a reference for the whole dispatch (the engine pins one per chunk).  When
 * the last reference is dropped the generation is not destroyed on the
 * dropping thread: it is queued, and the control thread destroys it with
 * generation_reap(), because plugin fini() must run on the control thread.
 *
 * Thread rules: generation_build/reap/destroy on the control thread only;
 * everything else from any thread.
 */
#ifndef EVBUS_CORE_GENERATION_H
#define EVBUS_CORE_GENERATION_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <evbus/plugin.h>

#include "config/config.h"
#include "ffi/ffi_handler.h"
#include "plugin/plugin.h"
#include "router/router.h"
#include "schema/schema.h"

typedef enum gen_handler_kind { GEN_HANDLER_PLUGIN = 0, GEN_HANDLER_FOREIGN = 1 } gen_handler_kind_t;

/* One routable handler: a subscription bound to a plugin handler or a
 * foreign function, with its effective policies. */
typedef struct gen_handler {
    char name[160];                 /* "instance/subscriber" or "foreign-name" */
    gen_handler_kind_t kind;
    plugin_instance_t *inst;        /* PLUGIN */
    const evbus_subscriber_t *sub;  /* PLUGIN */
    ffih_t *ffi;                    /* FOREIGN */
    const char *pattern;            /* borrowed from cfg or descriptor */
    int priority;
    uint32_t seq;
    schema_mode_t schema_mode;
    const int *versions;            /* accepted schema versions or NULL = any */
    size_t n_versions;
    retry_policy_t retry;
    uint32_t timeout_ms;
    uint32_t dedup_ttl_s;
    bool per_key;                   /* ordering: per_key (core/keyorder.h) */
    /* the instance's (or foreign handler's) slot in util/metrics: its
     * per-handler counters, found once here instead of per event */
    uint16_t metrics_slot;
} gen_handler_t;

typedef struct gen_upcaster {
    const char *type;
    int from_version;
    evbus_upcast_fn fn;
} gen_upcaster_t;

typedef struct generation {
    atomic_int refs;
    uint64_t number;
    evbus_config_t *cfg;
    schema_catalog_t *schemas;
    router_t *router;
    plugin_lib_t **libs;
    size_t n_libs;
    plugin_instance_t **insts;
    size_t n_insts;
    ffih_t **ffis;
    size_t n_ffis;
    gen_handler_t *handlers;
    size_t n_handlers;
    gen_upcaster_t *upcasters;
    size_t n_upcasters;
    /* some handler has ordering: per_key: the engine then reads in lanes */
    bool per_key;
    /* against the generation it replaced (none for the first): settings
     * that need a restart (kept at their running value in cfg) and how
     * many live settings changed */
    cfg_pending_list_t pending_restart;
    size_t live_changes;
    /* what is live: SHA-256 over the manifests (names and bytes, in load
     * order) and every instance's name and plugin .so digest, as
     * "sha256:<hex>"; and when the generation was built (wall ms) */
    char digest[80];
    int64_t built_ms;
} generation_t;

/*
 * Build a generation from conf_dir.  `prev` (may be NULL) is the serving
 * generation: instances whose plugin file and config are unchanged and
 * whose plugin sets EVBUS_PLUGIN_F_KEEP_STATE adopt its state, and every
 * setting is compared with prev's (config_reload_merge): a changed
 * CFG_RESTART setting keeps prev's value and is listed in
 * pending_restart, so the new generation's cfg is what is in force.
 * `check`: the generation is built only to be checked and destroyed
 * (evbusd --check-config): its plugin instances are initialised (and
 * finalised) with EVBUS_INIT_CHECK, so they leave no trace.
 * Returns 0 with *out holding one reference, or -1 with every error in errs
 * ("file:line:col: message") and nothing left behind.
 */
int generation_build(const char *conf_dir, const generation_t *prev, uint64_t number, bool check,
                     generation_t **out, cfg_errors_t *errs);

generation_t *generation_ref(generation_t *g);
/* Drops a reference; at zero the generation is queued for generation_reap(). */
void generation_unref(generation_t *g);
/*
 * A thread that reads a string borrowed from a generation it holds no
 * reference on — a worker's running handler name, which /health and the
 * overrun watchdog read while the worker may finish its chunk — brackets
 * the load of the pointer and the copy of the string with these (any
 * thread, nestable, lock-free).  generation_reap() waits for such readers
 * before it frees anything: a reader that holds a pointer into a retired
 * generation loaded it before the worker cleared it, so before the
 * generation was retired, and is still counted when the reap begins.
 */
void generation_peek_begin(void);
void generation_peek_end(void);
/* Destroy every generation whose last reference is gone (control thread).
 * Returns how many were destroyed. */
int generation_reap(void);
/* Destroy now (control thread; only for generations never shared). */
void generation_destroy(generation_t *g);

const gen_handler_t *generation_find_handler(const generation_t *g, const char *name);

/* {generation, digest, built_ms, files, instances: [{name, plugin, version,
 * so_digest, isolation}]} for /health and evbusctl status.  Caller decrefs. */
json_t *generation_describe(const generation_t *g);
evbus_upcast_fn generation_find_upcaster(const generation_t *g, const char *type, int from);

#endif
