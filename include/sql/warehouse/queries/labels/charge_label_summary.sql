-- Labelled (matured) charges and how many of them are fraud, for the run's report.
SELECT count(*) FILTER (WHERE is_fraud IS NOT NULL) AS matured, count(*) FILTER (WHERE is_fraud) AS fraud
FROM charge_label
