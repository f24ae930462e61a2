-- A column added to the capture spec after the table was created; existing rows get NULL.
ALTER TABLE {schema}.{table} ADD COLUMN IF NOT EXISTS {column} {type}
