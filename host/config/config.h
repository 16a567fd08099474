/*
 * config — reads the conf.d directory (*.yaml, *.yml) into one immutable evbus_config_t.
 *
 * YAML is parsed with libyaml into a tree that keeps every value's
 * file:line:column, so that any later stage (plugin loading, schema
 * compilation, routing) can report errors at the manifest position.
 * Values support ${VAR} and ${VAR:-default}.  Settings are applied by one
 * generic applier walking the modules' tables (config/settings.h): each
 * module's struct (core, schema, store, admin, daemon) is a member below,
 * and `sources` says where each value came from.  A row's `env` variable
 * (EVBUS_REDIS_URL, EVBUS_POSTGRES_URL) overrides the files.
 *
 * This module does not load plugins, compile schemas or touch the network.
 *
 * Thread rules: config_load() may run on any thread; the result is never
 * modified after it returns and may be read from any thread.  Ownership:
 * the caller owns the returned config and frees it with config_free().
 */
#ifndef EVBUS_CONFIG_H
#define EVBUS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "admin/admin_settings.h"
#include "config/settings.h"
#include "core/core_settings.h"
#include "daemon/daemon_settings.h"
#include "retention/retention_settings.h"
#include "schema/schema_settings.h"
#include "store/store_settings.h"

/* A position in a manifest.  `file` points into the config's string pool. */
typedef struct cfg_pos {
    const char *file;
    int line; /* 1-based */
    int col;  /* 1-based */
} cfg_pos_t;

/* Collected errors, each already formatted "file:line:col: message". */
typedef struct cfg_errors {
    char **msgs;
    size_t count;
    size_t cap;
} cfg_errors_t;

/* Appends "file:line:col: message" (just the message when pos is NULL). */
void cfg_errors_add(cfg_errors_t *errs, const cfg_pos_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cfg_errors_free(cfg_errors_t *errs);

typedef enum sub_source {
    SUB_FROM_DESCRIPTOR = 0, /* plugin's own default subscriber */
    SUB_FROM_MANIFEST = 1,
} sub_source_t;

/* A subscription's `ordering:` (core/keyorder.h). */
typedef enum cfg_ordering {
    CFG_ORDERING_NONE = 0,    /* events run as they come, concurrently */
    CFG_ORDERING_PER_KEY = 1, /* one at a time per key, in stream order */
} cfg_ordering_t;

/* One subscription as written in a manifest. */
typedef struct cfg_subscription {
    char *pattern;          /* validated syntax: see router_pattern_check() */
    char *handler;          /* subscriber name in the descriptor, or NULL */
    bool has_priority;
    int priority;
    bool has_schema_mode;
    schema_mode_t schema_mode;
    int *versions;          /* accepted schema versions; NULL = any */
    size_t n_versions;
    bool has_retry;
    retry_policy_t retry;   /* merged over the global policy when has_retry */
    uint32_t timeout_ms;    /* 0 = global handler_timeout_ms */
    uint32_t dedup_ttl_s;   /* 0 = no dedup by event id */
    cfg_ordering_t ordering;
    cfg_pos_t pos;          /* position of the mapping */
    cfg_pos_t pattern_pos;  /* position of the pattern scalar */
} cfg_subscription_t;

/* A top-level key of an instance's `config:` and where it was written, so
 * that a plugin's config map can be checked with positions. */
typedef struct cfg_config_key {
    char *key;
    cfg_pos_t key_pos;
    cfg_pos_t value_pos;
} cfg_config_key_t;

/* Where an instance's init(), handlers and fini() run (`isolation:`). */
typedef enum cfg_isolation {
    CFG_ISOLATION_IN_PROCESS = 0, /* in evbusd itself (the default) */
    CFG_ISOLATION_PROCESS = 1,    /* in an evbus-plugin-runner child (host/isolation/) */
} cfg_isolation_t;

/* A plugin instance (`plugins:` entry). */
typedef struct cfg_instance {
    char *name;          /* unique across plugins and foreign handlers */
    char *plugin;        /* as written: "file-sink" or a path */
    char *plugin_path;   /* resolved absolute path to the .so */
    char *config_json;   /* the `config:` mapping as a JSON object text */
    cfg_config_key_t *config_keys; /* its top-level keys, in written order */
    size_t n_config_keys;
    cfg_subscription_t *subs; /* NULL/0: use the descriptor's subscribers */
    size_t n_subs;
    cfg_isolation_t isolation;
    cfg_pos_t pos;
    cfg_pos_t plugin_pos;
    cfg_pos_t config_pos;
    cfg_pos_t isolation_pos; /* file NULL when the key is absent */
} cfg_instance_t;

typedef enum ffi_type_kind {
    FFI_T_VOID = 0, /* return only */
    FFI_T_STRING,
    FFI_T_INT64,
    FFI_T_INT32,
    FFI_T_DOUBLE,
    FFI_T_BOOL,
    FFI_T_JSON,  /* serialized JSON text, passed as const char * */
    FFI_T_EVENT, /* the host's const evbus_event_t * */
} ffi_type_kind_t;

typedef struct cfg_ffi_param {
    ffi_type_kind_t type;
    char *from;        /* JSON Pointer into the event (e.g. "/data/id"), or NULL */
    char *value_json;  /* constant, as JSON text, when `from` is NULL */
    cfg_pos_t pos;
} cfg_ffi_param_t;

/* How a foreign function's integer return maps to a result. */
typedef enum ffi_result_rule { FFI_RULE_ZERO = 0, FFI_RULE_POSITIVE, FFI_RULE_NEGATIVE } ffi_result_rule_t;

/* A foreign handler (`foreign:` entry): any exported C function. */
typedef struct cfg_foreign {
    char *name;
    char *library;      /* resolved absolute path, or a bare soname */
    char *symbol;
    ffi_type_kind_t returns;   /* INT32, INT64, BOOL or VOID */
    cfg_ffi_param_t *params;
    size_t n_params;
    /* result mapping: which sign maps to which result.  Defaults:
     * 0 -> OK, >0 -> RETRY, <0 -> REJECT.  (bool: true OK, false RETRY) */
    int on_zero, on_positive, on_negative; /* evbus_result_t values */
    cfg_subscription_t *subs;  /* at least one */
    size_t n_subs;
    cfg_pos_t pos;
    cfg_pos_t library_pos;
    cfg_pos_t symbol_pos;
} cfg_foreign_t;

/* Roles of an admin token (bits).  Each role is granted alone; what a role
 * implies (operator reads like a viewer, ...) is host/admin/'s rule. */
enum { CFG_ROLE_VIEWER = 1, CFG_ROLE_OPERATOR = 2, CFG_ROLE_ADMIN = 4, CFG_ROLE_PUBLISHER = 8 };

/* One `admin.tokens` entry.  Only the token's SHA-256 is ever stored. */
typedef struct cfg_token {
    char *name;                /* shown in logs and the audit log, never the token */
    unsigned char hash[32];    /* SHA-256 of the token text */
    unsigned roles;            /* CFG_ROLE_* bits, at least one */
    char *tenant;              /* NULL = every tenant ("*") */
    cfg_pos_t pos;
} cfg_token_t;

/* "viewer" -> CFG_ROLE_VIEWER, ...; -1 when unknown. */
int cfg_role_parse(const char *name);
/* CFG_ROLE_VIEWER -> "viewer", ...: one bit; NULL for anything else. */
const char *cfg_role_name(unsigned bit);
/* "sha256:<64 hex>" -> 32 bytes; 0 or -1. */
int cfg_token_hash_parse(const char *text, unsigned char out[32]);

typedef struct cfg_source {
    cfg_source_kind_t kind;
    cfg_pos_t pos;          /* CFG_SRC_FILE */
    const char *env;        /* CFG_SRC_ENV: the variable's name (static) */
} cfg_source_t;

typedef struct evbus_config {
    /* files read, in order (owned) */
    char **files;
    size_t n_files;
    char *dir;                  /* the conf.d directory, absolute */

    /* every module's settings, declared as tables next to the module */
    core_settings_t core;       /* host/core/core_settings.c */
    schema_settings_t schema;   /* host/schema/schema_settings.c */
    store_settings_t store;     /* host/store/store_settings.c */
    admin_settings_t admin;     /* host/admin/admin_settings.c */
    daemon_settings_t daemon;   /* host/daemon/daemon_settings.c */
    retention_settings_t retention; /* host/retention/retention_settings.c */
    cfg_source_t *sources;      /* one per settings row (cfg_setting_at order) */

    cfg_instance_t *instances;
    size_t n_instances;
    cfg_foreign_t *foreign;
    size_t n_foreign;
    cfg_token_t *tokens;        /* admin.tokens, in file order (live on reload) */
    size_t n_tokens;
} evbus_config_t;

/*
 * Read DIR/ *.yaml and *.yml (lexical order, dot-files skipped) into a new
 * config.  Returns NULL and appends to errs (every error found, not only the
 * first) on failure; errors already in errs are kept and do not make the load
 * fail.  Scalars set in a later file override earlier ones, sections merge
 * key by key, `plugins:` and `foreign:` lists append.  Relative paths resolve
 * against the directory of the manifest that set them.  Plugin paths are
 * resolved against plugin_dir and must exist, but are not opened; the same
 * for foreign libraries given as paths (a bare soname is left to dlopen).
 * cfg->dir is the absolute directory; cfg->files are DIR as given + name, and
 * every cfg_pos_t.file points at one of them.  See docs/configuration.md.
 */
evbus_config_t *config_load(const char *dir, cfg_errors_t *errs);

/*
 * config_load for tools that must keep working while a file is broken
 * (evbusctl during a bad deploy); evbusd never uses it.  The same reading
 * and the same errors in errs, but the config is returned whenever the
 * directory could be read: every accepted value is in it, a refused value
 * leaves what earlier files or the default gave.  Plugin instances and
 * foreign handlers are only as complete as they parsed: never load them.
 * NULL (with errs) only when config_load fails before reading a file.
 *
 * *doubtful (malloc'd, cfg_settings_count() entries, the caller frees;
 * NULL with a NULL config) marks the rows the files could not settle: a
 * file's value for the row was refused; or a file could not be read as
 * settings (a syntax error, an unknown key, a section that is not a
 * mapping) and no readable file set the row, so that file may have meant
 * to.  A row set by the environment is never doubtful.  A computed default
 * is computed from what the rows it depends on hold.
 */
evbus_config_t *config_load_partial(const char *dir, cfg_errors_t *errs, bool **doubtful);

/* Frees everything; NULL is fine. */
void config_free(evbus_config_t *cfg);

/* Expand ${VAR} / ${VAR:-default} in `in`.  Returns a malloc'd string, or
 * NULL with a message in err (unterminated reference, unset variable with
 * no default). */
char *config_expand_env(const char *in, char *err, size_t errlen);

/* Parses "debug|info|warn|error"; returns -1 when unknown. */
int config_log_level(const char *s);

#endif /* EVBUS_CONFIG_H */
