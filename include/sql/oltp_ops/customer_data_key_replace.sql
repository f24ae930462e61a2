UPDATE customer_data_key
SET key_id = %(key_id)s,
    wrapped_key = %(wrapped_key)s,
    created_at = %(created_at)s
WHERE customer_id = %(customer_id)s;
