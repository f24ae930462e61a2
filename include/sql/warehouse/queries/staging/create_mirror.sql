-- Current state of one captured table; deletes stay as tombstones (_is_deleted) with their last values.
-- The captured columns come first; every captured column is nullable because
-- a delete of a key never seen before leaves a tombstone that holds only the key.
CREATE TABLE IF NOT EXISTS {schema}.{table} (
    {columns},
    _commit_lsn   bigint      NOT NULL,
    _index_in_txn integer     NOT NULL,
    _commit_time  timestamptz,
    _is_deleted   boolean     NOT NULL DEFAULT false,
    _loaded_at    timestamptz,
    PRIMARY KEY ({key})
)
