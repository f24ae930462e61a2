-- Late-arriving cards: an inferred member, completed by the real row.
WITH missing_payment_method AS (
    SELECT DISTINCT ON (sf.payment_method_id) sf.payment_method_id, sf.customer_id
    FROM staged_fact AS sf
    WHERE sf.payment_method_id IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM marts.dim_payment_method AS d WHERE d.payment_method_id = sf.payment_method_id
      )
    ORDER BY sf.payment_method_id, sf.balance_transaction_id
)

INSERT INTO marts.dim_payment_method (payment_method_id, customer_id, is_deleted, is_inferred)
SELECT payment_method_id, customer_id, false, true
FROM missing_payment_method
