UPDATE {schema}.cdc_offsets
SET commit_lsn = %(commit_lsn)s,
    index_in_txn = %(index_in_txn)s,
    updated_at = now()
WHERE source = %(source)s
