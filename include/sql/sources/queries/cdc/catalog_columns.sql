-- Columns of the captured tables as the source catalog has them now (schema public).
SELECT c.relname::text AS table_name,
       a.attname::text AS column_name,
       a.atttypid::int AS type_oid,
       format_type(a.atttypid, a.atttypmod) AS sql_type
FROM pg_attribute AS a
JOIN pg_class AS c ON c.oid = a.attrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = 'public'
  AND c.relname = ANY(%(tables)s)
  AND c.relkind IN ('r', 'p')
  AND a.attnum > 0
  AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
