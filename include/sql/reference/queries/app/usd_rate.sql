-- Units of USD per unit of a currency on a day: the charge fact's rule (warehouse
-- build/charge_stage.sql): the latest rate on or before the day, in either direction, a direct
-- quote winning a tie, rounded to 16 places.
SELECT round(CASE WHEN fx.quote_currency_code = 'USD' THEN fx.rate ELSE 1 / fx.rate END, 16) AS rate_to_usd
FROM fx_rate AS fx
WHERE fx.effective_date <= %(day)s
  AND ((fx.base_currency_code = %(currency_code)s AND fx.quote_currency_code = 'USD')
       OR (fx.base_currency_code = 'USD' AND fx.quote_currency_code = %(currency_code)s))
ORDER BY fx.effective_date DESC, (fx.quote_currency_code = 'USD') DESC
LIMIT 1;
