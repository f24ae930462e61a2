SELECT scored_lsn FROM marts.fraud_score_state WHERE model_name = %(model_name)s;
