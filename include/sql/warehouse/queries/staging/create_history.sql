-- Every version of one captured table, append-only: what SCD2 dimensions are built from.
-- _op: I insert, U update, D delete, T truncate, S snapshot row.
CREATE TABLE IF NOT EXISTS {schema}.{table} (
    {columns},
    _commit_lsn   bigint      NOT NULL,
    _index_in_txn integer     NOT NULL,
    _commit_time  timestamptz,
    _is_deleted   boolean     NOT NULL DEFAULT false,
    _loaded_at    timestamptz,
    _op           char(1)     NOT NULL CHECK (_op IN ('I', 'U', 'D', 'T', 'S')),
    PRIMARY KEY ({key}, _commit_lsn, _index_in_txn)
)
