-- Legacy import: a rerun finds the row already there and reports whether it holds the same bytes.
WITH inserted AS (
    INSERT INTO {table} (key_id, {owner_column}, wrapped_key, created_at)
    VALUES (%(key_id)s, %(owner_id)s, %(wrapped_key)s, %(created_at)s)
    ON CONFLICT (key_id) DO NOTHING
    RETURNING key_id
)
SELECT EXISTS (SELECT 1 FROM inserted)
    OR EXISTS (SELECT 1 FROM {table}
               WHERE key_id = %(key_id)s AND {owner_column} = %(owner_id)s AND wrapped_key = %(wrapped_key)s)
