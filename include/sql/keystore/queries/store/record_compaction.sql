INSERT INTO key_table_compaction (table_name, started_at, started_lsn)
VALUES (%(table_name)s, %(started_at)s, %(started_lsn)s::pg_lsn)
RETURNING compaction_id, finished_at, finished_lsn::text
