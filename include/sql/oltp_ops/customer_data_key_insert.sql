INSERT INTO customer_data_key (customer_id, key_id, wrapped_key, created_at)
VALUES (%(customer_id)s, %(key_id)s, %(wrapped_key)s, %(created_at)s);
