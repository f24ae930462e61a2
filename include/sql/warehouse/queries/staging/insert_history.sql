-- Append every change; a replayed change hits the (key, position) primary key and is skipped.
INSERT INTO {schema}.{history} ({columns}, _commit_lsn, _index_in_txn, _commit_time, _is_deleted, _loaded_at, _op)
SELECT {columns}, _commit_lsn, _index_in_txn, _commit_time, _op = 'D', now(), _op
FROM {batch}
ON CONFLICT DO NOTHING
