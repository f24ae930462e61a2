-- Compare-and-set: a key deleted or replaced since it was read is left alone.
UPDATE {table} AS k
SET wrapped_key = v.new_wrapped
FROM (VALUES %s) AS v (key_id, old_wrapped, new_wrapped)
WHERE k.key_id = v.key_id AND k.wrapped_key = v.old_wrapped
RETURNING k.key_id
