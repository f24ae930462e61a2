-- Reserve a contiguous block of identity values: the caller holds a lock that keeps other writers
-- from drawing values in between (see lock_traffic_tables.sql). Returns the last reserved value.
SELECT setval(
    pg_get_serial_sequence(%(table)s, %(column)s),
    nextval(pg_get_serial_sequence(%(table)s, %(column)s)) + %(count)s - 1
)
