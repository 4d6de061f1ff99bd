-- The journal of autoredeploy: every accepted push (a job), the services it planned, and
-- each service's progress. Times are Unix milliseconds.

CREATE TABLE IF NOT EXISTS jobs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    image          TEXT    NOT NULL,
    pusher         TEXT,
    pushes         INTEGER NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    received_at    INTEGER NOT NULL,
    last_push_at   INTEGER NOT NULL,
    started_at     INTEGER,
    finished_at    INTEGER,
    scan_complete  INTEGER NOT NULL DEFAULT 0,
    pages          INTEGER,
    listed         INTEGER,
    error          TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, image);

CREATE TABLE IF NOT EXISTS job_services (
    job_id          INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    service_id      TEXT    NOT NULL,
    service_name    TEXT    NOT NULL,
    step            TEXT    NOT NULL,
    versions_before TEXT,
    reason          TEXT,
    planned_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (job_id, service_id)
);

CREATE TABLE IF NOT EXISTS service_steps (
    job_id      INTEGER NOT NULL,
    service_id  TEXT    NOT NULL,
    step        TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    detail      TEXT,
    FOREIGN KEY (job_id, service_id) REFERENCES job_services (job_id, service_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS steps_by_service ON service_steps (job_id, service_id);
