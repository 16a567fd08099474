/*
 * event — the one place where an event's processing state lives.
 *
 * struct evbus_event (opaque to plugins as evbus_event_t) holds everything
 * the host knows about one delivery: where it came from (stream id, raw
 * bytes, delivery count), what it is (the parsed envelope, borrowed
 * attribute pointers, schema version, data after upcasting), retry state
 * (target handler, attempt, first failure) and the outcome so far (status,
 * per-handler results, failing handlers, last error).  Dispatch, retries,
 * the DLQ writer and the metadata writer all read this struct; none keeps
 * its own copy of the state.
 *
 * Thread rules: an event is owned by the one thread dispatching it.
 * Ownership: `raw` is borrowed from the Redis reply of its batch; `env` and
 * everything allocated through event_* functions belong to the event and
 * are released by event_reset().
 */
#ifndef EVBUS_CORE_EVENT_H
#define EVBUS_CORE_EVENT_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <evbus/plugin.h>

#include "client/evbus_client.h"
#include "core/jarena.h"

#define EVENT_MAX_HANDLERS 64

typedef enum event_status {
    EV_STATUS_PROCESSING = 0,
    EV_STATUS_COMPLETED,
    EV_STATUS_RETRYING,
    EV_STATUS_DEAD_LETTERED,
    EV_STATUS_IGNORED,
} event_status_t;

const char *event_status_name(event_status_t s);

struct evbus_event {
    /* source */
    const char *stream_id;     /* "ms-seq", borrowed */
    const char *raw;           /* the `event` field, borrowed; NULL if absent */
    size_t raw_len;
    const char *retry_meta;    /* the `retry` field (JSON) or NULL */
    const char *retried_from;  /* the `retried_from` field or NULL */

    /* parsed envelope and borrowed attributes */
    json_t *env;
    const char *id, *type, *source, *time, *tenant, *correlation_id;
    /* borrowed from env, NULL when absent: the data's version claim
     * (schema_claimed_version in schema/schema.h) */
    const json_t *schemaversion, *dataschema;
    int schema_version;        /* resolved: claimed, or latest when unclaimed */
    json_t *data;              /* borrowed from env, or data_versions[] */
    json_t *data_versions[8];  /* upcast results, owned; index = version - schema_version - 1 */
    char *data_json;           /* lazy serialization of `data`, owned */
    size_t data_json_len;
    /* Parse on first use: set by isolation's child (evbus-plugin-runner),
     * whose handler may never look at the envelope (a counter, a
     * forwarder of raw bytes).  While set, env and the attributes above
     * are not filled yet; the host API's accessors that need them call
     * event_parse() first, once (under a lock: a handler may hand the
     * event to its own threads during the call), then read the data from
     * lazy_data (the JSON at the handler's version) when it is not NULL.
     * Never set in evbusd itself. */
    atomic_bool lazy;
    const char *lazy_data;
    size_t lazy_data_len;
    char attr_buf[256];        /* scratch for event_attr() of non-strings */

    /* the running handler call's deadline (clock_coarse_ms), 0 = none */
    int64_t deadline_ms;
    /* where api->set_reason writes during a handler call (dispatch's
     * why[] of that handler); NULL outside a call */
    char *reason;
    size_t reason_len;

    /* retry state */
    int attempt;               /* 1 on first delivery to a handler */
    char *retry_target;        /* "instance/subscriber" or NULL: all handlers */
    char orig_sid[32];         /* stream id of the original entry (retries keep it) */
    int64_t first_failure_ms;  /* 0 when never failed */
    json_t *attempt_errors;    /* the earlier attempts' errors (retry metadata "ae", see
                                  dispatch.c), owned; NULL when none */
    /* the retry target owns the event's key (core/keyorder.h): its
     * schedule entry carried "ko":1 */
    bool key_owner;
    bool is_replay;
    char *replay_job;

    /* outcome of this delivery */
    event_status_t status;
    evbus_dlq_reason_t dlq_reason; /* why it is (to be) dead-lettered, else EVBUS_DLQ_NONE */
    char error[512];           /* last error text */
    uint8_t n_failed;          /* handlers that failed permanently */
    const char *failed[EVENT_MAX_HANDLERS];
    uint8_t n_outcomes;        /* per-handler outcomes, rendered only for metadata */
    struct {
        const char *handler;   /* borrowed from the generation */
        const char *outcome;   /* static: "ok", "retry", "reject", ... */
    } outcomes[EVENT_MAX_HANDLERS];

    /* Where the envelope tree is parsed (the dispatching thread's arena), or
     * NULL for the heap.  Set once by the owner; event_reset keeps it. */
    jarena_t *arena;
};

/* An upcaster's output buffer (opaque to plugins). */
struct evbus_buf {
    char *data;
    size_t len, cap;
};

/* Clear an event for reuse, freeing what it owns. */
void event_reset(struct evbus_event *ev);

/* Set the error text (printf-style). */
void event_set_error(struct evbus_event *ev, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Record one handler's outcome ("ok", "retry", "reject"...).  Both strings
 * are borrowed: they must live until the event is reset. */
void event_note_outcome(struct evbus_event *ev, const char *handler, const char *outcome);

/* Render the outcomes as a JSON object {"inst/sub":"ok",...} into buf. */
void event_outcomes_json(const struct evbus_event *ev, char *buf, size_t len);

/*
 * Parse ev->raw and check the CloudEvents envelope: specversion "1.0", id,
 * source, type (lowercase dot segments), time (RFC 3339), tenantid.
 * Returns 0, or -1 with ev->dlq_reason (EVBUS_DLQ_UNPARSEABLE or
 * EVBUS_DLQ_INVALID_ENVELOPE) and ev->error set.  Also parses retry_meta
 * when present.
 */
int event_parse(struct evbus_event *ev);

/* Whether s is an RFC 3339 date-time (used for `time`). */
bool event_is_rfc3339(const char *s);

/* The host API table handed to plugins (static, lives forever). */
const evbus_host_api_t *event_host_api(void);

/*
 * Configure the host API's publish(): every thread that calls it gets its
 * own client, on the Redis Cluster of the seeds `cluster` when not NULL
 * (evbus_client_new_cluster), else on the server at redis_url, for stream,
 * which has `partitions` partition streams (1: the stream itself).  Call before any
 * plugin is initialised; later calls replace the settings for new threads.
 */
void event_host_api_configure(const char *redis_url, const char *cluster, const char *stream,
                              unsigned partitions);

/* redis.wait_replicas for the host API's publish(): read at every publish,
 * so a reload changes it for every thread's client.  Any thread. */
void event_host_api_set_wait(unsigned replicas, uint32_t timeout_ms);

#endif
