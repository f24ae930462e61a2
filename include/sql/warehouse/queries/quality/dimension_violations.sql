-- Dimension rules: SCD2 versions of a merchant tile time without gaps or overlaps, exactly one is
-- current, and real members reference known countries and currencies.
WITH merchant_version_order AS (
    SELECT merchant_id, version_number, valid_from, valid_to, is_current,
           lead(valid_from) OVER by_version AS next_valid_from,
           lag(version_number) OVER by_version AS previous_version_number
    FROM marts.dim_merchant
    WINDOW by_version AS (PARTITION BY merchant_id ORDER BY version_number)
),

violation AS (
    SELECT 'dim_merchant.validity_contiguous' AS check_name,
           merchant_id::text || ' v' || version_number AS row_key,
           format('valid_to %%s but next version starts %%s', valid_to, next_valid_from) AS detail
    FROM merchant_version_order
    WHERE next_valid_from IS NOT NULL AND next_valid_from <> valid_to
    UNION ALL
    SELECT 'dim_merchant.validity_bounds', merchant_id::text || ' v' || version_number,
           format('valid from %%s to %%s', valid_from, valid_to)
    FROM merchant_version_order
    WHERE (previous_version_number IS NULL AND valid_from <> '-infinity')
       OR (next_valid_from IS NULL AND valid_to <> 'infinity')
    UNION ALL
    SELECT 'dim_merchant.one_current_version', merchant_id::text,
           format('%%s current versions', count(*) FILTER (WHERE is_current))
    FROM marts.dim_merchant
    GROUP BY merchant_id
    HAVING count(*) FILTER (WHERE is_current) <> 1
    UNION ALL
    SELECT 'dim_merchant.country_code', merchant_version_id::text,
           format('country %%s not in dim_country', country_code)
    FROM marts.dim_merchant AS m
    WHERE NOT is_inferred
      AND NOT EXISTS (SELECT 1 FROM marts.dim_country AS c WHERE c.country_code = m.country_code)
    UNION ALL
    SELECT 'dim_merchant.default_currency_code', merchant_version_id::text,
           format('currency %%s not in dim_currency', default_currency_code)
    FROM marts.dim_merchant AS m
    WHERE NOT is_inferred
      AND NOT EXISTS (
          SELECT 1 FROM marts.dim_currency AS c WHERE c.currency_code = m.default_currency_code
      )
)

SELECT check_name, row_key, detail
FROM violation
ORDER BY check_name, row_key
LIMIT %(limit)s
