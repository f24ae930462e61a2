SELECT count(*) FILTER (WHERE resolved_at IS NULL), count(*)
FROM {schema}.cdc_dead_letters
WHERE source = %(source)s
