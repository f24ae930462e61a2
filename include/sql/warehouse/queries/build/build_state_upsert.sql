INSERT INTO marts.build_state (source, commit_lsn, index_in_txn, built_at)
VALUES (%(source)s, %(commit_lsn)s, %(index_in_txn)s, now())
ON CONFLICT (source) DO UPDATE
SET commit_lsn = EXCLUDED.commit_lsn, index_in_txn = EXCLUDED.index_in_txn, built_at = EXCLUDED.built_at
