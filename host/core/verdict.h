/*
 * verdict — what happens to one delivery, decided from facts alone.
 *
 * Dispatch learns about an event in stages: how often the group delivered
 * it and whether its envelope holds, which handlers match, what its schema
 * says, then what each handler returned.  After each stage it asks
 * verdict_decide(), which either says "not decided: learn the next stage"
 * or gives the whole verdict: whether the entry is acknowledged, each
 * handler's outcome (and the delay of its retry), the dead-letter reason
 * and the event's final status.  Dispatch then performs it (its effects
 * step: retry schedule entries, the dead letter, metadata, counters, logs).
 *
 * Keeping the decision apart from the Redis writes is what lets the table
 * be tested without a server (tests/unit/verdict): nothing here reads a
 * clock, draws a random number, logs or allocates, and the same input
 * always gives the same verdict.  Error texts are not decided here: they
 * describe facts and belong to whoever gathered them.
 *
 * Threads: every function may be called from any thread.
 */
#ifndef EVBUS_CORE_VERDICT_H
#define EVBUS_CORE_VERDICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/evbus_client.h"
#include "core/core_settings.h"
#include "core/event.h"
#include "schema/schema_settings.h"

/* How far the facts of a verdict_input_t go; each stage includes the ones
 * before it.  Fields of later stages are not read. */
typedef enum verdict_stage {
    VERDICT_KNOWN_ENVELOPE = 0, /* delivery count, envelope check */
    VERDICT_KNOWN_ROUTE,        /* + the matching handlers and their schema modes */
    VERDICT_KNOWN_SCHEMA,       /* + schema version and payload validity */
    VERDICT_KNOWN_RESULTS,      /* + every handler's result */
} verdict_stage_t;

/* What became of one handler's call. */
typedef enum verdict_result {
    VERDICT_RESULT_NOT_RUN = 0,   /* not called yet */
    VERDICT_RESULT_OK,            /* returned EVBUS_OK in time */
    VERDICT_RESULT_RETRY,         /* returned EVBUS_RETRY (or anything but OK/REJECT) */
    VERDICT_RESULT_TIMEOUT,       /* overran its timeout, whatever it returned: a retry */
    VERDICT_RESULT_REJECT,        /* returned EVBUS_REJECT */
    VERDICT_RESULT_UPCAST_FAILED, /* no data at a version it accepts: not called */
    VERDICT_RESULT_DEDUP_SKIPPED, /* its dedup claim was already taken: not called */
    VERDICT_RESULT_PAUSED,        /* its instance is paused: not called */
    VERDICT_RESULT_HELD,          /* its key waits for an earlier event (per_key): not called */
} verdict_result_t;

typedef struct verdict_handler_in {
    schema_mode_t schema_mode;
    const retry_policy_t *retry; /* borrowed; read only for RETRY and TIMEOUT */
    verdict_result_t result;
    double rnd;                  /* in [0,1): the jitter of this handler's retry delay */
} verdict_handler_in_t;

/* Whether the payload was validated, and how that went. */
typedef enum verdict_data {
    VERDICT_DATA_UNCHECKED = 0, /* no schema to check against, or no handler checks */
    VERDICT_DATA_VALID,
    VERDICT_DATA_INVALID,
} verdict_data_t;

typedef struct verdict_input {
    verdict_stage_t known;

    /* VERDICT_KNOWN_ENVELOPE */
    bool from_group;         /* delivered by the consumer group (false: a replay read) */
    uint64_t deliveries;     /* the group's delivery count when claimed again, else 0 */
    uint32_t max_deliveries; /* reclaim.max_deliveries; 0 = unbounded */
    evbus_dlq_reason_t envelope; /* EVBUS_DLQ_NONE when the envelope holds, else why not */

    /* VERDICT_KNOWN_ROUTE */
    bool is_retry;           /* a scheduled retry: only the handler it names may run */
    size_t n_handlers;       /* matching handlers, in call order (<= EVENT_MAX_HANDLERS) */
    const verdict_handler_in_t *handlers; /* borrowed */

    /* VERDICT_KNOWN_SCHEMA */
    bool unknown_type_rejects; /* schemas.unknown_type: reject */
    int claimed_version;     /* the event's claim: < 0 malformed, 0 none, else the version */
    int latest_version;      /* of the type in the catalog; 0 = the type has no schema */
    bool schema_found;       /* the catalog has the version the event resolves to */
    verdict_data_t data;

    /* VERDICT_KNOWN_RESULTS (handlers[i].result) */
    int attempt;             /* 1 on the first delivery; a retry carries its own */
} verdict_input_t;

/* A handler's outcome, as recorded in the event's metadata. */
#define VERDICT_OUTCOMES(X)                                                                    \
    X(OK, "ok")                                                                                \
    X(DEDUP, "dedup")                                                                          \
    X(RETRY, "retry")             /* scheduled for attempt + 1 after delay_ms */              \
    X(EXHAUSTED, "exhausted")     /* asked for a retry with no attempt left: failed */        \
    X(REJECT, "reject")           /* failed */                                                \
    X(UPCAST_FAILED, "upcast_failed") /* failed */                                           \
    X(PAUSED, "paused")           /* deferred to the schedule, due now, same attempt */    \
    X(HELD, "held")               /* queued behind its key's owner, same attempt */

typedef enum verdict_outcome {
#define VERDICT_OUTCOME_ENUM(id, name) VERDICT_OUTCOME_##id,
    VERDICT_OUTCOMES(VERDICT_OUTCOME_ENUM)
#undef VERDICT_OUTCOME_ENUM
} verdict_outcome_t;

typedef struct verdict_handler_out {
    verdict_outcome_t outcome;
    int64_t delay_ms;        /* RETRY: how long after now the retry is due; else 0 */
} verdict_handler_out_t;

typedef struct verdict {
    bool decided;            /* false: learn the next stage and ask again */
    bool ack;                /* acknowledge the entry (in the same MULTI/EXEC as the rest) */
    event_status_t status;   /* PROCESSING while not decided */
    evbus_dlq_reason_t reason; /* set exactly when status is DEAD_LETTERED */
    /* The payload fails its schema but no matching subscription enforces:
     * deliver it and say so.  Holds from the schema stage on. */
    bool schema_advisory;
    size_t n_handlers;       /* handlers[] filled once the results are known, else 0 */
    verdict_handler_out_t handlers[EVENT_MAX_HANDLERS];
} verdict_t;

/*
 * Decide what in says (out is overwritten).  The checks, first match wins:
 *   delivered more than max_deliveries times          -> dead letter, poison
 *   the envelope does not hold                        -> dead letter, its reason
 *   a retry whose handler no longer matches           -> dead letter, handler_gone
 *   nothing matches                                   -> IGNORED
 *   malformed version claim                           -> dead letter, unknown_version
 *   no schema for the type, unknown types rejected
 *   and some handler checks schemas                   -> dead letter, no_schema
 *   the type has schemas but not the event's version -> dead letter, unknown_version
 *   invalid payload and some handler enforces         -> dead letter, schema_invalid
 *   invalid payload and some handler checks           -> delivered, schema_advisory
 * then, per handler: OK and DEDUP_SKIPPED are done; REJECT and
 * UPCAST_FAILED fail; PAUSED is deferred (scheduled due now with the same
 * attempt, whatever max_attempts says: a pause spends no attempt; the
 * retry mover parks it while the instance stays paused); HELD is queued
 * behind the event that owns its key (per_key ordering, core/keyorder.h:
 * no attempt spent either, the event is RETRYING); RETRY and
 * TIMEOUT are retried after
 * verdict_backoff_ms(policy, attempt, rnd) while attempt < max_attempts
 * and are EXHAUSTED (failed) otherwise.  Any failed handler dead-letters
 * the event with reject, else retries_exhausted, else upcast_failed (in
 * that order of precedence), and its retries and deferrals are still
 * scheduled; else any retry or deferral makes it RETRYING; else it is
 * COMPLETED.
 * Every decided verdict acknowledges an entry delivered by the group.  At
 * VERDICT_KNOWN_RESULTS a handler still VERDICT_RESULT_NOT_RUN leaves the
 * event undecided.
 */
void verdict_decide(const verdict_input_t *in, verdict_t *out);

/* Delay of the retry after attempt n (1-based) of a policy:
 * min(max_ms, base_ms * factor^(n-1)), spread by +/- jitter/2 with rnd in
 * [0,1) (0.5 = no spread); never negative. */
int64_t verdict_backoff_ms(const retry_policy_t *p, int attempt, double rnd);

/* "ok", "retry", ... (static), or NULL out of range. */
const char *verdict_outcome_name(verdict_outcome_t o);

#endif
