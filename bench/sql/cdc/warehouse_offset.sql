-- bench/cdc_crash_torture.py: the warehouse's stored position for a source (no row before the first apply).
SELECT commit_lsn, index_in_txn FROM staging.cdc_offsets WHERE source = %(source)s
