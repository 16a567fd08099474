-- 0006_events_partitioned: events becomes a table partitioned by day of
-- created_at, so that retention drops whole days (DROP TABLE of a
-- partition: no DELETE, no dead rows, no vacuum debt) instead of deleting
-- rows.  docs/storage.md ("Partitions and retention") has the whole story.
--
-- Keys.  A unique key of a partitioned table must hold the partition key,
-- so the primary key becomes (id, created_at).  An event's rows must then
-- agree on created_at, or a later status would not meet the row of an
-- earlier one: created_at is ANCHORED on the event's stream id
-- ("<ms>-<seq>", the time Redis added the entry), which the publisher's
-- PENDING row and every status the consumer reports (retries included)
-- carry.  The writer's direct COPY and its ON CONFLICT (id, created_at)
-- upsert then work exactly as before, one btree probe per row.  Only an
-- update without a usable stream id has its row looked up by id across the
-- partitions (evbus_stream_time() tells the two apart).  Before 0006
-- created_at was "the earliest update seen", which is the XADD time as
-- soon as a PENDING row exists and otherwise the first status a moment
-- later: this migration re-anchors the existing rows the same way, so an
-- event in flight across the upgrade keeps one row.
--
-- Partitions are named events_pYYYYMMDD and cover one UTC day.  The host
-- creates them ahead (evbus_events_partition_create) and drops expired ones
-- (evbus_events_expire); events_default catches rows of days that have no
-- partition (a timestamp far off, an event older than the retention) and
-- hands them to the day's partition when one is created.
--
-- Converting rewrites the table (INSERT ... SELECT): on a large table,
-- apply it in a maintenance window (evbusctl migrate status shows what is
-- pending).

-- The time of a stream id "<ms>-<seq>", or NULL for anything else.  The
-- metadata writer applies the same rule in C (store__stream_time_ms()).
CREATE FUNCTION evbus_stream_time(sid text) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN sid ~ '^[0-9]{1,15}-[0-9]{1,20}$'
                THEN timestamptz 'epoch' + split_part(sid, '-', 1)::bigint
                                           * interval '1 millisecond' END
$$;

ALTER TABLE events RENAME TO events_pre0006;
ALTER TABLE events_pre0006 RENAME CONSTRAINT events_pkey TO events_pre0006_pkey;
DROP INDEX IF EXISTS events_tenant_created;
DROP INDEX IF EXISTS events_status_open;
DROP INDEX IF EXISTS events_created_brin;

CREATE TABLE events (
    id               text NOT NULL,
    type             text,
    tenant           text,
    correlation_id   text,
    source           text,
    stream_id        text,
    schema_version   integer,
    status           text NOT NULL DEFAULT 'PENDING'
                     CONSTRAINT events_status_check
                     CHECK (status IN ('PENDING', 'PROCESSING', 'COMPLETED',
                                       'RETRYING', 'DEAD_LETTERED', 'IGNORED')),
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    handler_outcomes json,
    status_at        timestamptz NOT NULL,
    -- the stream id's time when the event has one, else its first update's
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);

-- The indexes of 0002/0003, now per partition.  The BRIN index still
-- serves --since within a day; across days the partitions themselves
-- prune.
CREATE INDEX events_tenant_created ON events (tenant, created_at);
CREATE INDEX events_status_open ON events (status, created_at) WHERE status <> 'COMPLETED';
CREATE INDEX events_created_brin ON events USING brin (created_at);

CREATE TABLE events_default PARTITION OF events DEFAULT;

-- What retention removed, so `evbusctl events show` of an id that is gone
-- can say that metadata of that age has expired.  One row per dropped
-- partition, and one per round that deleted rows from events_default.
CREATE TABLE events_expired (
    partition     text NOT NULL,
    from_ts       timestamptz NOT NULL,       -- created_at range removed: [from_ts, to_ts)
    to_ts         timestamptz NOT NULL,
    rows_estimate bigint,                     -- pg_class.reltuples; exact for events_default
    retention_s   bigint NOT NULL,            -- the retention that removed them
    dropped_at    timestamptz NOT NULL DEFAULT now()
);

-- Create the partition of one UTC day unless it exists; rows of that day
-- waiting in events_default move into it.  True when it was created.
CREATE FUNCTION evbus_events_partition_create(day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part text := 'events_p' || to_char(day, 'YYYYMMDD');
    lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'events'::regclass AND c.relname = part) THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM events_default WHERE created_at >= lo AND created_at < hi) THEN
        -- a partition cannot be created over rows the default one holds
        EXECUTE format('CREATE TABLE %I (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       part);
        EXECUTE format('WITH moved AS (DELETE FROM events_default WHERE created_at >= $1'
                       ' AND created_at < $2 RETURNING *) INSERT INTO %I SELECT * FROM moved',
                       part) USING lo, hi;
        EXECUTE format('ALTER TABLE events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       part, lo, hi);
    ELSE
        EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                       part, lo, hi);
    END IF;
    RETURN true;
END
$$;

-- Drop every day partition whose whole day is before cutoff, and delete
-- the rows before cutoff from events_default (normally few: it only holds
-- strays), recording each in events_expired.  Returns the number of
-- partitions dropped.
CREATE FUNCTION evbus_events_expire(cutoff timestamptz, retention_s bigint) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    p record;
    dropped integer := 0;
    deleted bigint;
    oldest timestamptz;
BEGIN
    FOR p IN
        SELECT c.relname AS part, c.reltuples,
               to_date(substr(c.relname, 9), 'YYYYMMDD')::timestamp AT TIME ZONE 'UTC' AS lo
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_p[0-9]{8}$'
        ORDER BY c.relname
    LOOP
        EXIT WHEN p.lo + interval '1 day' > cutoff;
        EXECUTE format('DROP TABLE %I', p.part);
        INSERT INTO events_expired (partition, from_ts, to_ts, rows_estimate, retention_s)
        VALUES (p.part, p.lo, p.lo + interval '1 day',
                CASE WHEN p.reltuples >= 0 THEN p.reltuples::bigint END, retention_s);
        dropped := dropped + 1;
    END LOOP;
    WITH gone AS (DELETE FROM events_default WHERE created_at < cutoff RETURNING created_at)
    SELECT count(*), min(created_at) INTO deleted, oldest FROM gone;
    IF deleted > 0 THEN
        INSERT INTO events_expired (partition, from_ts, to_ts, rows_estimate, retention_s)
        VALUES ('events_default', oldest, cutoff, deleted, retention_s);
    END IF;
    RETURN dropped;
END
$$;

-- A partition for every day the existing rows fall on, and for today and
-- the next three days (the host keeps creating them ahead from then on).
DO $$
DECLARE
    d date;
BEGIN
    FOR d IN
        SELECT DISTINCT (COALESCE(evbus_stream_time(stream_id), created_at)
                         AT TIME ZONE 'UTC')::date
        FROM events_pre0006
        UNION
        SELECT (now() AT TIME ZONE 'UTC')::date + k FROM generate_series(0, 3) AS k
    LOOP
        PERFORM evbus_events_partition_create(d);
    END LOOP;
END
$$;

INSERT INTO events (id, type, tenant, correlation_id, source, stream_id, schema_version,
                    status, attempts, last_error, handler_outcomes, status_at, created_at,
                    updated_at, completed_at)
SELECT id, type, tenant, correlation_id, source, stream_id, schema_version, status, attempts,
       last_error, handler_outcomes, status_at,
       COALESCE(evbus_stream_time(stream_id), created_at), updated_at, completed_at
FROM events_pre0006;

DROP TABLE events_pre0006;
