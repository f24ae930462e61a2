SELECT wrapped_key FROM {table} WHERE key_id = %(key_id)s
