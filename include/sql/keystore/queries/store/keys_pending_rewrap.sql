-- One batch of keys in key order after %(after)s; the caller skips those already under the
-- active wrapping key (the wrapped form names it, the database cannot tell).
SELECT key_id, wrapped_key FROM {table}
WHERE key_id > %(after)s
ORDER BY key_id
LIMIT %(batch_size)s
