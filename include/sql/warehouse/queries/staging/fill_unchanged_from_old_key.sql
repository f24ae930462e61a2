-- The update half of a key change: the columns it did not carry (unchanged TOAST) hold the values
-- stored under the OLD key before this batch; the new key has no stored row yet (or an unrelated one).
-- old_key_match is old_key_match_column.sql per key column.
UPDATE {batch} AS b
SET {assignments}
FROM {schema}.{table} AS m
WHERE {old_key_match}
  AND b._unchanged IS NOT NULL
  AND b._moved_from IS NOT NULL
