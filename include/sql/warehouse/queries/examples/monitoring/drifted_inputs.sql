-- Which model inputs drifted, and how often, in the monitoring passes of the %(days)s days up to
-- %(as_of)s (ml.monitoring, written by the fraud_monitor DAG), with each input's latest drift score
-- and threshold and what the passes decided. Inputs that never drifted are left out.
WITH recent_pass AS (
    SELECT monitoring_run_id, model_version, as_of, decision
    FROM ml.monitoring_run
    WHERE as_of > %(as_of)s::timestamptz - make_interval(days => %(days)s) AND as_of <= %(as_of)s
),

input_drift AS (
    SELECT m.metric AS input_name, m.method, m.value, m.threshold, m.status, p.as_of, p.decision
    FROM ml.monitoring AS m
    JOIN recent_pass AS p USING (monitoring_run_id)
    WHERE m.check_name = 'feature_drift' AND m.metric <> 'drift_share' AND m.segment = 'all'
)

SELECT input_name,
       min(method) AS method,
       count(*) FILTER (WHERE status = 'drift') AS drifted_pass_count,
       count(*) AS pass_count,
       round((array_agg(value ORDER BY as_of DESC))[1]::numeric, 4) AS latest_score,
       (array_agg(threshold ORDER BY as_of DESC))[1] AS latest_threshold,
       count(*) FILTER (WHERE status = 'drift' AND decision = 'retrain') AS retrain_requests
FROM input_drift
GROUP BY input_name
HAVING count(*) FILTER (WHERE status = 'drift') > 0
ORDER BY drifted_pass_count DESC, latest_score DESC, input_name
LIMIT %(limit)s;
