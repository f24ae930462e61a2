SELECT tablename::text
FROM pg_publication_tables
WHERE pubname = %(publication)s AND schemaname = 'public'
ORDER BY tablename
