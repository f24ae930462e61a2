-- Latest source commit time among the staging rows of the window, per source.
WITH reference_window AS (
    SELECT max(_commit_time) AS commit_at FROM staging.reference_merchant_history AS s
    WHERE (s._commit_lsn, s._index_in_txn) > (%(reference_from_lsn)s, %(reference_from_idx)s)
      AND (s._commit_lsn, s._index_in_txn) <= (%(reference_to_lsn)s, %(reference_to_idx)s)
    UNION ALL
    SELECT max(_commit_time) FROM staging.reference_currency AS s
    WHERE (s._commit_lsn, s._index_in_txn) > (%(reference_from_lsn)s, %(reference_from_idx)s)
      AND (s._commit_lsn, s._index_in_txn) <= (%(reference_to_lsn)s, %(reference_to_idx)s)
    UNION ALL
    SELECT max(_commit_time) FROM staging.reference_country AS s
    WHERE (s._commit_lsn, s._index_in_txn) > (%(reference_from_lsn)s, %(reference_from_idx)s)
      AND (s._commit_lsn, s._index_in_txn) <= (%(reference_to_lsn)s, %(reference_to_idx)s)
    UNION ALL
    SELECT max(_commit_time) FROM staging.reference_fx_rate AS s
    WHERE (s._commit_lsn, s._index_in_txn) > (%(reference_from_lsn)s, %(reference_from_idx)s)
      AND (s._commit_lsn, s._index_in_txn) <= (%(reference_to_lsn)s, %(reference_to_idx)s)
),

oltp_window AS (
    SELECT max(_commit_time) AS commit_at FROM staging.oltp_balance_transaction AS s
    WHERE (s._commit_lsn, s._index_in_txn) > (%(oltp_from_lsn)s, %(oltp_from_idx)s)
      AND (s._commit_lsn, s._index_in_txn) <= (%(oltp_to_lsn)s, %(oltp_to_idx)s)
    UNION ALL
    SELECT max(_commit_time) FROM staging.oltp_charge AS s
    WHERE (s._commit_lsn, s._index_in_txn) > (%(oltp_from_lsn)s, %(oltp_from_idx)s)
      AND (s._commit_lsn, s._index_in_txn) <= (%(oltp_to_lsn)s, %(oltp_to_idx)s)
    UNION ALL
    SELECT max(_commit_time) FROM staging.oltp_customer AS s
    WHERE (s._commit_lsn, s._index_in_txn) > (%(oltp_from_lsn)s, %(oltp_from_idx)s)
      AND (s._commit_lsn, s._index_in_txn) <= (%(oltp_to_lsn)s, %(oltp_to_idx)s)
    UNION ALL
    SELECT max(_commit_time) FROM staging.oltp_payment_method AS s
    WHERE (s._commit_lsn, s._index_in_txn) > (%(oltp_from_lsn)s, %(oltp_from_idx)s)
      AND (s._commit_lsn, s._index_in_txn) <= (%(oltp_to_lsn)s, %(oltp_to_idx)s)
)

SELECT (SELECT max(commit_at) FROM reference_window) AS reference_commit_at,
       (SELECT max(commit_at) FROM oltp_window) AS oltp_commit_at
