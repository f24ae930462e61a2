-- The fact table's indexes that back no constraint (the primary key stays), with the catalog's
-- own definition: a full rebuild drops them before the load and re-runs these definitions after
-- it, so marts.sql (or whatever created them) stays the one source of the index definitions.
SELECT n.nspname AS index_schema, c.relname AS index_name, pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE i.indrelid = 'marts.fct_balance_transaction'::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = i.indexrelid)
ORDER BY c.relname
