-- Each VACUUM of the source tables that hold an erased customer's old row versions (the erasure
-- window step): after it, those pages no longer hold the old versions as tuples, so WAL written
-- later (full-page images) cannot copy them again.
CREATE TABLE source_vacuum (
    source_vacuum_id bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    database_name    text        NOT NULL CHECK (database_name IN ('oltp', 'reference')),
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz NOT NULL DEFAULT now(),
    finished_lsn     pg_lsn      NOT NULL
);
CREATE INDEX source_vacuum_database_idx ON source_vacuum (database_name, started_at);
