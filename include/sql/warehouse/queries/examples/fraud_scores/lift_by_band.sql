-- Lift table: the fraud-dispute rate of each decision band of one model version against the rate
-- over all its scored charges, on charges whose label has matured (marts.fct_charge_label; an
-- unmatured charge is left out rather than counted as genuine).
WITH labelled AS (
    SELECT s.band, l.is_fraud
    FROM marts.fct_fraud_score AS s
    JOIN marts.fct_charge_label AS l USING (charge_id)
    WHERE s.model_name = %(model_name)s
      AND s.model_version = %(model_version)s
      AND l.is_fraud IS NOT NULL
),

overall AS (
    SELECT count(*) FILTER (WHERE is_fraud)::numeric / nullif(count(*), 0) AS fraud_rate FROM labelled
)

SELECT b.band,
       count(*) AS labelled_charge_count,
       count(*) FILTER (WHERE b.is_fraud) AS fraud_count,
       round(count(*) FILTER (WHERE b.is_fraud)::numeric / count(*), 6) AS fraud_rate,
       round((count(*) FILTER (WHERE b.is_fraud)::numeric / count(*)) / nullif(o.fraud_rate, 0), 4) AS lift
FROM labelled AS b
CROSS JOIN overall AS o
GROUP BY b.band, o.fraud_rate
ORDER BY array_position(ARRAY['approve', 'review', 'decline'], b.band);
