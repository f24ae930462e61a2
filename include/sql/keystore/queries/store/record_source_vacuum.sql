INSERT INTO source_vacuum (database_name, started_at, finished_lsn)
VALUES (%(database_name)s, %(started_at)s, %(finished_lsn)s::pg_lsn)
RETURNING source_vacuum_id
