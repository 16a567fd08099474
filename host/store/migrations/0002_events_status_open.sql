-- 0002_events_status_open: index the statuses worth looking up, not all.
-- Almost every row ends COMPLETED, so a full index on status is a cost on
-- every metadata insert that lookups by status rarely need: "list the
-- DEAD_LETTERED / RETRYING / PENDING events" is the query that must be
-- fast, and COMPLETED rows are found through events_created as before.
-- The partial index also keeps each status newest-first (created_at), as
-- store_events_list() orders its results.

DROP INDEX IF EXISTS events_status;
CREATE INDEX events_status_open ON events (status, created_at)
    WHERE status <> 'COMPLETED';
