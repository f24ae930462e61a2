SELECT version, filename, checksum FROM schema_migrations ORDER BY version
