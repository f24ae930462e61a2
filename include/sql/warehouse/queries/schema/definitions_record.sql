-- Record the checksum of the marts definitions just applied (read by builds that cannot apply them).
INSERT INTO security.applied_definitions (name, checksum, applied_at)
VALUES (%(name)s, %(checksum)s, now())
ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = EXCLUDED.applied_at
