-- TRUNCATE at the source for a history table: tombstone every live row and record a 'T' version of each.
WITH truncated AS (
    UPDATE {schema}.{table}
    SET _is_deleted = true,
        _commit_lsn = %(commit_lsn)s,
        _index_in_txn = %(index_in_txn)s,
        _commit_time = %(commit_time)s,
        _loaded_at = now()
    WHERE NOT _is_deleted
      AND (_commit_lsn, _index_in_txn) < (%(commit_lsn)s, %(index_in_txn)s)
    RETURNING {columns}, _commit_lsn, _index_in_txn, _commit_time, _is_deleted, _loaded_at
)
INSERT INTO {schema}.{history} ({columns}, _commit_lsn, _index_in_txn, _commit_time, _is_deleted, _loaded_at, _op)
SELECT {columns}, _commit_lsn, _index_in_txn, _commit_time, _is_deleted, _loaded_at, 'T'
FROM truncated
ON CONFLICT DO NOTHING
