-- Fraud score distribution by merchant and the merchant's risk tier at the time of the charge
-- (the SCD2 version the charge fact points to), for one model version of marts.fct_fraud_score.
SELECT c.merchant_id,
       m.risk_tier_code,
       count(*) AS scored_charge_count,
       round(avg(s.score)::numeric, 6) AS mean_score,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY s.score))::numeric, 6) AS median_score,
       round((percentile_cont(0.9) WITHIN GROUP (ORDER BY s.score))::numeric, 6) AS p90_score,
       count(*) FILTER (WHERE s.band = 'review') AS review_count,
       count(*) FILTER (WHERE s.band = 'decline') AS decline_count
FROM marts.fct_fraud_score AS s
JOIN marts.fct_charge AS c USING (charge_id)
LEFT JOIN marts.dim_merchant AS m ON m.merchant_version_id = c.merchant_version_id
WHERE s.model_name = %(model_name)s
  AND s.model_version = %(model_version)s
GROUP BY c.merchant_id, m.risk_tier_code
ORDER BY mean_score DESC, c.merchant_id, m.risk_tier_code
LIMIT %(limit)s;
