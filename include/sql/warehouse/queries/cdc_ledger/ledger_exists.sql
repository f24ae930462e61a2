SELECT to_regclass(format('%%I.cdc_slot_ledger', %(schema)s::text)) IS NOT NULL
