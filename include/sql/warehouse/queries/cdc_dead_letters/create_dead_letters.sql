-- Changes the capture policy could not be applied to (a value that cannot be tokenised, say). The row
-- names the change (source position, table, key as the sinks hold it: tokenised where the policy says
-- so) and why, never a value. Written before the batch reaches the sinks and keyed by position, so a
-- replayed batch records nothing twice.
CREATE TABLE IF NOT EXISTS {schema}.cdc_dead_letters (
    dead_letter_id bigserial  PRIMARY KEY,
    source        text        NOT NULL,
    table_name    text        NOT NULL,
    commit_lsn    bigint      NOT NULL,
    index_in_txn  integer     NOT NULL,
    kind          text        NOT NULL,
    key_text      text,
    columns       text[]      NOT NULL,
    reason        text        NOT NULL,
    commit_time   timestamptz,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    resolution    text
);
-- One letter per change: a snapshot chunk shares one position among its rows, and a key change is two
-- changes at one position, so the key is part of the identity.
CREATE UNIQUE INDEX IF NOT EXISTS cdc_dead_letters_change
    ON {schema}.cdc_dead_letters (source, table_name, commit_lsn, index_in_txn, (coalesce(key_text, '')))
