/*
 * settings — the table form of evbus's settings (in the spirit of Fluent
 * Bit's config maps and PostgreSQL's GUC contexts).
 *
 * Every setting of the host is one row of a table that the module owning
 * it declares next to its code (host/core/core_settings.c,
 * host/store/store_settings.c, ...): key, type, range or names, default,
 * reload class and a one-line description.  host/config/ walks the tables
 * with one generic applier; nothing else reads YAML for a setting, and a
 * default is written once, in its row.  The same rows generate the
 * settings table of docs/configuration.md (evbus-settings-doc), drive
 * reload (config_reload_merge), `evbusctl config show` and the generated
 * reload test.
 *
 * Reload classes: CFG_LIVE rows take effect in the generation a reload
 * builds; CFG_RESTART rows keep their running value on reload, and the
 * reload is reported as partial with the setting's position, old and new
 * value.  A row says why it is not live (`why`).
 *
 * Thread rules: the tables are constant data; every function here may run
 * on any thread on a config it owns or that nobody modifies.
 */
#ifndef EVBUS_CONFIG_SETTINGS_H
#define EVBUS_CONFIG_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct evbus_config;
struct cfg_errors;

typedef enum cfg_type {
    CFG_U32 = 0, /* integer within [min, max] */
    CFG_BOOL,    /* true | false */
    CFG_DOUBLE,  /* number within [min, max] */
    CFG_STRING,  /* non-empty string */
    CFG_PATH,    /* string; relative to the manifest that wrote it */
    CFG_ENUM,    /* one of names[], stored as the int values[i] */
    CFG_LISTEN,  /* "host:port" with a port 1..65535 */
    CFG_DURATION, /* uint64_t ms: "250ms", "30s", "15m", "12h", "7d", "2w"; a bare
                     number is seconds; within [min, max] ms */
    CFG_SIZE,    /* uint64_t bytes: "512", "64KiB", "2GiB", "1GB" (KB/MB/GB/TB are
                    powers of 1000, KiB/MiB/GiB/TiB of 1024); within [min, max] */
    CFG_STRLIST, /* char *: names joined with ","; YAML gives a sequence of
                    strings or one string ("all") */
} cfg_type_t;

typedef enum cfg_reload { CFG_LIVE = 0, CFG_RESTART = 1 } cfg_reload_t;

/* Row flags. */
enum {
    /* an empty string means "the default" (conf.d files write
     * `plugin_dir: "${EVBUS_PLUGIN_DIR:-}"` to serve both layouts) */
    CFG_F_EMPTY_DEFAULT = 1u << 0,
    /* the value may be absent: no default, the field stays NULL */
    CFG_F_OPTIONAL = 1u << 1,
    /* CFG_STRLIST of URLs: an element may hold any character but ',' and
     * white space; the module's check parses them */
    CFG_F_URLS = 1u << 2,
};

typedef struct cfg_setting {
    const char *key;            /* dotted path: "dlq.capacity" */
    cfg_type_t type;
    size_t offset;              /* of the field in evbus_config_t */
    double min, max;            /* CFG_U32 / CFG_DOUBLE; CFG_DURATION in ms; CFG_SIZE bytes */
    const char *const *names;   /* CFG_ENUM: NULL-terminated */
    const int *values;          /* CFG_ENUM: values[i] for names[i] */
    const char *def;            /* default as YAML text; NULL: computed or none */
    /* computed default (depends on other settings or the host), as text;
     * runs after the last file, in table order.  NULL result: none. */
    char *(*compute)(const struct evbus_config *cfg);
    const char *def_doc;        /* how the docs show a computed default */
    const char *env;            /* variable that overrides the files, or NULL */
    cfg_reload_t reload;
    const char *why;            /* CFG_RESTART: why not live; CFG_LIVE: when it applies */
    const char *desc;           /* one line for docs and `config show` */
    unsigned flags;             /* CFG_F_* */
} cfg_setting_t;

/* A module's rows and an optional check of the module's settings together
 * (cross-setting rules), run after defaults. */
typedef struct cfg_table {
    const char *module;         /* "core", "store", ... */
    const cfg_setting_t *rows;
    size_t n_rows;
    void (*check)(const struct evbus_config *cfg, struct cfg_errors *errs);
} cfg_table_t;

/* Where an effective value came from. */
typedef enum cfg_source_kind { CFG_SRC_DEFAULT = 0, CFG_SRC_FILE, CFG_SRC_ENV } cfg_source_kind_t;

/* Every table the host knows, in documentation order; NULL-terminated. */
extern const cfg_table_t *const cfg_tables[];

/* Number of rows over every table; rows are numbered 0..n-1 in table order
 * (the index of evbus_config_t.sources). */
size_t cfg_settings_count(void);
/* Row i (0 <= i < cfg_settings_count()). */
const cfg_setting_t *cfg_setting_at(size_t i);
/* Row by dotted key, or NULL.  *index (may be NULL) gets its number. */
const cfg_setting_t *cfg_setting_find(const char *key, size_t *index);

/*
 * The effective value of row i in cfg as text: integers in decimal,
 * booleans true/false, doubles with %.17g trimmed, enums by name, strings
 * as they are; "" for an absent optional value.  Writes at most len bytes
 * (NUL included); returns out.
 */
char *cfg_value_text(const struct evbus_config *cfg, size_t i, char *out, size_t len);

/* Milliseconds as the duration text settings show: the largest unit that
 * is exact (2592000000 -> "30d", 5400000 -> "90m", 1500 -> "1500ms"), "0"
 * for 0.  Returns out. */
char *cfg_duration_text(uint64_t ms, char *out, size_t len);

/*
 * Set row i of cfg from text, checked exactly like a manifest value.
 * 0, or -1 with a message (no position) in err.  Paths must be absolute.
 */
int cfg_value_set(struct evbus_config *cfg, size_t i, const char *text, char *err, size_t errlen);

/* Copy row i's value (and its source) from `from` into `to`. */
void cfg_value_copy(struct evbus_config *to, const struct evbus_config *from, size_t i);

/* "type and range" as the docs and `config show` print it, e.g.
 * "int ≥ 1", "int 1..64", "off|advisory|enforce". */
const char *cfg_type_text(const cfg_setting_t *s, char *out, size_t len);

/* "default", "FILE:LINE:COL" or "env NAME" for row i of cfg. */
const char *cfg_source_text(const struct evbus_config *cfg, size_t i, char *out, size_t len);

/*
 * One setting a reload could not apply: it keeps `old` until a restart.
 * `pos` points into the new config's file names.
 */
typedef struct cfg_pending {
    const char *key;
    char *pos;  /* "FILE:LINE:COL", "default" or "env NAME" (owned) */
    char *old;  /* owned */
    char *now;  /* owned: the value the files ask for */
} cfg_pending_t;

typedef struct cfg_pending_list {
    cfg_pending_t *items;
    size_t count;
} cfg_pending_list_t;

void cfg_pending_free(cfg_pending_list_t *l);

/*
 * Reload: compare every row of `next` with the running `prev`.  Changed
 * CFG_LIVE rows stay as `next` has them (each is logged at INFO); changed
 * CFG_RESTART rows are put back to `prev`'s value in `next` and appended
 * to *pending (each is logged at WARN with its position, old and new
 * value).  `next` is then exactly what is in force.  Returns the number of
 * live changes.
 */
size_t config_reload_merge(const struct evbus_config *prev, struct evbus_config *next,
                           cfg_pending_list_t *pending);

/*
 * The same comparison against settings recorded as text (the running
 * daemon's state file): `running` is looked up by key (NULL when absent:
 * not compared).  Appends the rows a reload would keep for a restart to
 * *pending and returns how many live rows differ.
 */
size_t config_diff_text(const struct evbus_config *next,
                        const char *(*running)(void *arg, const char *key), void *arg,
                        cfg_pending_list_t *pending);

/*
 * Every row of cfg as a JSON array of {key, value, source, reload, type,
 * description} and, for a key in `pending` (may be NULL), the value the
 * files ask for as "pending_restart".  The caller owns the result.
 */
json_t *config_settings_json(const struct evbus_config *cfg, const cfg_pending_list_t *pending);

/*
 * Masks, in place, the secrets in the "value" and "pending_restart" of
 * every row of a config_settings_json array (URL passwords, libpq
 * password= values: util/redact, the logs' own masking).  Everything that
 * shows settings to people calls it: GET /api/v1/config, evbusctl config
 * show.  The record in STATE_DIR keeps the values whole, since
 * --diff-running compares them.
 */
void config_settings_redact(json_t *settings);

#endif /* EVBUS_CONFIG_SETTINGS_H */
