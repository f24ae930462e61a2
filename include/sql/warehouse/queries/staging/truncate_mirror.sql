-- TRUNCATE at the source: every live row becomes a tombstone at the truncate's position.
UPDATE {schema}.{table}
SET _is_deleted = true,
    _commit_lsn = %(commit_lsn)s,
    _index_in_txn = %(index_in_txn)s,
    _commit_time = %(commit_time)s,
    _loaded_at = now()
WHERE NOT _is_deleted
  AND (_commit_lsn, _index_in_txn) < (%(commit_lsn)s, %(index_in_txn)s)
