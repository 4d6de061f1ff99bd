-- Version 3: a job may concern one unit only (`POST /notify/{container}` redeploys that
-- container, not every workload running its image). Stored as `<target>/<id>`; NULL for a
-- push, which concerns every unit running the image.

ALTER TABLE jobs ADD COLUMN only_unit TEXT;
