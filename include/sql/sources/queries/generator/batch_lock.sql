-- Serialises two loads of the same batch; released at commit or rollback.
SELECT pg_advisory_xact_lock(hashtextextended(%(batch_key)s, 7411))
