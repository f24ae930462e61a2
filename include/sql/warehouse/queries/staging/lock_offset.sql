-- Serialises writers of one source: a second apply for the same source waits here until the first commits.
SELECT commit_lsn, index_in_txn
FROM {schema}.cdc_offsets
WHERE source = %(source)s
FOR UPDATE
