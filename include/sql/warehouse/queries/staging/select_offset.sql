SELECT commit_lsn, index_in_txn
FROM {schema}.cdc_offsets
WHERE source = %(source)s
