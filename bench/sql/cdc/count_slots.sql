SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE %(pattern)s AND NOT temporary
