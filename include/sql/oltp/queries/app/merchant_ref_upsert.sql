-- Unchanged rows are not rewritten (no dead tuples, no WAL); xmax = 0 marks a fresh insert.
INSERT INTO merchant_ref AS target (merchant_id, country_code, default_currency_code, status)
SELECT merchant_id, country_code, default_currency_code, status FROM merchant_ref_stage
ON CONFLICT (merchant_id) DO UPDATE
    SET country_code = EXCLUDED.country_code,
        default_currency_code = EXCLUDED.default_currency_code,
        status = EXCLUDED.status,
        synced_at = now()
    WHERE (target.country_code, target.default_currency_code, target.status)
          IS DISTINCT FROM (EXCLUDED.country_code, EXCLUDED.default_currency_code, EXCLUDED.status)
RETURNING (xmax = 0) AS inserted;
