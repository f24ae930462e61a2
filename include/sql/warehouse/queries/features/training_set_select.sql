SELECT training_set_id, definitions_name, definitions_hash, offline_table, oltp_lsn, reference_lsn, label_as_of,
       label_maturity, window_start, window_end, row_count, fraud_count, first_created_at, last_created_at
FROM features.training_set WHERE training_set_id = %(training_set_id)s;
