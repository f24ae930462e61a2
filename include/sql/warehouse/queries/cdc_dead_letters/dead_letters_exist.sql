SELECT to_regclass(format('%%I.cdc_dead_letters', %(schema)s::text)) IS NOT NULL
