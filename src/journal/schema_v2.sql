-- Version 2: units of any target instead of Rancher services. Each unit carries its target,
-- its platform's last step and opaque checkpoint, and its end from one set every platform
-- shares. Journals of version 1 are carried over as they stand, unfinished jobs included.

ALTER TABLE jobs ADD COLUMN source TEXT NOT NULL DEFAULT 'dockerhub';
ALTER TABLE jobs ADD COLUMN digest TEXT;
ALTER TABLE jobs ADD COLUMN callback_url TEXT;

CREATE TABLE job_scans (
    job_id    INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    target    TEXT    NOT NULL,
    complete  INTEGER NOT NULL DEFAULT 0,
    pages     INTEGER,
    listed    INTEGER,
    error     TEXT,
    PRIMARY KEY (job_id, target)
);

CREATE TABLE job_units (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    target      TEXT    NOT NULL,
    unit_id     TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    step        TEXT    NOT NULL,
    end_state   TEXT CHECK (end_state IN
                    ('upgraded', 'up-to-date', 'skipped', 'rolled-back', 'cancelled', 'left', 'failed')),
    reason      TEXT,
    checkpoint  TEXT,
    planned_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (job_id, target, unit_id)
);
CREATE INDEX units_by_end ON job_units (job_id, end_state);

CREATE TABLE unit_steps (
    unit_seq  INTEGER NOT NULL REFERENCES job_units (seq) ON DELETE CASCADE,
    step      TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    detail    TEXT
);
CREATE INDEX steps_by_unit ON unit_steps (unit_seq);

-- Version 1 knew Rancher only. Its steps become the Rancher platform's steps (`upgraded`
-- while finishing is next is now `finishing`, `canceling` is `cancelling`); its ends
-- become the shared ends.
INSERT INTO job_scans (job_id, target, complete, pages, listed)
    SELECT id, 'rancher', scan_complete, pages, listed FROM jobs WHERE started_at IS NOT NULL;

INSERT INTO job_units (job_id, target, unit_id, name, step, end_state, reason, checkpoint, planned_at, updated_at)
    SELECT job_id, 'rancher', service_id, service_name,
        CASE step
            WHEN 'upgraded' THEN 'finishing'
            WHEN 'canceling' THEN 'cancelling'
            WHEN 'finished' THEN 'upgraded'
            WHEN 'left-upgraded' THEN 'upgraded'
            WHEN 'canceled' THEN 'cancelled'
            ELSE step
        END,
        CASE step
            WHEN 'finished' THEN 'upgraded'
            WHEN 'left-upgraded' THEN 'upgraded'
            WHEN 'rolled-back' THEN 'rolled-back'
            WHEN 'canceled' THEN 'cancelled'
            WHEN 'failed' THEN 'failed'
            WHEN 'skipped' THEN 'skipped'
        END,
        CASE step
            WHEN 'left-upgraded' THEN 'left in upgraded (RANCHER_FINISH_UPGRADE=false)'
            ELSE reason
        END,
        CASE
            WHEN step IN ('rolling-back', 'canceling') THEN json_object(
                'versions', json(COALESCE(versions_before, '{}')),
                'reason', (SELECT detail FROM service_steps s
                           WHERE s.job_id = job_services.job_id AND s.service_id = job_services.service_id
                           ORDER BY s.rowid DESC LIMIT 1))
            WHEN versions_before IS NULL THEN NULL
            ELSE json_object('versions', json(versions_before))
        END,
        planned_at, updated_at
    FROM job_services ORDER BY rowid;

INSERT INTO unit_steps (unit_seq, step, at, detail)
    SELECT u.seq,
        CASE s.step
            WHEN 'upgraded' THEN 'finishing'
            WHEN 'canceling' THEN 'cancelling'
            WHEN 'finished' THEN 'upgraded'
            WHEN 'left-upgraded' THEN 'upgraded'
            WHEN 'canceled' THEN 'cancelled'
            ELSE s.step
        END,
        s.at, s.detail
    FROM service_steps s
    JOIN job_units u ON u.job_id = s.job_id AND u.target = 'rancher' AND u.unit_id = s.service_id
    ORDER BY s.rowid;

-- 0.1.0 could end a job while some of its services had no end (it gave up on the job, or
-- its scan stopped for good): those end failed now, so every unit of an ended job has an
-- end, and the scan of a failed job is over.
INSERT INTO unit_steps (unit_seq, step, at, detail)
    SELECT u.seq, 'failed', COALESCE(j.finished_at, u.updated_at),
        'the job ended in release 0.1.0 before this service did'
    FROM job_units u JOIN jobs j ON j.id = u.job_id
    WHERE u.end_state IS NULL AND j.state IN ('done', 'failed');
UPDATE job_units SET end_state = 'failed', step = 'failed',
        reason = 'the job ended in release 0.1.0 before this service did',
        updated_at = COALESCE((SELECT finished_at FROM jobs WHERE jobs.id = job_units.job_id), updated_at)
    WHERE end_state IS NULL
        AND job_id IN (SELECT id FROM jobs WHERE state IN ('done', 'failed'));
UPDATE job_scans SET complete = 1,
        error = (SELECT error FROM jobs WHERE jobs.id = job_scans.job_id)
    WHERE complete = 0 AND job_id IN (SELECT id FROM jobs WHERE state = 'failed');

DROP TABLE service_steps;
DROP TABLE job_services;
ALTER TABLE jobs DROP COLUMN scan_complete;
ALTER TABLE jobs DROP COLUMN pages;
ALTER TABLE jobs DROP COLUMN listed;
