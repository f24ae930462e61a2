SELECT to_regclass(format('%%I.cdc_offsets', %(schema)s::text)) IS NOT NULL
