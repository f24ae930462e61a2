-- Rows of a table, ordered by its key, for the benchmark's staging-equals-source check.
SELECT {columns} FROM {table} WHERE {where} ORDER BY {key}
