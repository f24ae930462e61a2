COPY {table} ({owner_column}, key_id, wrapped_key, created_at) FROM STDIN
