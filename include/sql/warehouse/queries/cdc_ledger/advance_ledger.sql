-- Only ever forward, and only for the slot the ledger was started for.
UPDATE {schema}.cdc_slot_ledger
SET source_time = CASE WHEN %(lsn)s >= confirmed_lsn THEN coalesce(%(source_time)s, source_time) ELSE source_time END,
    confirmed_lsn = greatest(confirmed_lsn, %(lsn)s),
    updated_at = now()
WHERE source = %(source)s
  AND slot = %(slot)s
RETURNING confirmed_lsn
