SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'pgaudit'
