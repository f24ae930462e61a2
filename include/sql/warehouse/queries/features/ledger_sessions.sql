-- The session token and time of every ledger charge at or below to_lsn that has a session (a full build).
SELECT charge_id, session_id, created_at FROM features.charge_event
WHERE session_id IS NOT NULL AND known_lsn <= %(to_lsn)s ORDER BY charge_id;
