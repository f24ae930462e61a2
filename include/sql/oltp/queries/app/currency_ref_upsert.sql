-- Unchanged rows are not rewritten (no dead tuples, no WAL); xmax = 0 marks a fresh insert.
INSERT INTO currency_ref AS target (currency_code, minor_units)
SELECT currency_code, minor_units FROM currency_ref_stage
ON CONFLICT (currency_code) DO UPDATE
    SET minor_units = EXCLUDED.minor_units,
        synced_at = now()
    WHERE target.minor_units IS DISTINCT FROM EXCLUDED.minor_units
RETURNING (xmax = 0) AS inserted;
