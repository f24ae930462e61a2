-- The position of the version a mirror holds for one key (replay: is a newer version already there?).
SELECT _commit_lsn, _index_in_txn
FROM {schema}.{table}
WHERE {key_match}
