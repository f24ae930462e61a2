-- bench/cdc_crash_torture.py: commit LSNs of every streamed change the warehouse holds.
SELECT _commit_lsn FROM staging.crash_account_history WHERE _index_in_txn >= 0
UNION
SELECT _commit_lsn FROM staging.crash_entry_history WHERE _index_in_txn >= 0
