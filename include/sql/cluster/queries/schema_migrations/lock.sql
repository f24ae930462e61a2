-- Session-level advisory lock (scoped to the current database) serialising migration runners.
SELECT pg_advisory_lock(%(lock_key)s)
