-- Whether a staging index exists (prepare creates what is missing only, so a role without DDL
-- rights can prepare a staging layer the migrate step already defined).
SELECT to_regclass(format('%%I.%%I', %(schema)s::text, %(index)s::text)) IS NOT NULL
