INSERT INTO schema_migrations (version, name, filename, checksum)
VALUES (%(version)s, %(name)s, %(filename)s, %(checksum)s)
