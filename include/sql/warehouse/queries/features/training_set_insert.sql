INSERT INTO features.training_set (definitions_name, definitions_hash, offline_table, oltp_lsn, reference_lsn,
                                   label_as_of, label_maturity, window_start, window_end, row_count, fraud_count)
VALUES (%(definitions_name)s, %(definitions_hash)s, %(offline_table)s, %(oltp_lsn)s, %(reference_lsn)s,
        %(label_as_of)s, %(label_maturity)s, %(window_start)s, %(window_end)s, 0, 0)
ON CONFLICT DO NOTHING
RETURNING training_set_id;
