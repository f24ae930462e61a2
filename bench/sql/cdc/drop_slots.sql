SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
WHERE slot_name LIKE %(pattern)s AND NOT temporary AND active_pid IS NULL
