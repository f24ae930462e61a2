-- Every index of schema staging (primary keys included), as its definition.
SELECT tablename, indexname, indexdef
FROM pg_indexes
WHERE schemaname = 'staging'
ORDER BY tablename, indexname
