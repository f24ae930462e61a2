-- The first VACUUM of the source that started after the erasure committed.
SELECT finished_at, finished_lsn::text
FROM source_vacuum
WHERE database_name = %(database_name)s AND started_at > %(erased_at)s
ORDER BY started_at
LIMIT 1
