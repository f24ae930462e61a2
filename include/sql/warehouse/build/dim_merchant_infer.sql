-- Late-arriving merchants: a fact never waits for its merchant. An inferred member holds version 1
-- over all time; the real history replaces it (same key for version 1) when it arrives.
WITH missing_merchant AS (
    SELECT DISTINCT sf.merchant_id
    FROM staged_fact AS sf
    WHERE NOT EXISTS (SELECT 1 FROM marts.dim_merchant AS d WHERE d.merchant_id = sf.merchant_id)
)

INSERT INTO marts.dim_merchant
    (merchant_version_id, merchant_id, version_number, valid_from, valid_to, is_current, is_deleted,
     is_inferred)
SELECT hashtextextended(merchant_id::text || ':1', 0), merchant_id, 1, '-infinity', 'infinity', true,
       false, true
FROM missing_merchant
