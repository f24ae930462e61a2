-- The latest monitoring pass (for the demo's summary), or nothing before the first.
SELECT monitoring_run_id, model_name, model_version, as_of, decision, alert, reason, evidence, mlflow_run_id
FROM ml.monitoring_run
ORDER BY recorded_at DESC, monitoring_run_id DESC
LIMIT 1;
