SELECT slot, confirmed_lsn, source_time
FROM {schema}.cdc_slot_ledger
WHERE source = %(source)s
