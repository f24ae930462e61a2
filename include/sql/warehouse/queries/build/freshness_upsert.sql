-- A table is complete up to its source's high-water mark; the commit time stays the last one seen
-- when the window brought nothing new.
INSERT INTO marts.freshness AS fr (table_name, source_lsn, source_commit_at, loaded_at)
VALUES (%(table_name)s, %(source_lsn)s, %(source_commit_at)s, now())
ON CONFLICT (table_name) DO UPDATE
SET source_lsn = EXCLUDED.source_lsn,
    source_commit_at = coalesce(EXCLUDED.source_commit_at, fr.source_commit_at),
    loaded_at = EXCLUDED.loaded_at
