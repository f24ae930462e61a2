-- The latest pass before as_of that requested retraining of the model (the cooldown starts there).
SELECT max(as_of) FROM ml.monitoring_run
WHERE model_name = %(model_name)s AND decision = 'retrain' AND as_of < %(as_of)s;
