-- Downstream builds read "everything after watermark W": an index on the position keeps that
-- proportional to the changes since W, not to the size of the table.
CREATE INDEX IF NOT EXISTS {index} ON {schema}.{table} (_commit_lsn, _index_in_txn)
