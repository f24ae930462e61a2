SELECT table_name, source_lsn, source_commit_at, loaded_at, now() - source_commit_at AS lag
FROM marts.freshness
ORDER BY table_name
