-- One row per source: the highest change position applied, written in the same transaction as the data.
CREATE TABLE IF NOT EXISTS {schema}.cdc_offsets (
    source       text PRIMARY KEY,
    commit_lsn   bigint NOT NULL,
    index_in_txn integer NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
)
