-- Compare-and-set: a key replaced or deleted meanwhile (rotation, erasure) is left alone.
UPDATE {table} AS target
SET wrapped_key = rewrapped.new_wrapped
FROM (VALUES %s) AS rewrapped (owner_id, old_wrapped, new_wrapped)
WHERE target.{owner_column} = rewrapped.owner_id
  AND target.wrapped_key = rewrapped.old_wrapped
RETURNING target.{owner_column};
