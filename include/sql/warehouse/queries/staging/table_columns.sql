-- Columns of an existing staging table with their base type (typmod dropped) and primary-key membership.
SELECT a.attname,
       a.atttypid::regtype::text AS base_type,
       coalesce(a.attnum = ANY (i.indkey::smallint[]), false) AS in_primary_key
FROM pg_attribute AS a
JOIN pg_class AS c ON c.oid = a.attrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_index AS i ON i.indrelid = c.oid AND i.indisprimary
WHERE n.nspname = %(schema)s
  AND c.relname = %(table)s
  AND a.attnum > 0
  AND NOT a.attisdropped
