SELECT s.slot_name::text,
       s.plugin::text,
       s.slot_type,
       s.database::text,
       s.active_pid,
       s.confirmed_flush_lsn::text,
       s.restart_lsn::text,
       s.wal_status,
       s.safe_wal_size,
       pg_current_wal_lsn()::text AS current_wal_lsn,
       (pg_current_wal_lsn() - s.confirmed_flush_lsn)::bigint AS lag_bytes,
       (pg_current_wal_lsn() - s.restart_lsn)::bigint AS retained_bytes
FROM pg_replication_slots AS s
WHERE s.slot_name = %(slot)s
