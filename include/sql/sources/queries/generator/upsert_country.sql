INSERT INTO country (country_code, alpha3_code, numeric_code, name, default_currency_code, region)
VALUES (%(country_code)s, %(alpha3_code)s, %(numeric_code)s, %(name)s, %(default_currency_code)s, %(region)s)
ON CONFLICT (country_code) DO UPDATE
SET alpha3_code = EXCLUDED.alpha3_code, numeric_code = EXCLUDED.numeric_code, name = EXCLUDED.name,
    default_currency_code = EXCLUDED.default_currency_code, region = EXCLUDED.region
WHERE (country.alpha3_code, country.numeric_code, country.name, country.default_currency_code, country.region)
      IS DISTINCT FROM (EXCLUDED.alpha3_code, EXCLUDED.numeric_code, EXCLUDED.name,
                        EXCLUDED.default_currency_code, EXCLUDED.region)
