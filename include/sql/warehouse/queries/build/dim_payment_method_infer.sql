-- Late-arriving cards: an inferred member, completed by the real row. Ledger rows first, then
-- charges (declined attempts only appear there), each in key order.
WITH fact_payment_method AS (
    SELECT payment_method_id, customer_id, 0 AS source_order, balance_transaction_id AS row_id
    FROM staged_fact WHERE payment_method_id IS NOT NULL
    UNION ALL
    SELECT payment_method_id, customer_id, 1, charge_id
    FROM staged_charge WHERE payment_method_id IS NOT NULL
),

missing_payment_method AS (
    SELECT DISTINCT ON (fp.payment_method_id) fp.payment_method_id, fp.customer_id
    FROM fact_payment_method AS fp
    WHERE NOT EXISTS (
        SELECT 1 FROM marts.dim_payment_method AS d WHERE d.payment_method_id = fp.payment_method_id
    )
    ORDER BY fp.payment_method_id, fp.source_order, fp.row_id
)

INSERT INTO marts.dim_payment_method (payment_method_id, customer_id, is_deleted, is_inferred)
SELECT payment_method_id, customer_id, false, true
FROM missing_payment_method
