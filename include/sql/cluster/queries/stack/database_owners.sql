SELECT d.datname, r.rolname
FROM pg_catalog.pg_database d
JOIN pg_catalog.pg_roles r ON r.oid = d.datdba
WHERE d.datname = ANY(%(databases)s)
ORDER BY d.datname
