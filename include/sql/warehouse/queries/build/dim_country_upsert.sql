-- Type 1: the latest staged values; a tombstone keeps the member (facts still point at it).
WITH changed_country AS (
    SELECT *
    FROM staging.reference_country AS s
    WHERE (s._commit_lsn, s._index_in_txn) > (%(reference_from_lsn)s, %(reference_from_idx)s)
      AND (s._commit_lsn, s._index_in_txn) <= (%(reference_to_lsn)s, %(reference_to_idx)s)
),

dim_country_row AS (
    SELECT country_code, alpha3_code, numeric_code, name AS country_name, default_currency_code, region,
           _is_deleted AS is_deleted
    FROM changed_country
)

INSERT INTO marts.dim_country AS d
    (country_code, alpha3_code, numeric_code, country_name, default_currency_code, region, is_deleted)
SELECT country_code, alpha3_code, numeric_code, country_name, default_currency_code, region, is_deleted
FROM dim_country_row
ON CONFLICT (country_code) DO UPDATE
SET alpha3_code = EXCLUDED.alpha3_code, numeric_code = EXCLUDED.numeric_code,
    country_name = EXCLUDED.country_name, default_currency_code = EXCLUDED.default_currency_code,
    region = EXCLUDED.region, is_deleted = EXCLUDED.is_deleted
WHERE (d.alpha3_code, d.numeric_code, d.country_name, d.default_currency_code, d.region, d.is_deleted)
    IS DISTINCT FROM (EXCLUDED.alpha3_code, EXCLUDED.numeric_code, EXCLUDED.country_name,
                      EXCLUDED.default_currency_code, EXCLUDED.region, EXCLUDED.is_deleted)
