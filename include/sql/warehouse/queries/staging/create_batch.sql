-- One table's share of a batch, loaded by COPY; gone at the end of the transaction (commit or rollback).
-- _unchanged names the columns whose value is not in this row (unchanged TOAST, or every non-key column
-- of a delete) and must come from the row's previous version. _moved_from, for the update half of a
-- key change, holds the old key (its values as text, in key order): that previous version is stored
-- under the old key, the new one has none yet.
CREATE TEMPORARY TABLE {batch} (
    {columns},
    _commit_lsn   bigint   NOT NULL,
    _index_in_txn integer  NOT NULL,
    _commit_time  timestamptz,
    _op           char(1)  NOT NULL,
    _unchanged    text[],
    _moved_from   text[]
) ON COMMIT DROP
