-- Columns a change did not carry take the value stored before this batch (values carried by earlier
-- changes of the same batch were already merged into the row when it was encoded).
-- The assignments are fill_unchanged_column.sql per captured column; b and m are matched on the key.
UPDATE {batch} AS b
SET {assignments}
FROM {schema}.{table} AS m
WHERE {key_match}
  AND b._unchanged IS NOT NULL
  AND b._moved_from IS NULL
