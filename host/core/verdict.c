/*
 * verdict — see verdict.h.  The checks run in the order verdict.h lists
 * them, which is also the order dispatch learns the facts in, so a stage
 * that settles the event spares dispatch the work of the next one (routing
 * a poison pill, validating an event nobody subscribes to).
 */
#include "core/verdict.h"

#include <math.h>

static bool settle(verdict_t *out, event_status_t status, evbus_dlq_reason_t reason)
{
    out->decided = true;
    out->status = status;
    out->reason = reason;
    return true;
}

static bool dead_letter(verdict_t *out, evbus_dlq_reason_t reason)
{
    return settle(out, EV_STATUS_DEAD_LETTERED, reason);
}

static bool schema_settles(const verdict_input_t *in, verdict_t *out)
{
    bool any_check = false, any_enforce = false;
    for (size_t i = 0; i < in->n_handlers; i++) {
        any_check |= in->handlers[i].schema_mode != SCHEMA_MODE_OFF;
        any_enforce |= in->handlers[i].schema_mode == SCHEMA_MODE_ENFORCE;
    }
    if (in->claimed_version < 0)
        return dead_letter(out, EVBUS_DLQ_UNKNOWN_VERSION);
    if (in->latest_version == 0 && any_check && in->unknown_type_rejects)
        return dead_letter(out, EVBUS_DLQ_NO_SCHEMA);
    if (in->latest_version > 0 && !in->schema_found)
        return dead_letter(out, EVBUS_DLQ_UNKNOWN_VERSION);
    if (in->data == VERDICT_DATA_INVALID && any_enforce)
        return dead_letter(out, EVBUS_DLQ_SCHEMA_INVALID);
    out->schema_advisory = in->data == VERDICT_DATA_INVALID && any_check;
    return false;
}

/* Everything before the handlers' results.  true when it settles the event
 * or the facts stop short of the results. */
static bool stops_before_results(const verdict_input_t *in, verdict_t *out)
{
    if (in->max_deliveries && in->deliveries > in->max_deliveries)
        return dead_letter(out, EVBUS_DLQ_POISON);
    if (in->envelope != EVBUS_DLQ_NONE)
        return dead_letter(out, in->envelope);
    if (in->known < VERDICT_KNOWN_ROUTE)
        return true;
    if (in->is_retry && in->n_handlers == 0)
        return dead_letter(out, EVBUS_DLQ_HANDLER_GONE);
    if (in->n_handlers == 0)
        return settle(out, EV_STATUS_IGNORED, EVBUS_DLQ_NONE);
    if (in->known < VERDICT_KNOWN_SCHEMA || schema_settles(in, out))
        return true;
    return in->known < VERDICT_KNOWN_RESULTS;
}

static verdict_outcome_t outcome_of(const verdict_handler_in_t *h, int attempt,
                                    int64_t *delay_ms)
{
    *delay_ms = 0;
    switch (h->result) {
    case VERDICT_RESULT_OK: return VERDICT_OUTCOME_OK;
    case VERDICT_RESULT_DEDUP_SKIPPED: return VERDICT_OUTCOME_DEDUP;
    case VERDICT_RESULT_REJECT: return VERDICT_OUTCOME_REJECT;
    case VERDICT_RESULT_UPCAST_FAILED: return VERDICT_OUTCOME_UPCAST_FAILED;
    case VERDICT_RESULT_PAUSED: return VERDICT_OUTCOME_PAUSED; /* spends no attempt */
    case VERDICT_RESULT_HELD: return VERDICT_OUTCOME_HELD;     /* nor does a held one */
    case VERDICT_RESULT_NOT_RUN:
    case VERDICT_RESULT_RETRY:
    case VERDICT_RESULT_TIMEOUT: break;
    }
    if ((uint32_t)attempt >= h->retry->max_attempts)
        return VERDICT_OUTCOME_EXHAUSTED;
    *delay_ms = verdict_backoff_ms(h->retry, attempt, h->rnd);
    return VERDICT_OUTCOME_RETRY;
}

static void decide_results(const verdict_input_t *in, verdict_t *out)
{
    size_t n = in->n_handlers < EVENT_MAX_HANDLERS ? in->n_handlers : EVENT_MAX_HANDLERS;
    for (size_t i = 0; i < n; i++)
        if (in->handlers[i].result == VERDICT_RESULT_NOT_RUN)
            return; /* still running: not decided */
    int attempt = in->attempt < 1 ? 1 : in->attempt;
    bool retry = false, reject = false, exhausted = false, upcast = false;
    for (size_t i = 0; i < n; i++) {
        verdict_handler_out_t *h = &out->handlers[i];
        h->outcome = outcome_of(&in->handlers[i], attempt, &h->delay_ms);
        retry |= h->outcome == VERDICT_OUTCOME_RETRY || h->outcome == VERDICT_OUTCOME_PAUSED ||
                 h->outcome == VERDICT_OUTCOME_HELD;
        reject |= h->outcome == VERDICT_OUTCOME_REJECT;
        exhausted |= h->outcome == VERDICT_OUTCOME_EXHAUSTED;
        upcast |= h->outcome == VERDICT_OUTCOME_UPCAST_FAILED;
    }
    out->n_handlers = n;
    /* a failed handler dead-letters the event even when another one is
     * retried: the retry stays scheduled, as each handler's fate is its own */
    if (reject)
        dead_letter(out, EVBUS_DLQ_REJECT);
    else if (exhausted)
        dead_letter(out, EVBUS_DLQ_RETRIES_EXHAUSTED);
    else if (upcast)
        dead_letter(out, EVBUS_DLQ_UPCAST_FAILED);
    else
        settle(out, retry ? EV_STATUS_RETRYING : EV_STATUS_COMPLETED, EVBUS_DLQ_NONE);
}

void verdict_decide(const verdict_input_t *in, verdict_t *out)
{
    /* field by field: clearing handlers[] would cost more than deciding */
    out->decided = false;
    out->status = EV_STATUS_PROCESSING;
    out->reason = EVBUS_DLQ_NONE;
    out->schema_advisory = false;
    out->n_handlers = 0;
    if (!stops_before_results(in, out))
        decide_results(in, out);
    out->ack = out->decided && in->from_group;
}

int64_t verdict_backoff_ms(const retry_policy_t *p, int attempt, double rnd)
{
    double growth = pow(p->factor > 1.0 ? p->factor : 1.0, attempt > 1 ? attempt - 1 : 0);
    double delay = p->base_ms * growth;
    if (delay > p->max_ms)
        delay = p->max_ms;
    /* spread +/- jitter/2 around the delay so hosts do not retry in step */
    delay *= 1.0 + p->jitter * (rnd - 0.5);
    return delay < 0 ? 0 : (int64_t)delay;
}

const char *verdict_outcome_name(verdict_outcome_t o)
{
    static const char *const names[] = {
#define NAME(id, name) name,
        VERDICT_OUTCOMES(NAME)
#undef NAME
    };
    return (unsigned)o < sizeof names / sizeof names[0] ? names[o] : NULL;
}
