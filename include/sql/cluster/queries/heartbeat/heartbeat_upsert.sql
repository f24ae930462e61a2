-- Keyed by run id so a rerun of the same run rewrites its own row instead of adding one.
INSERT INTO public.platform_heartbeat (run_id, checked_at, tls_version, server_version)
SELECT %(run_id)s, %(checked_at)s, ssl.version, current_setting('server_version')
FROM (SELECT 1) AS one
LEFT JOIN pg_stat_ssl AS ssl ON ssl.pid = pg_backend_pid() AND ssl.ssl
ON CONFLICT (run_id) DO UPDATE
SET checked_at = EXCLUDED.checked_at,
    tls_version = EXCLUDED.tls_version,
    server_version = EXCLUDED.server_version
RETURNING tls_version, server_version;
