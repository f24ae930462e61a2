-- bench/cdc_crash_torture.py: streamed history rows (snapshot rows have a negative index) and
-- how many distinct changes they are.
SELECT count(*), count(DISTINCT (t, id, _commit_lsn, _index_in_txn))
FROM (
    SELECT 'account' AS t, id, _commit_lsn, _index_in_txn FROM staging.crash_account_history WHERE _index_in_txn >= 0
    UNION ALL
    SELECT 'entry', id, _commit_lsn, _index_in_txn FROM staging.crash_entry_history WHERE _index_in_txn >= 0
) AS streamed
