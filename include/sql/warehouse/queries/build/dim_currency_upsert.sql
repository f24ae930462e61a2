-- Type 1: the latest staged values; a tombstone keeps the member (facts still point at it).
WITH changed_currency AS (
    SELECT *
    FROM staging.reference_currency AS s
    WHERE (s._commit_lsn, s._index_in_txn) > (%(reference_from_lsn)s, %(reference_from_idx)s)
      AND (s._commit_lsn, s._index_in_txn) <= (%(reference_to_lsn)s, %(reference_to_idx)s)
),

dim_currency_row AS (
    SELECT currency_code, numeric_code, name AS currency_name, minor_units, _is_deleted AS is_deleted
    FROM changed_currency
)

INSERT INTO marts.dim_currency AS d (currency_code, numeric_code, currency_name, minor_units, is_deleted)
SELECT currency_code, numeric_code, currency_name, minor_units, is_deleted FROM dim_currency_row
ON CONFLICT (currency_code) DO UPDATE
SET numeric_code = EXCLUDED.numeric_code, currency_name = EXCLUDED.currency_name,
    minor_units = EXCLUDED.minor_units, is_deleted = EXCLUDED.is_deleted
WHERE (d.numeric_code, d.currency_name, d.minor_units, d.is_deleted)
    IS DISTINCT FROM (EXCLUDED.numeric_code, EXCLUDED.currency_name, EXCLUDED.minor_units, EXCLUDED.is_deleted)
