-- One row per (database, run): proves the platform reached this database over TLS in that run.
CREATE TABLE IF NOT EXISTS public.platform_heartbeat (
    run_id       text        NOT NULL,
    checked_at   timestamptz NOT NULL,
    tls_version  text,
    server_version text      NOT NULL,
    PRIMARY KEY (run_id)
);
