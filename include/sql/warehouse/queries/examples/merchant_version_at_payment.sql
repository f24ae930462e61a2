-- As-of join: each charge with the merchant version (SCD2) that was valid when it happened, for
-- merchants whose attributes changed at least once.
WITH changed_merchants AS (
    SELECT merchant_id
    FROM analytics.merchants
    GROUP BY merchant_id
    HAVING count(*) > 1
)

SELECT t.balance_transaction_id, t.created_at, t.merchant_id, m.version_number, m.risk_tier_code,
       m.mcc, m.valid_from, m.valid_to
FROM analytics.balance_transactions AS t
JOIN changed_merchants USING (merchant_id)
JOIN analytics.merchants AS m
    ON m.merchant_id = t.merchant_id AND t.created_at >= m.valid_from AND t.created_at < m.valid_to
WHERE t.transaction_type = 'charge'
ORDER BY t.merchant_id, t.created_at
LIMIT %(limit)s;
