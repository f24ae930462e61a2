-- Replace the versions of the rebuilt merchants and remember, per merchant, from which time facts
-- may now belong to another version: the earliest version that started inside the window, or all
-- time when the merchant was an inferred member until now.
CREATE TEMP TABLE affected_merchant ON COMMIT DROP AS
WITH rebuilt_merchant AS (
    SELECT DISTINCT merchant_id FROM rebuilt_merchant_version
),

previously_inferred AS (
    SELECT DISTINCT d.merchant_id
    FROM marts.dim_merchant AS d
    JOIN rebuilt_merchant USING (merchant_id)
    WHERE d.is_inferred
),

new_version_start AS (
    SELECT merchant_id, min(valid_from) AS first_new_valid_from
    FROM rebuilt_merchant_version
    WHERE (source_commit_lsn, source_index_in_txn) > (%(reference_from_lsn)s, %(reference_from_idx)s)
    GROUP BY merchant_id
)

SELECT r.merchant_id,
       CASE WHEN p.merchant_id IS NOT NULL THEN '-infinity'::timestamptz
            ELSE coalesce(n.first_new_valid_from, 'infinity'::timestamptz) END AS repoint_from
FROM rebuilt_merchant AS r
LEFT JOIN previously_inferred AS p USING (merchant_id)
LEFT JOIN new_version_start AS n USING (merchant_id);

ANALYZE affected_merchant;

DELETE FROM marts.dim_merchant AS d
USING affected_merchant AS a
WHERE d.merchant_id = a.merchant_id;

INSERT INTO marts.dim_merchant
    (merchant_version_id, merchant_id, version_number, legal_name, mcc, country_code,
     default_currency_code, payout_schedule, risk_tier_code, status, valid_from, valid_to,
     is_current, is_deleted, is_inferred, source_commit_lsn, source_index_in_txn, source_commit_at)
SELECT merchant_version_id, merchant_id, version_number, legal_name, mcc, country_code,
       default_currency_code, payout_schedule, risk_tier_code, status, valid_from, valid_to,
       is_current, is_deleted, is_inferred, source_commit_lsn, source_index_in_txn, source_commit_at
FROM rebuilt_merchant_version;
