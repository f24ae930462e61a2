SELECT {owner_column}, key_id, wrapped_key, created_at
FROM {table}
WHERE {owner_column} > %(after)s
ORDER BY {owner_column}
LIMIT %(batch_size)s
