-- Type 1 by customer token; completes an inferred member when the real row arrives.
-- Customers are never deleted at the source; a tombstone keeps the member with is_deleted.
WITH changed_customer AS (
    SELECT *
    FROM staging.oltp_customer AS s
    WHERE (s._commit_lsn, s._index_in_txn) > (%(oltp_from_lsn)s, %(oltp_from_idx)s)
      AND (s._commit_lsn, s._index_in_txn) <= (%(oltp_to_lsn)s, %(oltp_to_idx)s)
),

dim_customer_row AS (
    SELECT customer_id, merchant_id, country_code, created_at, erased_at,
           erased_at IS NOT NULL AS is_erased, _is_deleted AS is_deleted, false AS is_inferred
    FROM changed_customer
)

INSERT INTO marts.dim_customer AS d
    (customer_id, merchant_id, country_code, created_at, erased_at, is_erased, is_deleted, is_inferred)
SELECT customer_id, merchant_id, country_code, created_at, erased_at, is_erased, is_deleted, is_inferred
FROM dim_customer_row
ON CONFLICT (customer_id) DO UPDATE
SET merchant_id = EXCLUDED.merchant_id, country_code = EXCLUDED.country_code,
    created_at = EXCLUDED.created_at, erased_at = EXCLUDED.erased_at, is_erased = EXCLUDED.is_erased,
    is_deleted = EXCLUDED.is_deleted, is_inferred = EXCLUDED.is_inferred
WHERE (d.merchant_id, d.country_code, d.created_at, d.erased_at, d.is_deleted, d.is_inferred)
    IS DISTINCT FROM (EXCLUDED.merchant_id, EXCLUDED.country_code, EXCLUDED.created_at,
                      EXCLUDED.erased_at, EXCLUDED.is_deleted, EXCLUDED.is_inferred)
