-- Late-arriving customers: an inferred member keyed by the token, completed by the real row.
-- Ledger rows first, then charges (declined attempts only appear there), each in key order.
WITH fact_customer AS (
    SELECT customer_id, merchant_id, 0 AS source_order, balance_transaction_id AS row_id
    FROM staged_fact WHERE customer_id IS NOT NULL
    UNION ALL
    SELECT customer_id, merchant_id, 1, charge_id
    FROM staged_charge WHERE customer_id IS NOT NULL
),

missing_customer AS (
    SELECT DISTINCT ON (fc.customer_id) fc.customer_id, fc.merchant_id
    FROM fact_customer AS fc
    WHERE NOT EXISTS (SELECT 1 FROM marts.dim_customer AS d WHERE d.customer_id = fc.customer_id)
    ORDER BY fc.customer_id, fc.source_order, fc.row_id
)

INSERT INTO marts.dim_customer (customer_id, merchant_id, is_erased, is_deleted, is_inferred)
SELECT customer_id, merchant_id, false, false, true
FROM missing_customer
