-- High-water mark: the position each source's staging tables are complete up to (written by the
-- CDC sink in the same transaction as the data it applied).
SELECT source, commit_lsn, index_in_txn FROM staging.cdc_offsets
