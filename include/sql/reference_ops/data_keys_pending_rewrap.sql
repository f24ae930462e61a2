-- One batch of wrapped keys not yet under the active KEK, in owner order (keyset pagination).
-- A wrapped key starts with a version byte, the KEK id's length and the KEK id itself.
SELECT {owner_column}, wrapped_key
FROM {table}
WHERE {owner_column} > %(after)s
  AND substring(wrapped_key FROM 3 FOR get_byte(wrapped_key, 1)) <> convert_to(%(active_kek_id)s, 'UTF8')
ORDER BY {owner_column}
LIMIT %(batch_size)s;
