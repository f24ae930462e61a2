SELECT slot_name, restart_lsn::text, wal_status FROM pg_replication_slots ORDER BY slot_name
