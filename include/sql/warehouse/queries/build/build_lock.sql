-- One build at a time per warehouse (session lock, taken before the build's snapshot).
SELECT pg_advisory_lock(hashtextextended('paydata.warehouse.build', 0))
