SELECT payment_method_id, customer_id, detached_at
FROM payment_method
WHERE payment_method_id = %(payment_method_id)s
FOR UPDATE;
