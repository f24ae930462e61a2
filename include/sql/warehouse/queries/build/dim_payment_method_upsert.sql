-- Type 1; the card token, fingerprint and last4 stay out of the warehouse marts (no card data).
WITH changed_payment_method AS (
    SELECT *
    FROM staging.oltp_payment_method AS s
    WHERE (s._commit_lsn, s._index_in_txn) > (%(oltp_from_lsn)s, %(oltp_from_idx)s)
      AND (s._commit_lsn, s._index_in_txn) <= (%(oltp_to_lsn)s, %(oltp_to_idx)s)
),

dim_payment_method_row AS (
    SELECT payment_method_id, customer_id, type AS payment_method_type, brand, funding, bin_country_code,
           exp_month, exp_year, created_at, detached_at, _is_deleted AS is_deleted, false AS is_inferred
    FROM changed_payment_method
)

INSERT INTO marts.dim_payment_method AS d
    (payment_method_id, customer_id, payment_method_type, brand, funding, bin_country_code,
     exp_month, exp_year, created_at, detached_at, is_deleted, is_inferred)
SELECT payment_method_id, customer_id, payment_method_type, brand, funding, bin_country_code,
       exp_month, exp_year, created_at, detached_at, is_deleted, is_inferred
FROM dim_payment_method_row
ON CONFLICT (payment_method_id) DO UPDATE
SET customer_id = EXCLUDED.customer_id, payment_method_type = EXCLUDED.payment_method_type,
    brand = EXCLUDED.brand, funding = EXCLUDED.funding, bin_country_code = EXCLUDED.bin_country_code,
    exp_month = EXCLUDED.exp_month, exp_year = EXCLUDED.exp_year, created_at = EXCLUDED.created_at,
    detached_at = EXCLUDED.detached_at, is_deleted = EXCLUDED.is_deleted, is_inferred = EXCLUDED.is_inferred
WHERE (d.customer_id, d.payment_method_type, d.brand, d.funding, d.bin_country_code, d.exp_month,
       d.exp_year, d.created_at, d.detached_at, d.is_deleted, d.is_inferred)
    IS DISTINCT FROM (EXCLUDED.customer_id, EXCLUDED.payment_method_type, EXCLUDED.brand, EXCLUDED.funding,
                      EXCLUDED.bin_country_code, EXCLUDED.exp_month, EXCLUDED.exp_year, EXCLUDED.created_at,
                      EXCLUDED.detached_at, EXCLUDED.is_deleted, EXCLUDED.is_inferred)
