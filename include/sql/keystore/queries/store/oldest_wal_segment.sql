-- The oldest WAL segment file still in pg_wal (timeline + log + segment, 24 hex digits).
SELECT min(name) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'
