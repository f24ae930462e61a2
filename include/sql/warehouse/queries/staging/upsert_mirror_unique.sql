-- Mirror-only tables: the batch already holds one row per key (the last version, collapsed before COPY),
-- so no DISTINCT ON sort is needed; the guard keeps a newer stored row from being overwritten.
INSERT INTO {schema}.{table} AS staged ({columns}, _commit_lsn, _index_in_txn, _commit_time, _is_deleted, _loaded_at)
SELECT {columns}, _commit_lsn, _index_in_txn, _commit_time, _op = 'D', now()
FROM {batch}
ON CONFLICT ({key}) DO UPDATE
SET {assignments},
    _commit_lsn = EXCLUDED._commit_lsn,
    _index_in_txn = EXCLUDED._index_in_txn,
    _commit_time = EXCLUDED._commit_time,
    _is_deleted = EXCLUDED._is_deleted,
    _loaded_at = EXCLUDED._loaded_at
WHERE (staged._commit_lsn, staged._index_in_txn) < (EXCLUDED._commit_lsn, EXCLUDED._index_in_txn)
