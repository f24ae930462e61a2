-- One monitoring pass; a rerun of the same model version at the same as_of replaces the earlier one.
INSERT INTO ml.monitoring_run AS r
    (model_name, model_version, as_of, current_start, current_end, reference_start, reference_end,
     matured_start, matured_end, alert, decision, reason, evidence, mlflow_run_id)
VALUES (%(model_name)s, %(model_version)s, %(as_of)s, %(current_start)s, %(current_end)s, %(reference_start)s,
        %(reference_end)s, %(matured_start)s, %(matured_end)s, %(alert)s, %(decision)s, %(reason)s,
        %(evidence)s::jsonb, %(mlflow_run_id)s)
ON CONFLICT (model_name, coalesce(model_version, ''), as_of) DO UPDATE
SET current_start = EXCLUDED.current_start, current_end = EXCLUDED.current_end,
    reference_start = EXCLUDED.reference_start, reference_end = EXCLUDED.reference_end,
    matured_start = EXCLUDED.matured_start, matured_end = EXCLUDED.matured_end, alert = EXCLUDED.alert,
    decision = EXCLUDED.decision, reason = EXCLUDED.reason, evidence = EXCLUDED.evidence,
    mlflow_run_id = EXCLUDED.mlflow_run_id, recorded_at = now()
RETURNING monitoring_run_id;
