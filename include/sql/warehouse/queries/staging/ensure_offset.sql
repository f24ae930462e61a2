INSERT INTO {schema}.cdc_offsets (source, commit_lsn, index_in_txn, updated_at)
VALUES (%(source)s, 0, -1, now())
ON CONFLICT (source) DO NOTHING
