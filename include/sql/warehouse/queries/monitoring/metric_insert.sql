INSERT INTO ml.monitoring
    (monitoring_run_id, window_start, window_end, check_name, metric, method, segment, value, threshold, status,
     row_count, fraud_count)
VALUES (%(monitoring_run_id)s, %(window_start)s, %(window_end)s, %(check_name)s, %(metric)s, %(method)s,
        %(segment)s, %(value)s, %(threshold)s, %(status)s, %(row_count)s, %(fraud_count)s);
