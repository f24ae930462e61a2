SELECT count(*) FROM audit_log
WHERE action = 'erasure_completed' AND subject_table = 'customer' AND subject_id = %(customer_id)s
