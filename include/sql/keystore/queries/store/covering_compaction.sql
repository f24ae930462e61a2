-- The first rewrite of the table that started after the key was destroyed (it dropped the key's bytes).
SELECT finished_at, finished_lsn::text
FROM key_table_compaction
WHERE table_name = %(table_name)s AND started_lsn > %(destroyed_lsn)s::pg_lsn
ORDER BY started_lsn
LIMIT 1
