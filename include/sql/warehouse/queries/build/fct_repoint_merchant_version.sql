-- Facts of rebuilt merchants dated after a new version started (or of a completed inferred
-- member) move to the version now valid at their time.
WITH fact_to_check AS (
    SELECT f.balance_transaction_id, f.merchant_id, f.created_at, f.merchant_version_id
    FROM marts.fct_balance_transaction AS f
    JOIN affected_merchant AS a ON a.merchant_id = f.merchant_id AND f.created_at >= a.repoint_from
),

version_now_valid AS (
    SELECT fc.balance_transaction_id, dm.merchant_version_id
    FROM fact_to_check AS fc
    JOIN marts.dim_merchant AS dm
      ON dm.merchant_id = fc.merchant_id
     AND fc.created_at >= dm.valid_from
     AND fc.created_at < dm.valid_to
    WHERE dm.merchant_version_id <> fc.merchant_version_id
)

UPDATE marts.fct_balance_transaction AS f
SET merchant_version_id = v.merchant_version_id
FROM version_now_valid AS v
WHERE f.balance_transaction_id = v.balance_transaction_id
