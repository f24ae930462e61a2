UPDATE payment_method
SET detached_at = now()
WHERE customer_id = %(customer_id)s
  AND detached_at IS NULL;
