-- Charges to (re)derive: those changed in the window (status moves, tombstones, new attempts),
-- plus loaded charges whose payment intent (merchant, customer), card (BIN country) or USD rate
-- changed in the window. Same rule as fact_affected.sql, at charge grain.
CREATE TEMP TABLE affected_charge ON COMMIT DROP AS
WITH window_charge AS (
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

-- a USD rate dated d can change the conversion of its currency's charges dated d or later
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

-- ids as arrays: an indexable "= ANY" lookup stays proportional to the window (see fact_affected.sql)
loaded_charge_to_refresh AS (
    SELECT f.charge_id
    FROM marts.fct_charge AS f
    WHERE f.payment_intent_id = ANY (ARRAY(SELECT payment_intent_id FROM window_payment_intent))
    UNION
    SELECT f.charge_id
    FROM marts.fct_charge AS f
    WHERE f.payment_method_id = ANY (ARRAY(SELECT payment_method_id FROM window_payment_method))
    UNION
    SELECT f.charge_id
    FROM marts.fct_charge AS f
    JOIN window_usd_rate AS u
      ON f.currency_code = u.currency_code
     AND f.created_at >= (u.effective_date::timestamp AT TIME ZONE 'UTC')
)

SELECT charge_id FROM window_charge
UNION
SELECT charge_id FROM loaded_charge_to_refresh;

CREATE UNIQUE INDEX ON affected_charge (charge_id);
ANALYZE affected_charge;
