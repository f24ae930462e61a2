-- Whether the migrate step created the definitions' offline table (the ml role may not create it).
SELECT to_regclass(format('features.%%I', %(table)s::text)) IS NOT NULL
