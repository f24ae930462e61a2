-- Every column of schema staging with what defines it: type, nullability, default.
SELECT table_name, column_name, data_type, character_maximum_length, numeric_precision, numeric_scale,
       is_nullable, column_default
FROM information_schema.columns
WHERE table_schema = 'staging'
ORDER BY table_name, ordinal_position
