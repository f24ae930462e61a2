INSERT INTO {table} (key_id, {owner_column}, wrapped_key, created_at)
VALUES (%(key_id)s, %(owner_id)s, %(wrapped_key)s, COALESCE(%(created_at)s, now()))
