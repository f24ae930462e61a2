DELETE FROM {table} WHERE {owner_column} = ANY(%(owner_ids)s)
