SELECT key_id FROM {table} WHERE {owner_column} = %(owner_id)s ORDER BY created_at, key_id
