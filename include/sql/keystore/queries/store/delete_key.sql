WITH deleted AS (
    DELETE FROM {table} WHERE key_id = %(key_id)s AND {owner_column} = %(owner_id)s RETURNING key_id
), recorded AS (
    INSERT INTO key_destruction (key_id, owner_table, owner_id, reason)
    SELECT key_id, %(owner_table)s, %(owner_id)s, %(reason)s FROM deleted
    ON CONFLICT (key_id) DO NOTHING
    RETURNING key_id
)
SELECT key_id FROM deleted
