-- Full rebuild only, after the TRUNCATE (the table is exclusively locked already): one index
-- build over the loaded table is far cheaper than maintaining the index row by row.
DROP INDEX {index}
