-- Late-arriving merchants: a fact never waits for its merchant. An inferred member holds version 1
-- over all time; the real history replaces it (same key for version 1) when it arrives. Declined
-- charges never reach the ledger, so the staged charges are searched too.
WITH fact_merchant AS (
    SELECT merchant_id FROM staged_fact
    UNION
    SELECT merchant_id FROM staged_charge WHERE merchant_id IS NOT NULL
),

missing_merchant AS (
    SELECT fm.merchant_id
    FROM fact_merchant AS fm
    WHERE NOT EXISTS (SELECT 1 FROM marts.dim_merchant AS d WHERE d.merchant_id = fm.merchant_id)
)

INSERT INTO marts.dim_merchant
    (merchant_version_id, merchant_id, version_number, valid_from, valid_to, is_current, is_deleted,
     is_inferred)
SELECT hashtextextended(merchant_id::text || ':1', 0), merchant_id, 1, '-infinity', 'infinity', true,
       false, true
FROM missing_merchant
