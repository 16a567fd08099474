/*
 * The verdict table (host/core/verdict.h): what each combination of facts
 * makes of a delivery — ack, status, dead-letter reason, each handler's
 * outcome and retry delay.  No Redis and no clock: retry delays are exact
 * because every handler's random value is fixed.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/verdict.h"

/* 1 s doubling up to 60 s, 3 attempts, spread +/- 10 %. */
static const retry_policy_t POLICY = {
    .base_ms = 1000, .factor = 2.0, .max_ms = 60000, .max_attempts = 3, .jitter = 0.2};

#define RND_LOW 0.0 /* the low end of the spread: 90 % of the delay */
#define RND_MID 0.5 /* no spread */

static verdict_handler_in_t hs[EVENT_MAX_HANDLERS];
static verdict_t v;

/* A valid first delivery from the group with n matching handlers (enforce,
 * POLICY, OK, RND_LOW), a schema for its version and a valid payload,
 * known up to `known`.  Tests change the facts they are about. */
static verdict_input_t event(size_t n, verdict_stage_t known)
{
    for (size_t i = 0; i < n; i++)
        hs[i] = (verdict_handler_in_t){.schema_mode = SCHEMA_MODE_ENFORCE,
                                       .retry = &POLICY,
                                       .result = VERDICT_RESULT_OK,
                                       .rnd = RND_LOW};
    return (verdict_input_t){.known = known,
                             .from_group = true,
                             .max_deliveries = 5,
                             .n_handlers = n,
                             .handlers = hs,
                             .claimed_version = 1,
                             .latest_version = 1,
                             .schema_found = true,
                             .data = VERDICT_DATA_VALID,
                             .attempt = 1};
}

static const char *rname(evbus_dlq_reason_t r)
{
    return r == EVBUS_DLQ_NONE ? "none" : evbus_dlq_reason_name(r);
}

static const char *oname(verdict_outcome_t o) { return verdict_outcome_name(o); }

static void expect_settled(event_status_t status, evbus_dlq_reason_t reason)
{
    cr_expect(v.decided, "not decided");
    cr_expect(v.ack, "an entry from the group must be acked once decided");
    cr_expect_eq(v.status, status, "status %s, expected %s", event_status_name(v.status),
                 event_status_name(status));
    cr_expect_eq(v.reason, reason, "reason %s, expected %s", rname(v.reason), rname(reason));
}

static void expect_undecided(void)
{
    cr_expect(!v.decided, "decided too early");
    cr_expect(!v.ack, "acked before a decision");
    cr_expect_eq(v.status, EV_STATUS_PROCESSING);
    cr_expect_eq(v.reason, EVBUS_DLQ_NONE, "reason %s before a decision", rname(v.reason));
    cr_expect_eq(v.n_handlers, 0);
}

static void expect_handler(size_t i, verdict_outcome_t outcome, int64_t delay_ms)
{
    cr_assert_gt(v.n_handlers, i, "only %zu handler verdicts", v.n_handlers);
    cr_expect_eq(v.handlers[i].outcome, outcome, "handler %zu: %s, expected %s", i,
                 oname(v.handlers[i].outcome), oname(outcome));
    cr_expect_eq(v.handlers[i].delay_ms, delay_ms, "handler %zu: delay %lld, expected %lld", i,
                 (long long)v.handlers[i].delay_ms, (long long)delay_ms);
}

/* ---- delivery ------------------------------------------------------------ */

Test(verdict_delivery, more_deliveries_than_max_is_poison_before_any_handler)
{
    verdict_input_t in = event(1, VERDICT_KNOWN_RESULTS);
    in.deliveries = 6;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_POISON);
    cr_expect_eq(v.n_handlers, 0);
}

Test(verdict_delivery, poison_wins_over_a_broken_envelope)
{
    verdict_input_t in = event(0, VERDICT_KNOWN_ENVELOPE);
    in.deliveries = 6;
    in.envelope = EVBUS_DLQ_UNPARSEABLE;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_POISON);
}

Test(verdict_delivery, exactly_max_deliveries_is_not_poison)
{
    verdict_input_t in = event(1, VERDICT_KNOWN_RESULTS);
    in.deliveries = 5;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_COMPLETED, EVBUS_DLQ_NONE);
}

Test(verdict_delivery, zero_max_deliveries_is_unbounded)
{
    verdict_input_t in = event(1, VERDICT_KNOWN_RESULTS);
    in.max_deliveries = 0;
    in.deliveries = 1000000;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_COMPLETED, EVBUS_DLQ_NONE);
}

Test(verdict_delivery, a_replay_is_decided_but_never_acked)
{
    verdict_input_t in = event(1, VERDICT_KNOWN_RESULTS);
    in.from_group = false;
    verdict_decide(&in, &v);
    cr_expect(v.decided);
    cr_expect(!v.ack);
    cr_expect_eq(v.status, EV_STATUS_COMPLETED);

    hs[0].result = VERDICT_RESULT_REJECT;
    verdict_decide(&in, &v);
    cr_expect(v.decided);
    cr_expect(!v.ack);
    cr_expect_eq(v.reason, EVBUS_DLQ_REJECT);
}

/* ---- envelope ------------------------------------------------------------ */

Test(verdict_envelope, an_unparseable_entry_is_dead_lettered_unparseable)
{
    verdict_input_t in = event(0, VERDICT_KNOWN_ENVELOPE);
    in.envelope = EVBUS_DLQ_UNPARSEABLE;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_UNPARSEABLE);
}

Test(verdict_envelope, a_bad_envelope_is_dead_lettered_invalid_envelope)
{
    verdict_input_t in = event(0, VERDICT_KNOWN_ENVELOPE);
    in.envelope = EVBUS_DLQ_INVALID_ENVELOPE;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_INVALID_ENVELOPE);
}

Test(verdict_envelope, a_valid_envelope_alone_decides_nothing)
{
    verdict_input_t in = event(1, VERDICT_KNOWN_ENVELOPE);
    verdict_decide(&in, &v);
    expect_undecided();
}

Test(verdict_envelope, facts_of_later_stages_are_not_read)
{
    verdict_input_t in = event(1, VERDICT_KNOWN_ROUTE);
    in.claimed_version = -1;
    hs[0].result = VERDICT_RESULT_REJECT;
    verdict_decide(&in, &v);
    expect_undecided();
}

/* ---- route --------------------------------------------------------------- */

Test(verdict_route, a_retry_whose_handler_no_longer_matches_is_handler_gone)
{
    verdict_input_t in = event(0, VERDICT_KNOWN_ROUTE);
    in.is_retry = true;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_HANDLER_GONE);
}

Test(verdict_route, an_event_nobody_subscribes_to_is_ignored_and_acked)
{
    verdict_input_t in = event(0, VERDICT_KNOWN_ROUTE);
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_IGNORED, EVBUS_DLQ_NONE);
    cr_expect_eq(v.n_handlers, 0);
}

Test(verdict_route, matching_handlers_wait_for_the_schema_facts)
{
    verdict_input_t in = event(2, VERDICT_KNOWN_ROUTE);
    verdict_decide(&in, &v);
    expect_undecided();
}

/* ---- schema -------------------------------------------------------------- */

Test(verdict_schema, a_malformed_version_claim_is_unknown_version_even_unchecked)
{
    verdict_input_t in = event(1, VERDICT_KNOWN_SCHEMA);
    hs[0].schema_mode = SCHEMA_MODE_OFF;
    in.claimed_version = -1;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_UNKNOWN_VERSION);
}

Test(verdict_schema, a_version_the_catalog_lacks_is_unknown_version_even_unchecked)
{
    verdict_input_t in = event(1, VERDICT_KNOWN_SCHEMA);
    hs[0].schema_mode = SCHEMA_MODE_OFF;
    in.claimed_version = 3;
    in.latest_version = 2;
    in.schema_found = false;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_UNKNOWN_VERSION);
}

Test(verdict_schema, no_schema_when_unknown_types_are_rejected_and_a_handler_checks)
{
    verdict_input_t in = event(2, VERDICT_KNOWN_SCHEMA);
    hs[0].schema_mode = SCHEMA_MODE_OFF;
    hs[1].schema_mode = SCHEMA_MODE_ADVISORY;
    in.latest_version = 0;
    in.schema_found = false;
    in.data = VERDICT_DATA_UNCHECKED;
    in.unknown_type_rejects = true;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_NO_SCHEMA);
}

Test(verdict_schema, a_type_without_schema_runs_when_no_handler_checks)
{
    verdict_input_t in = event(1, VERDICT_KNOWN_SCHEMA);
    hs[0].schema_mode = SCHEMA_MODE_OFF;
    in.latest_version = 0;
    in.schema_found = false;
    in.data = VERDICT_DATA_UNCHECKED;
    in.unknown_type_rejects = true;
    verdict_decide(&in, &v);
    expect_undecided();
    in.known = VERDICT_KNOWN_RESULTS;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_COMPLETED, EVBUS_DLQ_NONE);
}

Test(verdict_schema, a_type_without_schema_runs_when_unknown_types_are_allowed)
{
    verdict_input_t in = event(1, VERDICT_KNOWN_RESULTS);
    in.latest_version = 0;
    in.schema_found = false;
    in.data = VERDICT_DATA_UNCHECKED;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_COMPLETED, EVBUS_DLQ_NONE);
}

Test(verdict_schema, one_enforcing_handler_dead_letters_an_invalid_payload_for_all)
{
    verdict_input_t in = event(3, VERDICT_KNOWN_SCHEMA);
    hs[0].schema_mode = SCHEMA_MODE_OFF;
    hs[1].schema_mode = SCHEMA_MODE_ADVISORY;
    in.data = VERDICT_DATA_INVALID;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_SCHEMA_INVALID);
    cr_expect_eq(v.n_handlers, 0);
}

Test(verdict_schema, advisory_handlers_get_an_invalid_payload_with_a_warning)
{
    verdict_input_t in = event(2, VERDICT_KNOWN_SCHEMA);
    hs[0].schema_mode = SCHEMA_MODE_OFF;
    hs[1].schema_mode = SCHEMA_MODE_ADVISORY;
    in.data = VERDICT_DATA_INVALID;
    verdict_decide(&in, &v);
    expect_undecided();
    cr_expect(v.schema_advisory);
    in.known = VERDICT_KNOWN_RESULTS;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_COMPLETED, EVBUS_DLQ_NONE);
    cr_expect(v.schema_advisory);
}

Test(verdict_schema, a_valid_or_unchecked_payload_carries_no_warning)
{
    verdict_input_t in = event(1, VERDICT_KNOWN_SCHEMA);
    hs[0].schema_mode = SCHEMA_MODE_ADVISORY;
    verdict_decide(&in, &v);
    cr_expect(!v.schema_advisory);
    hs[0].schema_mode = SCHEMA_MODE_OFF;
    in.data = VERDICT_DATA_INVALID; /* nobody asked: not a warning */
    verdict_decide(&in, &v);
    cr_expect(!v.schema_advisory);
    expect_undecided();
}

/* ---- one handler: every result x schema mode x payload x attempt -------- */

/* What one handler's result comes to on attempt 1, 2 and 3 (= POLICY's
 * max_attempts) with RND_LOW: outcome, delay, status, reason. */
typedef struct {
    verdict_outcome_t outcome;
    int64_t delay_ms;
    event_status_t status;
    evbus_dlq_reason_t reason;
} fate_t;

static const struct {
    verdict_result_t result;
    const char *name;
    fate_t at[3];
} SINGLE[] = {
    {VERDICT_RESULT_OK,
     "ok",
     {{VERDICT_OUTCOME_OK, 0, EV_STATUS_COMPLETED, EVBUS_DLQ_NONE},
      {VERDICT_OUTCOME_OK, 0, EV_STATUS_COMPLETED, EVBUS_DLQ_NONE},
      {VERDICT_OUTCOME_OK, 0, EV_STATUS_COMPLETED, EVBUS_DLQ_NONE}}},
    {VERDICT_RESULT_DEDUP_SKIPPED,
     "dedup",
     {{VERDICT_OUTCOME_DEDUP, 0, EV_STATUS_COMPLETED, EVBUS_DLQ_NONE},
      {VERDICT_OUTCOME_DEDUP, 0, EV_STATUS_COMPLETED, EVBUS_DLQ_NONE},
      {VERDICT_OUTCOME_DEDUP, 0, EV_STATUS_COMPLETED, EVBUS_DLQ_NONE}}},
    {VERDICT_RESULT_RETRY,
     "retry",
     {{VERDICT_OUTCOME_RETRY, 900, EV_STATUS_RETRYING, EVBUS_DLQ_NONE},
      {VERDICT_OUTCOME_RETRY, 1800, EV_STATUS_RETRYING, EVBUS_DLQ_NONE},
      {VERDICT_OUTCOME_EXHAUSTED, 0, EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_RETRIES_EXHAUSTED}}},
    {VERDICT_RESULT_TIMEOUT,
     "timeout",
     {{VERDICT_OUTCOME_RETRY, 900, EV_STATUS_RETRYING, EVBUS_DLQ_NONE},
      {VERDICT_OUTCOME_RETRY, 1800, EV_STATUS_RETRYING, EVBUS_DLQ_NONE},
      {VERDICT_OUTCOME_EXHAUSTED, 0, EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_RETRIES_EXHAUSTED}}},
    {VERDICT_RESULT_REJECT,
     "reject",
     {{VERDICT_OUTCOME_REJECT, 0, EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_REJECT},
      {VERDICT_OUTCOME_REJECT, 0, EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_REJECT},
      {VERDICT_OUTCOME_REJECT, 0, EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_REJECT}}},
    {VERDICT_RESULT_UPCAST_FAILED,
     "upcast failure",
     {{VERDICT_OUTCOME_UPCAST_FAILED, 0, EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_UPCAST_FAILED},
      {VERDICT_OUTCOME_UPCAST_FAILED, 0, EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_UPCAST_FAILED},
      {VERDICT_OUTCOME_UPCAST_FAILED, 0, EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_UPCAST_FAILED}}},
    {VERDICT_RESULT_PAUSED,
     "paused",
     {{VERDICT_OUTCOME_PAUSED, 0, EV_STATUS_RETRYING, EVBUS_DLQ_NONE},
      {VERDICT_OUTCOME_PAUSED, 0, EV_STATUS_RETRYING, EVBUS_DLQ_NONE},
      {VERDICT_OUTCOME_PAUSED, 0, EV_STATUS_RETRYING, EVBUS_DLQ_NONE}}},
    /* held behind its key (per_key): no attempt spent, whatever the count */
    {VERDICT_RESULT_HELD,
     "held",
     {{VERDICT_OUTCOME_HELD, 0, EV_STATUS_RETRYING, EVBUS_DLQ_NONE},
      {VERDICT_OUTCOME_HELD, 0, EV_STATUS_RETRYING, EVBUS_DLQ_NONE},
      {VERDICT_OUTCOME_HELD, 0, EV_STATUS_RETRYING, EVBUS_DLQ_NONE}}},
};

Test(verdict_results, every_result_by_mode_payload_and_attempt)
{
    static const schema_mode_t modes[] = {SCHEMA_MODE_ENFORCE, SCHEMA_MODE_ADVISORY};
    static const verdict_data_t payloads[] = {VERDICT_DATA_VALID, VERDICT_DATA_INVALID};
    for (size_t r = 0; r < sizeof SINGLE / sizeof SINGLE[0]; r++)
        for (size_t m = 0; m < 2; m++)
            for (size_t p = 0; p < 2; p++)
                for (int attempt = 1; attempt <= 3; attempt++) {
                    verdict_input_t in = event(1, VERDICT_KNOWN_RESULTS);
                    hs[0].schema_mode = modes[m];
                    hs[0].result = SINGLE[r].result;
                    in.data = payloads[p];
                    in.attempt = attempt;
                    verdict_decide(&in, &v);
                    char what[160];
                    snprintf(what, sizeof what, "%s, %s, %s payload, attempt %d of 3",
                             SINGLE[r].name, m ? "advisory" : "enforce", p ? "invalid" : "valid",
                             attempt);
                    bool invalid = payloads[p] == VERDICT_DATA_INVALID;
                    cr_assert(v.decided, "%s: not decided", what);
                    cr_assert(v.ack, "%s: not acked", what);
                    cr_assert_eq(v.schema_advisory, invalid && modes[m] == SCHEMA_MODE_ADVISORY,
                                 "%s: schema_advisory %d", what, v.schema_advisory);
                    if (invalid && modes[m] == SCHEMA_MODE_ENFORCE) {
                        cr_assert_eq(v.reason, EVBUS_DLQ_SCHEMA_INVALID, "%s: reason %s", what,
                                     rname(v.reason));
                        cr_assert_eq(v.n_handlers, 0, "%s: handlers ran", what);
                        continue;
                    }
                    const fate_t *f = &SINGLE[r].at[attempt - 1];
                    cr_assert_eq(v.status, f->status, "%s: status %s, expected %s", what,
                                 event_status_name(v.status), event_status_name(f->status));
                    cr_assert_eq(v.reason, f->reason, "%s: reason %s, expected %s", what,
                                 rname(v.reason), rname(f->reason));
                    cr_assert_eq(v.n_handlers, 1, "%s: %zu handler verdicts", what,
                                 v.n_handlers);
                    cr_assert_eq(v.handlers[0].outcome, f->outcome, "%s: %s, expected %s", what,
                                 oname(v.handlers[0].outcome), oname(f->outcome));
                    cr_assert_eq(v.handlers[0].delay_ms, f->delay_ms,
                                 "%s: delay %lld, expected %lld", what,
                                 (long long)v.handlers[0].delay_ms, (long long)f->delay_ms);
                }
}

Test(verdict_results, past_max_attempts_is_exhausted_too)
{
    verdict_input_t in = event(1, VERDICT_KNOWN_RESULTS);
    hs[0].result = VERDICT_RESULT_RETRY;
    in.attempt = 7;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_RETRIES_EXHAUSTED);
    expect_handler(0, VERDICT_OUTCOME_EXHAUSTED, 0);
}

Test(verdict_results, a_pause_spends_no_attempt_even_past_max_attempts)
{
    verdict_input_t in = event(1, VERDICT_KNOWN_RESULTS);
    hs[0].result = VERDICT_RESULT_PAUSED;
    in.attempt = 7;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_RETRYING, EVBUS_DLQ_NONE);
    expect_handler(0, VERDICT_OUTCOME_PAUSED, 0);
}

Test(verdict_results, a_handler_not_yet_run_leaves_the_event_undecided)
{
    verdict_input_t in = event(2, VERDICT_KNOWN_RESULTS);
    hs[1].result = VERDICT_RESULT_NOT_RUN;
    verdict_decide(&in, &v);
    expect_undecided();
}

/* ---- several handlers ----------------------------------------------------- */

Test(verdict_handlers, each_handler_keeps_its_own_fate)
{
    verdict_input_t in = event(3, VERDICT_KNOWN_RESULTS);
    hs[1].result = VERDICT_RESULT_RETRY;
    hs[2].result = VERDICT_RESULT_DEDUP_SKIPPED;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_RETRYING, EVBUS_DLQ_NONE);
    cr_assert_eq(v.n_handlers, 3);
    expect_handler(0, VERDICT_OUTCOME_OK, 0);
    expect_handler(1, VERDICT_OUTCOME_RETRY, 900);
    expect_handler(2, VERDICT_OUTCOME_DEDUP, 0);
}

Test(verdict_handlers, a_paused_handler_is_deferred_beside_the_others)
{
    verdict_input_t in = event(3, VERDICT_KNOWN_RESULTS);
    hs[1].result = VERDICT_RESULT_PAUSED;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_RETRYING, EVBUS_DLQ_NONE);
    expect_handler(0, VERDICT_OUTCOME_OK, 0);
    expect_handler(1, VERDICT_OUTCOME_PAUSED, 0);
    expect_handler(2, VERDICT_OUTCOME_OK, 0);
    hs[2].result = VERDICT_RESULT_REJECT; /* a failure still dead-letters; the deferral stays */
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_REJECT);
    expect_handler(1, VERDICT_OUTCOME_PAUSED, 0);
}

Test(verdict_handlers, every_handler_skipped_as_a_duplicate_completes)
{
    verdict_input_t in = event(2, VERDICT_KNOWN_RESULTS);
    hs[0].result = hs[1].result = VERDICT_RESULT_DEDUP_SKIPPED;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_COMPLETED, EVBUS_DLQ_NONE);
}

Test(verdict_handlers, a_failed_handler_keeps_another_handlers_retry_scheduled)
{
    verdict_input_t in = event(2, VERDICT_KNOWN_RESULTS);
    hs[0].result = VERDICT_RESULT_REJECT;
    hs[1].result = VERDICT_RESULT_TIMEOUT;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_REJECT);
    expect_handler(0, VERDICT_OUTCOME_REJECT, 0);
    expect_handler(1, VERDICT_OUTCOME_RETRY, 900);
}

Test(verdict_handlers, an_upcast_failure_dead_letters_beside_a_retry)
{
    verdict_input_t in = event(2, VERDICT_KNOWN_RESULTS);
    hs[0].result = VERDICT_RESULT_RETRY;
    hs[1].result = VERDICT_RESULT_UPCAST_FAILED;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_UPCAST_FAILED);
    expect_handler(0, VERDICT_OUTCOME_RETRY, 900);
    expect_handler(1, VERDICT_OUTCOME_UPCAST_FAILED, 0);
}

Test(verdict_handlers, reject_wins_over_exhausted_and_upcast_failed)
{
    verdict_input_t in = event(3, VERDICT_KNOWN_RESULTS);
    in.attempt = 3;
    hs[0].result = VERDICT_RESULT_UPCAST_FAILED;
    hs[1].result = VERDICT_RESULT_RETRY;
    hs[2].result = VERDICT_RESULT_REJECT;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_REJECT);
    expect_handler(1, VERDICT_OUTCOME_EXHAUSTED, 0);
}

Test(verdict_handlers, exhausted_wins_over_upcast_failed)
{
    verdict_input_t in = event(2, VERDICT_KNOWN_RESULTS);
    in.attempt = 3;
    hs[0].result = VERDICT_RESULT_UPCAST_FAILED;
    hs[1].result = VERDICT_RESULT_TIMEOUT;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_RETRIES_EXHAUSTED);
}

Test(verdict_handlers, each_handler_retries_under_its_own_policy)
{
    static const retry_policy_t two = {
        .base_ms = 100, .factor = 3.0, .max_ms = 60000, .max_attempts = 2, .jitter = 0};
    static const retry_policy_t five = {
        .base_ms = 100, .factor = 3.0, .max_ms = 60000, .max_attempts = 5, .jitter = 0};
    verdict_input_t in = event(2, VERDICT_KNOWN_RESULTS);
    in.attempt = 2;
    hs[0].retry = &two;
    hs[1].retry = &five;
    hs[0].result = hs[1].result = VERDICT_RESULT_RETRY;
    verdict_decide(&in, &v);
    expect_settled(EV_STATUS_DEAD_LETTERED, EVBUS_DLQ_RETRIES_EXHAUSTED);
    expect_handler(0, VERDICT_OUTCOME_EXHAUSTED, 0);
    expect_handler(1, VERDICT_OUTCOME_RETRY, 300);
}

Test(verdict_handlers, each_retry_draws_its_own_jitter)
{
    verdict_input_t in = event(2, VERDICT_KNOWN_RESULTS);
    hs[0].result = hs[1].result = VERDICT_RESULT_RETRY;
    hs[1].rnd = RND_MID;
    verdict_decide(&in, &v);
    expect_handler(0, VERDICT_OUTCOME_RETRY, 900);
    expect_handler(1, VERDICT_OUTCOME_RETRY, 1000);
}

/* ---- backoff ------------------------------------------------------------- */

Test(verdict_backoff, delays_grow_by_factor_from_base)
{
    cr_expect_eq(verdict_backoff_ms(&POLICY, 1, RND_MID), 1000);
    cr_expect_eq(verdict_backoff_ms(&POLICY, 2, RND_MID), 2000);
    cr_expect_eq(verdict_backoff_ms(&POLICY, 3, RND_MID), 4000);
    cr_expect_eq(verdict_backoff_ms(&POLICY, 4, RND_MID), 8000);
}

Test(verdict_backoff, a_delay_never_exceeds_max_ms_before_the_spread)
{
    retry_policy_t p = POLICY;
    p.max_ms = 3000;
    cr_expect_eq(verdict_backoff_ms(&p, 3, RND_MID), 3000);
    cr_expect_eq(verdict_backoff_ms(&p, 30, RND_MID), 3000);
    cr_expect_eq(verdict_backoff_ms(&p, 30, RND_LOW), 2700);
}

Test(verdict_backoff, jitter_spreads_half_of_it_each_way)
{
    cr_expect_eq(verdict_backoff_ms(&POLICY, 1, 0.0), 900);
    cr_expect_eq(verdict_backoff_ms(&POLICY, 1, 0.75), 1050);
    cr_expect_eq(verdict_backoff_ms(&POLICY, 1, 0.999999), 1099);
}

Test(verdict_backoff, a_factor_below_one_keeps_the_base_delay)
{
    retry_policy_t p = POLICY;
    p.factor = 0.5;
    cr_expect_eq(verdict_backoff_ms(&p, 4, RND_MID), 1000);
}

Test(verdict_backoff, attempts_below_one_count_as_the_first)
{
    cr_expect_eq(verdict_backoff_ms(&POLICY, 0, RND_MID), 1000);
    cr_expect_eq(verdict_backoff_ms(&POLICY, -3, RND_MID), 1000);
}

/* ---- names ---------------------------------------------------------------- */

Test(verdict_outcomes, names_are_those_recorded_in_metadata)
{
    cr_expect_str_eq(verdict_outcome_name(VERDICT_OUTCOME_OK), "ok");
    cr_expect_str_eq(verdict_outcome_name(VERDICT_OUTCOME_DEDUP), "dedup");
    cr_expect_str_eq(verdict_outcome_name(VERDICT_OUTCOME_RETRY), "retry");
    cr_expect_str_eq(verdict_outcome_name(VERDICT_OUTCOME_EXHAUSTED), "exhausted");
    cr_expect_str_eq(verdict_outcome_name(VERDICT_OUTCOME_REJECT), "reject");
    cr_expect_str_eq(verdict_outcome_name(VERDICT_OUTCOME_UPCAST_FAILED), "upcast_failed");
    cr_expect_null(verdict_outcome_name((verdict_outcome_t)99));
}
