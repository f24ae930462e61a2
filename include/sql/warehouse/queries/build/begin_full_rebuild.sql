-- Full rebuild on a migrated warehouse: the owner's function empties the marts and drops the ledger
-- fact's secondary indexes in this transaction (warehouse migration V002), so the loader needs no
-- ownership; returns the names of the dropped indexes.
SELECT security.begin_full_rebuild()
