-- Baseline: the same ledger rows copied by a plain INSERT ... SELECT into an unindexed table.
DROP TABLE IF EXISTS bench_plain_fact;
CREATE TABLE bench_plain_fact (LIKE marts.fct_balance_transaction);
INSERT INTO bench_plain_fact
    (balance_transaction_id, transaction_type, source_id, merchant_id, merchant_version_id, currency_code,
     created_date_id, created_at, available_on, amount, fee, net, source_commit_lsn, source_index_in_txn,
     source_commit_at)
SELECT balance_transaction_id, type, source_id, merchant_id, merchant_id, currency_code,
       to_char(created_at AT TIME ZONE 'UTC', 'YYYYMMDD')::int, created_at, available_on, amount, fee, net,
       _commit_lsn, _index_in_txn, _commit_time
FROM staging.oltp_balance_transaction
