-- Locks the card and its customer for the payment's transaction: a concurrent detach, card
-- deletion or erasure waits, and if it won we see its outcome here instead of a foreign-key error.
SELECT pm.customer_id, pm.detached_at, pm.exp_month, pm.exp_year,
       c.merchant_id, c.erased_at, m.status AS merchant_status
FROM payment_method AS pm
JOIN customer AS c ON c.customer_id = pm.customer_id
JOIN merchant_ref AS m ON m.merchant_id = c.merchant_id
WHERE pm.payment_method_id = %(payment_method_id)s
FOR SHARE OF pm, c;
