INSERT INTO fx_rate (base_currency_code, quote_currency_code, effective_date, rate, source)
VALUES (%(base)s, %(quote)s, %(effective_date)s, %(rate)s, %(source)s)
ON CONFLICT (base_currency_code, quote_currency_code, effective_date) DO NOTHING
