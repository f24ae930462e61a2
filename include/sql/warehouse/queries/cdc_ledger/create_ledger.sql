-- The highest position each source's engine has reported to its replication slot, written before the
-- report is sent: a slot whose confirmed position is past it was not moved by this engine.
CREATE TABLE IF NOT EXISTS {schema}.cdc_slot_ledger (
    source        text PRIMARY KEY,
    slot          text NOT NULL,
    confirmed_lsn bigint NOT NULL,
    reset_lsn     bigint NOT NULL,
    -- source-side time of the newest commit or heartbeat at or below confirmed_lsn: the lag in time
    source_time   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
)
