SELECT key_id, wrapped_key
FROM customer_data_key
WHERE customer_id = %(customer_id)s
FOR UPDATE;
