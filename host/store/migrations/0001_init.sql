-- 0001_init: event metadata and replay jobs.
-- Applied in one transaction by store_migrate(); never edit an applied
-- migration, add a new numbered file instead.

CREATE TABLE events (
    id               text PRIMARY KEY,
    type             text,
    tenant           text,
    correlation_id   text,
    source           text,
    stream_id        text,
    schema_version   integer,
    status           text NOT NULL DEFAULT 'PENDING'
                     CHECK (status IN ('PENDING', 'PROCESSING', 'COMPLETED',
                                       'RETRYING', 'DEAD_LETTERED', 'IGNORED')),
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    handler_outcomes jsonb,
    -- when the current status happened (the update's own timestamp, not
    -- the write time): an older update never overwrites a newer one.
    status_at        timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz
);

CREATE INDEX events_tenant_type_created ON events (tenant, type, created_at);
CREATE INDEX events_status ON events (status);
CREATE INDEX events_created ON events (created_at);

CREATE TABLE replay_jobs (
    id           text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    from_ts      timestamptz NOT NULL,
    to_ts        timestamptz NOT NULL,
    types        text[] NOT NULL DEFAULT '{}',
    tenant       text,
    rate         integer CHECK (rate IS NULL OR rate > 0),
    total        bigint NOT NULL DEFAULT 0,
    processed    bigint NOT NULL DEFAULT 0,
    skipped      bigint NOT NULL DEFAULT 0,
    failed       bigint NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at   timestamptz,
    finished_at  timestamptz,
    error        text,
    warning      text,
    requested_by text,
    CHECK (from_ts < to_ts)
);

CREATE INDEX replay_jobs_status_created ON replay_jobs (status, created_at);
