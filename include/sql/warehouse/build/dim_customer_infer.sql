-- Late-arriving customers: an inferred member keyed by the token, completed by the real row.
WITH missing_customer AS (
    SELECT DISTINCT ON (sf.customer_id) sf.customer_id, sf.merchant_id
    FROM staged_fact AS sf
    WHERE sf.customer_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM marts.dim_customer AS d WHERE d.customer_id = sf.customer_id)
    ORDER BY sf.customer_id, sf.balance_transaction_id
)

INSERT INTO marts.dim_customer (customer_id, merchant_id, is_erased, is_deleted, is_inferred)
SELECT customer_id, merchant_id, false, false, true
FROM missing_customer
