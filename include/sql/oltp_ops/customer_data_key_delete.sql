DELETE FROM customer_data_key
WHERE customer_id = %(customer_id)s
RETURNING key_id, wrapped_key;
