-- Ledger rows to (re)derive: those changed in the window, plus facts already loaded whose
-- related charge, payment intent, refund, dispute, card or USD rate changed in the window.
CREATE TEMP TABLE affected_balance_transaction ON COMMIT DROP AS
WITH window_ledger AS (
    SELECT s.balance_transaction_id
    FROM staging.oltp_balance_transaction AS s
    WHERE (s._commit_lsn, s._index_in_txn) > (%(oltp_from_lsn)s, %(oltp_from_idx)s)
      AND (s._commit_lsn, s._index_in_txn) <= (%(oltp_to_lsn)s, %(oltp_to_idx)s)
),

window_charge AS (
    SELECT s.charge_id
    FROM staging.oltp_charge AS s
    WHERE (s._commit_lsn, s._index_in_txn) > (%(oltp_from_lsn)s, %(oltp_from_idx)s)
      AND (s._commit_lsn, s._index_in_txn) <= (%(oltp_to_lsn)s, %(oltp_to_idx)s)
),

window_payment_intent AS (
    SELECT s.payment_intent_id
    FROM staging.oltp_payment_intent AS s
    WHERE (s._commit_lsn, s._index_in_txn) > (%(oltp_from_lsn)s, %(oltp_from_idx)s)
      AND (s._commit_lsn, s._index_in_txn) <= (%(oltp_to_lsn)s, %(oltp_to_idx)s)
),

window_payment_method AS (
    SELECT s.payment_method_id
    FROM staging.oltp_payment_method AS s
    WHERE (s._commit_lsn, s._index_in_txn) > (%(oltp_from_lsn)s, %(oltp_from_idx)s)
      AND (s._commit_lsn, s._index_in_txn) <= (%(oltp_to_lsn)s, %(oltp_to_idx)s)
),

window_refund AS (
    SELECT s.refund_id
    FROM staging.oltp_refund AS s
    WHERE (s._commit_lsn, s._index_in_txn) > (%(oltp_from_lsn)s, %(oltp_from_idx)s)
      AND (s._commit_lsn, s._index_in_txn) <= (%(oltp_to_lsn)s, %(oltp_to_idx)s)
),

window_dispute AS (
    SELECT s.dispute_id
    FROM staging.oltp_dispute AS s
    WHERE (s._commit_lsn, s._index_in_txn) > (%(oltp_from_lsn)s, %(oltp_from_idx)s)
      AND (s._commit_lsn, s._index_in_txn) <= (%(oltp_to_lsn)s, %(oltp_to_idx)s)
),

-- a USD rate dated d can change the conversion of its currency's facts dated d or later
window_usd_rate AS (
    SELECT CASE WHEN s.quote_currency_code = 'USD' THEN s.base_currency_code
                ELSE s.quote_currency_code END AS currency_code,
           min(s.effective_date) AS effective_date
    FROM staging.reference_fx_rate AS s
    WHERE (s._commit_lsn, s._index_in_txn) > (%(reference_from_lsn)s, %(reference_from_idx)s)
      AND (s._commit_lsn, s._index_in_txn) <= (%(reference_to_lsn)s, %(reference_to_idx)s)
      AND 'USD' IN (s.base_currency_code, s.quote_currency_code)
    GROUP BY 1
),

-- ids as arrays: an indexable "= ANY" lookup stays proportional to the window, where a join
-- would tempt the planner into scanning the whole fact table
loaded_fact_to_refresh AS (
    SELECT f.balance_transaction_id
    FROM marts.fct_balance_transaction AS f
    WHERE f.charge_id = ANY (ARRAY(SELECT charge_id FROM window_charge))
    UNION
    SELECT f.balance_transaction_id
    FROM marts.fct_balance_transaction AS f
    WHERE f.payment_intent_id = ANY (ARRAY(SELECT payment_intent_id FROM window_payment_intent))
    UNION
    SELECT f.balance_transaction_id
    FROM marts.fct_balance_transaction AS f
    WHERE f.payment_method_id = ANY (ARRAY(SELECT payment_method_id FROM window_payment_method))
    UNION
    SELECT f.balance_transaction_id
    FROM marts.fct_balance_transaction AS f
    JOIN window_refund AS r ON f.transaction_type = 'refund' AND f.source_id = r.refund_id
    UNION
    SELECT f.balance_transaction_id
    FROM marts.fct_balance_transaction AS f
    JOIN window_dispute AS d ON f.transaction_type = 'dispute' AND f.source_id = d.dispute_id
    UNION
    SELECT f.balance_transaction_id
    FROM marts.fct_balance_transaction AS f
    JOIN window_usd_rate AS u
      ON f.currency_code = u.currency_code
     AND f.created_at >= (u.effective_date::timestamp AT TIME ZONE 'UTC')
)

SELECT balance_transaction_id FROM window_ledger
UNION
SELECT balance_transaction_id FROM loaded_fact_to_refresh;

CREATE UNIQUE INDEX ON affected_balance_transaction (balance_transaction_id);
ANALYZE affected_balance_transaction;
