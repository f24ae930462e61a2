-- A new slot (snapshot) or an adopted one: the ledger starts over at the slot's own position.
INSERT INTO {schema}.cdc_slot_ledger (source, slot, confirmed_lsn, reset_lsn, source_time, updated_at)
VALUES (%(source)s, %(slot)s, %(lsn)s, %(lsn)s, %(source_time)s, now())
ON CONFLICT (source) DO UPDATE
SET slot = excluded.slot,
    confirmed_lsn = excluded.confirmed_lsn,
    reset_lsn = excluded.reset_lsn,
    source_time = excluded.source_time,
    updated_at = now()
