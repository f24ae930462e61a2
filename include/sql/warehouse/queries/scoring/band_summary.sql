-- Charges per model version and decision band in marts.fct_fraud_score (the demo's summary).
SELECT model_version, band, count(*) AS charge_count, round(avg(score)::numeric, 4) AS mean_score
FROM marts.fct_fraud_score
GROUP BY model_version, band
ORDER BY model_version, array_position(ARRAY['approve', 'review', 'decline'], band);
