-- Concurrent prepare() calls would race on CREATE TABLE IF NOT EXISTS; serialise them per database.
SELECT pg_advisory_xact_lock(hashtext('paydata.cdc.warehouse_staging.prepare'))
