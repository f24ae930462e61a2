INSERT INTO merchant_data_key (merchant_id, key_id, wrapped_key, created_at)
VALUES (%(merchant_id)s, %(key_id)s, %(wrapped_key)s, %(created_at)s)
