-- 0005_replay_jobs_lease: a running replay job is leased, not owned forever.
-- The worker running a job refreshes heartbeat_at every few seconds and
-- records in position the stream id of the last entry it handled.  A job
-- whose heartbeat is older than the lease (its host died or lost
-- PostgreSQL) is claimed again by any host and resumes after position;
-- claims counts how often a job was claimed, so a job that keeps killing
-- the hosts that run it fails instead of going round them all forever.
ALTER TABLE replay_jobs
    ADD COLUMN heartbeat_at timestamptz,
    ADD COLUMN position     text,
    ADD COLUMN claims       integer NOT NULL DEFAULT 0;
-- the lease scan: running jobs by heartbeat
CREATE INDEX replay_jobs_running_heartbeat ON replay_jobs (heartbeat_at)
    WHERE status = 'running';
