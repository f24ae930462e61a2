-- The merchants with the most USD volume over the last %(days)s days of loaded data, with their
-- current risk tier.
WITH recent_volume AS (
    SELECT merchant_id, sum(amount_usd) AS volume_usd, sum(transaction_count) AS transaction_count
    FROM analytics.daily_merchant_volume
    WHERE date_day > (SELECT max(date_day) FROM analytics.daily_merchant_volume) - %(days)s
    GROUP BY merchant_id
)

SELECT m.merchant_id, m.legal_name, m.mcc, m.risk_tier_code, v.volume_usd, v.transaction_count
FROM recent_volume AS v
JOIN analytics.merchants AS m ON m.merchant_id = v.merchant_id AND m.is_current
ORDER BY v.volume_usd DESC NULLS LAST
LIMIT %(limit)s;
