-- Fraud rate by merchant country (the merchant's country at the time of the charge) over charges
-- whose fraud label has matured, in the published labels (python -m paydata.warehouse labels).
-- Unmatured charges are left out: counting them as "not fraud" would understate recent fraud.
WITH matured_label AS (
    SELECT l.charge_id, l.is_fraud, c.merchant_country_code, c.amount_usd
    FROM analytics.charge_labels AS l
    JOIN analytics.charges AS c USING (charge_id)
    WHERE l.is_fraud IS NOT NULL
)

SELECT merchant_country_code,
       count(*) AS labelled_charge_count,
       count(*) FILTER (WHERE is_fraud) AS fraud_count,
       round(count(*) FILTER (WHERE is_fraud)::numeric / count(*), 4) AS fraud_rate,
       coalesce(sum(amount_usd) FILTER (WHERE is_fraud), 0) AS fraud_amount_usd
FROM matured_label
GROUP BY merchant_country_code
ORDER BY fraud_rate DESC, merchant_country_code
LIMIT %(limit)s;
