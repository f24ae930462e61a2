-- Unresolved dead letters of a source in position order (replay applies them in that order).
SELECT table_name, commit_lsn, index_in_txn, kind, key_text, columns, reason, commit_time
FROM {schema}.cdc_dead_letters
WHERE source = %(source)s
  AND resolved_at IS NULL
ORDER BY commit_lsn, index_in_txn, table_name
