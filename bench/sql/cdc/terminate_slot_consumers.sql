-- Benchmark cleanup: end the consumers of the benchmark slots (dropped next, before the databases).
SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
WHERE slot_name LIKE %(pattern)s AND active_pid IS NOT NULL
