DELETE FROM ml.monitoring WHERE monitoring_run_id = %(monitoring_run_id)s;
