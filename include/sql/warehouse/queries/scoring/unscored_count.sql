-- Charge facts without a score of any model version (the demo's summary): charges fraud_score
-- skipped as older than the online horizon, or loaded after its last run.
SELECT count(*)
FROM marts.fct_charge AS c
WHERE NOT c.is_deleted
  AND NOT EXISTS (SELECT 1 FROM marts.fct_fraud_score AS s WHERE s.charge_id = c.charge_id);
