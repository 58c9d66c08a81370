-- Worker heartbeats: which workers run, and each job's last run, duration and error. Platform data,
-- not a tenant's: no tenant_id, written by the worker as oms_app and shown on the System page.
CREATE TABLE worker_heartbeats (
    worker_id  text PRIMARY KEY,
    hostname   text NOT NULL,
    pid        int NOT NULL,
    started_at timestamptz NOT NULL,
    seen_at    timestamptz NOT NULL,
    stopped_at timestamptz,
    jobs       jsonb NOT NULL DEFAULT '{}'
);
GRANT SELECT, INSERT, UPDATE, DELETE ON worker_heartbeats TO oms_app;
