SELECT name, setting FROM pg_settings
WHERE name IN ('wal_recycle', 'wal_init_zero', 'archive_mode', 'wal_segment_size', 'wal_keep_size')
