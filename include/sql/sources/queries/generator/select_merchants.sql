SELECT merchant_id, mcc, country_code, default_currency_code, risk_tier_code, payout_schedule, status
FROM merchant
ORDER BY merchant_id
