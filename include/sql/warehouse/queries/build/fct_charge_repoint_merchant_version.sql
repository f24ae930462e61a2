-- Charges of rebuilt merchants dated after a new version started (or of a completed inferred
-- member) move to the version now valid at their time (fct_repoint_merchant_version.sql for charges).
WITH charge_to_check AS (
    SELECT f.charge_id, f.merchant_id, f.created_at, f.merchant_version_id
    FROM marts.fct_charge AS f
    JOIN affected_merchant AS a ON a.merchant_id = f.merchant_id AND f.created_at >= a.repoint_from
),

version_now_valid AS (
    SELECT cc.charge_id, dm.merchant_version_id
    FROM charge_to_check AS cc
    JOIN marts.dim_merchant AS dm
      ON dm.merchant_id = cc.merchant_id
     AND cc.created_at >= dm.valid_from
     AND cc.created_at < dm.valid_to
    WHERE dm.merchant_version_id IS DISTINCT FROM cc.merchant_version_id
)

UPDATE marts.fct_charge AS f
SET merchant_version_id = v.merchant_version_id
FROM version_now_valid AS v
WHERE f.charge_id = v.charge_id
