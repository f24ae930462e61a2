SELECT merchant_id, country_code, default_currency_code, status
FROM merchant
ORDER BY merchant_id;
