-- Two model versions on the same charges: how many charges move from each band of the first to
-- each band of the second, and the mean score change (charges scored by both only).
SELECT a.band AS band_a,
       b.band AS band_b,
       count(*) AS charge_count,
       round(avg(b.score - a.score)::numeric, 6) AS mean_score_change
FROM marts.fct_fraud_score AS a
JOIN marts.fct_fraud_score AS b
  ON b.charge_id = a.charge_id AND b.model_name = a.model_name AND b.model_version = %(version_b)s
WHERE a.model_name = %(model_name)s
  AND a.model_version = %(version_a)s
GROUP BY a.band, b.band
ORDER BY array_position(ARRAY['approve', 'review', 'decline'], a.band),
         array_position(ARRAY['approve', 'review', 'decline'], b.band);
