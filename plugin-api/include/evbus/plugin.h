/*
 * evbus plugin ABI — the only header a plugin includes.
 *
 * A plugin is a shared object that exports ONE function symbol,
 * `evbus_plugin_descriptor`, returning a pointer to a constant descriptor.
 * The host reads the ABI version and the struct size from it before it
 * touches anything else, so an old or new plugin is refused with a precise
 * message instead of crashing the host.
 *
 * Plugins link no host symbols.  Everything the host offers (logging,
 * event accessors, publishing) comes through the evbus_host_api_t function
 * table handed to init() and, with EVBUS_PLUGIN_F_HANDLER_API (which
 * EVBUS_PLUGIN() sets), to every handler.  A table field a plugin does not
 * know about is simply beyond the struct_size it was compiled with; a field
 * the host does not provide is NULL.  New fields are only ever appended.
 *
 * Thread-safety contract for handlers
 * -----------------------------------
 *  - The host calls handlers from its worker threads.  Unless the plugin
 *    sets EVBUS_PLUGIN_F_SERIAL, two events may be handled by the SAME
 *    instance at the same time on different threads: protect the state.
 *  - With EVBUS_PLUGIN_F_SERIAL the host holds a per-instance mutex around
 *    every handler call of that instance.
 *  - Handlers of one event run one after another, in priority order, on a
 *    single thread.  An event handle is valid only during the call.
 *  - init() and fini() run on the host's control thread, never concurrently
 *    with a handler of the same instance.  fini() runs only after every
 *    in-flight handler of that instance returned (generation drain).
 *  - Every evbus_host_api_t function may be called from any thread, from
 *    init() and from handlers.
 *  - A handler must not call exit(), longjmp out, or keep pointers returned
 *    by event accessors after it returns.
 */
#ifndef EVBUS_PLUGIN_H
#define EVBUS_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change of the descriptor or host API layout. */
#define EVBUS_ABI_VERSION 1u
/*
 * Compatible additions within EVBUS_ABI_VERSION, for `#if` in plugins that
 * must also build against older headers.  A host of any minor loads the
 * plugins of every older minor; a plugin that uses a newer feature sets a
 * flag that an older host refuses by name.
 *   1: config maps (EVBUS_PLUGIN_F_CONFIG_MAP, evbus_config_key_t)
 *   2: api->event_deadline_ms
 *   3: api->set_reason; api->init_flags and EVBUS_INIT_CHECK; handlers
 *      that receive the host API (EVBUS_PLUGIN_F_HANDLER_API) and the
 *      EVBUS_PLUGIN() macros that set it
 */
#define EVBUS_ABI_MINOR 3u

/* The name of the single symbol every plugin exports. */
#define EVBUS_PLUGIN_DESCRIPTOR_SYMBOL "evbus_plugin_descriptor"

#if defined(__GNUC__)
#define EVBUS_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define EVBUS_PLUGIN_EXPORT
#endif

/* What a handler tells the host about one event. */
typedef enum evbus_result {
    EVBUS_OK = 0,     /* done: the host may acknowledge for this handler   */
    EVBUS_RETRY = 1,  /* transient failure: retry THIS handler with backoff */
    EVBUS_REJECT = 2, /* permanent failure: straight to the dead-letter stream */
} evbus_result_t;

typedef enum evbus_log_level {
    EVBUS_LOG_DEBUG = 0,
    EVBUS_LOG_INFO = 1,
    EVBUS_LOG_WARN = 2,
    EVBUS_LOG_ERROR = 3,
} evbus_log_level_t;

/* Opaque: an event being dispatched.  Read it through the host API. */
typedef struct evbus_event evbus_event_t;

/* Opaque: an output buffer an upcaster appends to (see buf_append). */
typedef struct evbus_buf evbus_buf_t;

typedef struct evbus_host_api evbus_host_api_t;

/*
 * A handler.  `state` is what init() stored for this instance.  Must return
 * one of evbus_result_t; any other value is treated as EVBUS_RETRY.
 */
typedef evbus_result_t (*evbus_handler_fn)(const evbus_event_t *ev, void *state);

/*
 * A handler that also receives the host API (ABI 1.3): the table init()
 * got, so the state need not keep it.  Used by plugins whose descriptor
 * sets EVBUS_PLUGIN_F_HANDLER_API, as EVBUS_PLUGIN() does.
 */
typedef evbus_result_t (*evbus_handler_api_fn)(const evbus_host_api_t *api,
                                               const evbus_event_t *ev, void *state);

/* One subscription a plugin offers.  A manifest may override pattern and
 * priority, or bind the handler (by name) to other patterns. */
typedef struct evbus_subscriber {
    const char *name;         /* unique within the plugin, e.g. "main"       */
    const char *pattern;      /* default pattern, e.g. "approval.**"         */
    int priority;             /* default priority; lower runs first          */
    /* The descriptor's flags say which member holds the handler, as
     * SA_SIGINFO picks sa_sigaction over sa_handler: handler_api when they
     * have EVBUS_PLUGIN_F_HANDLER_API, handler otherwise.  Either way the
     * struct has the layout and size of ABI 1.0. */
    union {
        evbus_handler_fn handler;
        evbus_handler_api_fn handler_api;
    };
} evbus_subscriber_t;

/*
 * An upcaster turns the `data` of an event of `type` at schema version
 * `from_version` into version from_version + 1.  It reads `data_json`
 * (serialized JSON, `len` bytes) and appends the new serialized data with
 * api->buf_append(out, ...).  Returns 0, or -1 with a message in err.
 * The host chains upcasters so a subscription that accepts only the latest
 * version still receives older events.  Upcasters must be pure functions:
 * they may run on any thread at any time.
 */
typedef int (*evbus_upcast_fn)(const evbus_host_api_t *api, const char *data_json,
                               size_t len, evbus_buf_t *out, char *err, size_t errlen);

typedef struct evbus_upcaster {
    const char *type;     /* exact event type                              */
    int from_version;     /* upcasts from this version to from_version + 1 */
    evbus_upcast_fn upcast;
} evbus_upcaster_t;

/*
 * A config map: one row per key a plugin accepts at the top level of its
 * instances' `config:` mapping.  When the descriptor sets
 * EVBUS_PLUGIN_F_CONFIG_MAP, the host checks every instance's config
 * against the map before init() (and at `evbusd --check-config`), and
 * reports each problem with the manifest's file:line:column: a key that is
 * not in the map (the valid ones listed), a value of another type, a
 * number out of range, a required key left out.  init() then only ever
 * sees a config that fits the map; it still reads the values itself.
 * Keys inside nested objects and arrays are not checked.
 */
typedef enum evbus_config_type {
    EVBUS_CONFIG_STRING = 0x01, /* a string                                   */
    EVBUS_CONFIG_INT = 0x02,    /* an integer (written without . or e)        */
    EVBUS_CONFIG_NUMBER = 0x04, /* any number, integers included              */
    EVBUS_CONFIG_BOOL = 0x08,   /* true or false                              */
    EVBUS_CONFIG_ENUM = 0x10,   /* a string among enum_values                 */
    EVBUS_CONFIG_OBJECT = 0x20, /* a mapping (its keys are not checked)       */
    EVBUS_CONFIG_ARRAY = 0x40,  /* a sequence                                 */
    EVBUS_CONFIG_ANY = 0x80,    /* anything, null included; alone             */
} evbus_config_type_t;

typedef struct evbus_config_key {
    const char *key;  /* a top-level key of `config:`, unique in the map     */
    /* The types accepted: one EVBUS_CONFIG_* or several OR'ed together, e.g.
     * EVBUS_CONFIG_INT | EVBUS_CONFIG_ENUM for "a byte count or 'line'". */
    uint32_t type;
    int required;     /* non-zero: the key must be present                  */
    /* Bounds of an INT or NUMBER value, inclusive; both 0: unbounded.  Use
     * INT64_MIN or INT64_MAX for a bound on one side only. */
    int64_t min, max;
    const char *const *enum_values; /* EVBUS_CONFIG_ENUM: NULL-terminated  */
    const char *description; /* one line; the host quotes it when the key is
                                required and missing                        */
    void *reserved[2];       /* zero: room to grow                          */
} evbus_config_key_t;

/*
 * Flags of an instance's init() and fini(), read with api->init_flags()
 * (ABI 1.3).
 *
 * EVBUS_INIT_CHECK: the instance exists only to be checked (evbusd
 * --check-config): it never handles an event and fini() follows at once.
 * Check what you can (the config, that a file could be written) but leave
 * no trace: create, truncate, lock, connect or send nothing, start no
 * thread, and write no report at fini().
 */
#define EVBUS_INIT_CHECK 0x1u

/* Descriptor flags. */
#define EVBUS_PLUGIN_F_SERIAL 0x1u       /* host serializes calls per instance   */
#define EVBUS_PLUGIN_F_KEEP_STATE 0x2u   /* state may carry over a reload when the
                                            .so file and config are unchanged  */
#define EVBUS_PLUGIN_F_CONFIG_MAP 0x4u   /* config_map is the whole set of keys
                                            `config:` may hold (ABI minor 1);
                                            n_config_map 0: it takes no config */
#define EVBUS_PLUGIN_F_HANDLER_API 0x8u  /* every subscriber's handler is in
                                            handler_api (ABI minor 3) */

typedef struct evbus_plugin_descriptor {
    uint32_t abi_version;   /* EVBUS_ABI_VERSION the plugin was built for    */
    uint32_t struct_size;   /* sizeof(evbus_plugin_descriptor_t)             */
    const char *name;       /* plugin name, e.g. "file-sink"                  */
    const char *version;    /* plugin's own version, e.g. "1.2.0"             */
    uint32_t flags;         /* EVBUS_PLUGIN_F_*                               */

    /*
     * init: called once per instance.  `config_json` is the instance's
     * `config:` mapping serialized as a JSON object ("{}" when absent);
     * with EVBUS_PLUGIN_F_CONFIG_MAP it fits config_map.  Store
     * per-instance state in *state.  Return 0, or non-zero with a message
     * in errbuf; the host then reports the message with the manifest
     * position and loads nothing of this generation.
     */
    int (*init)(const evbus_host_api_t *api, const char *config_json, void **state,
                char *errbuf, size_t errlen);
    /* fini: release the state.  May be NULL. */
    void (*fini)(void *state);

    const evbus_subscriber_t *subscribers;
    size_t n_subscribers;

    const evbus_upcaster_t *upcasters; /* may be NULL */
    size_t n_upcasters;

    /*
     * ABI minor 1, set together with EVBUS_PLUGIN_F_CONFIG_MAP (zero
     * without it): the keys `config:` may hold.  These two fields were reserved[0] and reserved[1]
     * (a size_t is a pointer's size), so the struct size is unchanged and a
     * plugin built before them has zeros here: no map, any config.
     */
    const evbus_config_key_t *config_map;
    size_t n_config_map;

    void *reserved[6]; /* zero: room to grow without changing struct_size */
} evbus_plugin_descriptor_t;

/* The host's function table.  Fields are only ever appended. */
struct evbus_host_api {
    uint32_t abi_version;
    uint32_t struct_size; /* sizeof(evbus_host_api_t) of the host */

    /* Log one line, prefixed by the host with the calling instance name. */
    void (*log)(evbus_log_level_t level, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

    /* Event accessors.  Returned strings are owned by the event and valid
     * until the handler returns.  Absent attributes return NULL. */
    const char *(*event_id)(const evbus_event_t *ev);
    const char *(*event_type)(const evbus_event_t *ev);
    const char *(*event_source)(const evbus_event_t *ev);
    const char *(*event_time)(const evbus_event_t *ev);        /* RFC 3339 */
    const char *(*event_tenant)(const evbus_event_t *ev);      /* tenantid */
    const char *(*event_correlation_id)(const evbus_event_t *ev);
    const char *(*event_stream_id)(const evbus_event_t *ev);   /* "ms-seq" */
    /* Any top-level attribute rendered as a string (extensions included). */
    const char *(*event_attr)(const evbus_event_t *ev, const char *name);
    /* `data` serialized as JSON (after upcasting); *len receives the size. */
    const char *(*event_data_json)(const evbus_event_t *ev, size_t *len);
    /* The entry's raw bytes as read from the stream (before upcasting). */
    const char *(*event_raw)(const evbus_event_t *ev, size_t *len);
    /* `data` as a borrowed jansson json_t * (for plugins linking jansson).
     * Read it; never json_incref() it to keep it past the call (the host
     * drops the whole tree with its per-thread arena): json_deep_copy()
     * what you need to keep. */
    const void *(*event_data_jansson)(const evbus_event_t *ev);
    int (*event_schema_version)(const evbus_event_t *ev); /* 0 when unknown */
    int (*event_attempt)(const evbus_event_t *ev);        /* 1 on first try */
    int (*event_is_replay)(const evbus_event_t *ev);      /* 1 during replay */
    const char *(*event_replay_job)(const evbus_event_t *ev); /* job id or NULL */

    /*
     * Publish a new event to the bus's stream.  `data_json` must be a JSON
     * value; `correlation_id` may be NULL (the host generates one).  On
     * success writes the new stream id into out_id and returns 0; returns
     * -1 with a message in err otherwise.
     */
    int (*publish)(const char *type, const char *tenant, const char *data_json,
                   const char *correlation_id, char *out_id, size_t out_len, char *err,
                   size_t errlen);

    /* Append bytes to an upcaster's output buffer.  Returns 0 or -1. */
    int (*buf_append)(evbus_buf_t *buf, const char *bytes, size_t len);

    /* The instance name the host is currently calling (init or handler). */
    const char *(*instance_name)(void);

    /*
     * Cooperative cancellation (ABI 1.2): the milliseconds left before this
     * handler call overruns its timeout (timeout_ms / handler_timeout_ms);
     * 0 or less once it has.  A long handler may poll it and give up with
     * EVBUS_RETRY.  The host never interrupts a call: a call that returns
     * EVBUS_OK after its deadline still counts as OK (see docs/plugins.md,
     * "Timeouts").  NULL in hosts older than 1.2.
     */
    int64_t (*event_deadline_ms)(const evbus_event_t *ev);

    /*
     * Why this handler call failed (ABI 1.3; NULL before), for the people
     * who read about it.  Call it from the handler, on its thread, with the
     * event it was given, before returning EVBUS_RETRY or EVBUS_REJECT: the
     * text (printf-style; the first 300 bytes are kept, control characters
     * become spaces) follows the handler's name in the retry schedule, the
     * dead letter's `error` field, the event's last_error in PostgreSQL and
     * the log.  A later call replaces an earlier one; with EVBUS_OK the
     * text is dropped.  Returns 0, or -1 outside a handler call (nothing is
     * kept: init, fini, upcasters, other threads after the call returned).
     */
    int (*set_reason)(const evbus_event_t *ev, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

    /*
     * The EVBUS_INIT_* flags of the instance the host is initialising or
     * finalising on this thread: valid in init() and in fini(), 0 anywhere
     * else (ABI 1.3; NULL before).  See EVBUS_INIT_CHECK.
     */
    uint32_t (*init_flags)(void);
};

/* Every plugin defines exactly this function. */
typedef const evbus_plugin_descriptor_t *(*evbus_plugin_descriptor_fn)(void);

/*
 * Less boilerplate (ABI 1.3).  A whole plugin, without the functions:
 *
 *   static const evbus_subscriber_t subscribers[] = {
 *       EVBUS_SUBSCRIBER("main", "approval.**", 100, count_handle),
 *   };
 *   EVBUS_PLUGIN("count", "1.0.0", 0, .init = count_init, .fini = count_fini,
 *                EVBUS_SUBSCRIBERS(subscribers));
 *
 * EVBUS_PLUGIN(name, version, flags, ...) defines the descriptor, with
 * abi_version, struct_size and EVBUS_PLUGIN_F_HANDLER_API | flags filled
 * in and the remaining arguments as designated initializers of the other
 * fields, and exports evbus_plugin_descriptor() returning it.  Write it
 * once, at file scope, after the arrays it names.
 *
 * EVBUS_SUBSCRIBER(name, pattern, priority, fn) is one subscriber row;
 * fn is an evbus_handler_api_fn.  EVBUS_SUBSCRIBERS(array),
 * EVBUS_UPCASTERS(array) and EVBUS_CONFIG_MAP(array) set a descriptor's
 * array and its count (a config map also needs EVBUS_PLUGIN_F_CONFIG_MAP
 * in flags).  EVBUS_COUNT(array) counts an array's elements; with GCC or
 * clang, handing it a pointer is a compile error instead of a wrong count.
 *
 * A plugin built with these sets EVBUS_PLUGIN_F_HANDLER_API, so a host
 * older than ABI 1.3 refuses it by name, and it may use every host API
 * field of 1.3 without checking api->struct_size.
 */
#if defined(__GNUC__) && !defined(__cplusplus)
#define EVBUS_NOT_A_POINTER_(a)                                                               \
    (0 * sizeof(struct {                                                                       \
         unsigned evbus_count_needs_an_array                                                   \
             : 1 - 2 * __builtin_types_compatible_p(__typeof__(a), __typeof__(&(a)[0]));      \
     }))
#else
#define EVBUS_NOT_A_POINTER_(a) 0
#endif
#define EVBUS_COUNT(a) (sizeof(a) / sizeof((a)[0]) + EVBUS_NOT_A_POINTER_(a))

#define EVBUS_SUBSCRIBER(name_, pattern_, priority_, fn_)                                      \
    { .name = (name_), .pattern = (pattern_), .priority = (priority_), .handler_api = (fn_) }
#define EVBUS_SUBSCRIBERS(a) .subscribers = (a), .n_subscribers = EVBUS_COUNT(a)
#define EVBUS_UPCASTERS(a) .upcasters = (a), .n_upcasters = EVBUS_COUNT(a)
#define EVBUS_CONFIG_MAP(a) .config_map = (a), .n_config_map = EVBUS_COUNT(a)

#define EVBUS_PLUGIN(name_, version_, flags_, ...)                                             \
    static const evbus_plugin_descriptor_t evbus_plugin_descriptor_value = {                  \
        .abi_version = EVBUS_ABI_VERSION,                                                      \
        .struct_size = sizeof(evbus_plugin_descriptor_t),                                      \
        .name = (name_),                                                                       \
        .version = (version_),                                                                 \
        .flags = EVBUS_PLUGIN_F_HANDLER_API | (flags_),                                        \
        __VA_ARGS__};                                                                          \
    EVBUS_PLUGIN_EXPORT const evbus_plugin_descriptor_t *evbus_plugin_descriptor(void);       \
    EVBUS_PLUGIN_EXPORT const evbus_plugin_descriptor_t *evbus_plugin_descriptor(void)        \
    {                                                                                          \
        return &evbus_plugin_descriptor_value;                                                 \
    }                                                                                          \
    typedef int evbus_plugin_defined_here /* takes the caller's semicolon */

#ifdef __cplusplus
}
#endif

#endif /* EVBUS_PLUGIN_H */
