UPDATE payment_method
SET detached_at = now()
WHERE payment_method_id = %(payment_method_id)s
  AND detached_at IS NULL;
