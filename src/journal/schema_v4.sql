-- Version 4: notifications and Docker Hub callbacks. A job's notices are written to the
-- outbox in the transaction that ends the job, and stay there until they are delivered or
-- their time to retry runs out. Each push's callback URL is kept (a job merges several
-- pushes, and each is owed its callback); `jobs.callback_url` kept only the last one.

CREATE TABLE job_callbacks (
    job_id  INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    url     TEXT    NOT NULL,
    UNIQUE (job_id, url)
);

INSERT INTO job_callbacks (job_id, url)
    SELECT id, callback_url FROM jobs
    WHERE callback_url IS NOT NULL AND state IN ('queued', 'running');

ALTER TABLE jobs DROP COLUMN callback_url;

CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id        INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    channel       TEXT    NOT NULL,
    unit_seq      INTEGER,
    callback_url  TEXT,
    created_at    INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER NOT NULL,
    last_error    TEXT
);
CREATE INDEX outbox_by_time ON outbox (next_at);
