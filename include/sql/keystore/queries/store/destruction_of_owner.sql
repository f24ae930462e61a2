SELECT key_id, reason, destroyed_at, destroyed_lsn::text
FROM key_destruction
WHERE owner_table = %(owner_table)s AND owner_id = %(owner_id)s
ORDER BY destroyed_lsn
