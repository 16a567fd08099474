-- 0010_events_status_history: each event's status transitions, oldest
-- first, in its own row: a json array of {"status", "at" (RFC 3339),
-- "attempts", "error"}, bounded to the newest 20 (docs/storage.md).
--
-- Why a column and not a table of transitions: the metadata writer already
-- writes one row per event per batch (COPY straight into events while the
-- rows are new, one upsert from a staging table otherwise).  The history
-- rides in that same row: the direct COPY gets one more field, the upsert
-- one more expression for the rows it updates — no second table to COPY
-- into, no second index to maintain, no second round trip, and retention
-- drops the history with its day's partition.  A table would cost an
-- insert and an index entry per transition.
--
-- Adding a nullable column without a default changes no row: rows written
-- before it have a NULL history.

ALTER TABLE events ADD COLUMN status_history json;

-- old's entries then add's, the newest `keep` kept.  Both are json arrays
-- (or NULL).  The writer's upsert and the PURGED update call it.
CREATE FUNCTION evbus_status_history_append(old json, add json, keep int) RETURNS json
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN add IS NULL THEN old
        WHEN old IS NULL AND json_array_length(add) <= keep THEN add
        ELSE (SELECT CASE WHEN jsonb_array_length(h) <= keep THEN h
                          ELSE jsonb_path_query_array(
                                   h, ('$[last - ' || (keep - 1) || ' to last]')::jsonpath)
                     END
              FROM (SELECT COALESCE(old::jsonb, '[]'::jsonb) || add::jsonb AS h) s)::json
    END
$$;
