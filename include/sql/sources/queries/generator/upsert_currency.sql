INSERT INTO currency (currency_code, numeric_code, name, minor_units)
VALUES (%(currency_code)s, %(numeric_code)s, %(name)s, %(minor_units)s)
ON CONFLICT (currency_code) DO UPDATE
SET numeric_code = EXCLUDED.numeric_code, name = EXCLUDED.name, minor_units = EXCLUDED.minor_units
WHERE (currency.numeric_code, currency.name, currency.minor_units)
      IS DISTINCT FROM (EXCLUDED.numeric_code, EXCLUDED.name, EXCLUDED.minor_units)
