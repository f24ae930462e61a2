-- The offline feature table of one definitions version: one immutable row per charge, computed once
-- from what was known strictly before the charge (columns from the definitions).
CREATE TABLE IF NOT EXISTS {table} (
    charge_id   bigint      PRIMARY KEY,
    created_at  timestamptz NOT NULL,
    known_lsn   bigint      NOT NULL,
    {columns},
    computed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS {known_index} ON {table} (known_lsn);
