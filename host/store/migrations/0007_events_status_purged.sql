-- 0007_events_status_purged: a status for events whose dead letter an
-- operator removed (evbusctl dlq delete / purge) instead of retrying it, so
-- the table stops saying DEAD_LETTERED about an event that is no longer in
-- the dead-letter stream.  (0006 is taken by another change.)
--
-- The CHECK is replaced by a wider one.  NOT VALID skips re-reading every
-- row under this transaction's exclusive lock: each row already passed the
-- narrower check, and new and updated rows are checked as before.
ALTER TABLE events DROP CONSTRAINT events_status_check;
ALTER TABLE events ADD CONSTRAINT events_status_check
    CHECK (status IN ('PENDING', 'PROCESSING', 'COMPLETED', 'RETRYING', 'DEAD_LETTERED',
                      'IGNORED', 'PURGED')) NOT VALID;
