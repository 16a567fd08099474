-- 0008_events_archive: the stream's entries, kept in PostgreSQL before the
-- trimmer removes them from Redis (retention.archive: postgres), so that
-- replay jobs can go further back than the stream.  docs/storage.md ("The
-- archive") has the whole story; docs/operations.md ("Retention") how the
-- trimmer waits for it.
--
-- One row per stream entry, keyed by the stream and the entry's id
-- ("<ms>-<seq>" as two bigints, so an id range is an index range and rows
-- sort as the stream does).  `event` holds the entry's `event` field byte
-- for byte (bytea: nothing is parsed, re-encoded or validated on the way),
-- `fields` the entry's other fields, if any, as name, value, name, value
-- in the entry's order (retries carry `retry`).
--
-- The table is partitioned by range of ms, one partition per UTC day of the
-- entry's time, named events_archive_pYYYYMMDD, plus
-- events_archive_default for days without a partition: like events
-- (0006), old entries go a whole day at a time.  evbusd's archiver creates
-- the partitions ahead and drops the expired ones
-- (retention.archive_retention) with the two functions below.
--
-- Rows are written with binary COPY; a COPY that meets rows already there
-- (a crash between the COPY and the watermark it records in Redis, another
-- host that archived the same range) goes through a staging table and
-- INSERT ... ON CONFLICT DO NOTHING instead, so archiving twice is
-- harmless.

CREATE TABLE events_archive (
    stream      text        NOT NULL,
    ms          bigint      NOT NULL,
    seq         bigint      NOT NULL,
    event       bytea,
    fields      bytea[],
    archived_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, ms, seq)
) PARTITION BY RANGE (ms);

CREATE TABLE events_archive_default PARTITION OF events_archive DEFAULT;

-- The Unix epoch ms of the start of a UTC day.
CREATE FUNCTION evbus_day_ms(day date) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (day - date '1970-01-01')::bigint * 86400000
$$;

-- Create the archive partition of one UTC day unless it exists; rows of that
-- day waiting in events_archive_default move into it.  True when created.
CREATE FUNCTION evbus_archive_partition_create(day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part text := 'events_archive_p' || to_char(day, 'YYYYMMDD');
    lo bigint := evbus_day_ms(day);
    hi bigint := evbus_day_ms(day + 1);
BEGIN
    IF EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'events_archive'::regclass AND c.relname = part) THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM events_archive_default WHERE ms >= lo AND ms < hi) THEN
        EXECUTE format('CREATE TABLE %I (LIKE events_archive INCLUDING DEFAULTS'
                       ' INCLUDING CONSTRAINTS)', part);
        EXECUTE format('WITH moved AS (DELETE FROM events_archive_default WHERE ms >= $1'
                       ' AND ms < $2 RETURNING *) INSERT INTO %I SELECT * FROM moved',
                       part) USING lo, hi;
        EXECUTE format('ALTER TABLE events_archive ATTACH PARTITION %I'
                       ' FOR VALUES FROM (%s) TO (%s)', part, lo, hi);
    ELSE
        EXECUTE format('CREATE TABLE %I PARTITION OF events_archive'
                       ' FOR VALUES FROM (%s) TO (%s)', part, lo, hi);
    END IF;
    RETURN true;
END
$$;

-- Drop every archive partition whose whole day is before cutoff_ms, and
-- delete the rows before cutoff_ms from events_archive_default.  Returns
-- the number of partitions dropped.
CREATE FUNCTION evbus_archive_expire(cutoff_ms bigint) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    p record;
    dropped integer := 0;
BEGIN
    FOR p IN
        SELECT c.relname AS part, evbus_day_ms(to_date(substr(c.relname, 17), 'YYYYMMDD')) AS lo
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'events_archive'::regclass
          AND c.relname ~ '^events_archive_p[0-9]{8}$'
        ORDER BY c.relname
    LOOP
        EXIT WHEN p.lo + 86400000 > cutoff_ms;
        EXECUTE format('DROP TABLE %I', p.part);
        dropped := dropped + 1;
    END LOOP;
    DELETE FROM events_archive_default WHERE ms < cutoff_ms;
    RETURN dropped;
END
$$;

-- Today and the next three days, so the first rows do not wait for the
-- archiver's first upkeep round.
SELECT evbus_archive_partition_create((now() AT TIME ZONE 'UTC')::date + k)
FROM generate_series(0, 3) AS k;
