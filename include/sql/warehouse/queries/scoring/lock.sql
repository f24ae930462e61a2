-- One scoring run at a time per warehouse (held to the end of the transaction).
SELECT pg_advisory_xact_lock(hashtext('paydata.fct_fraud_score'));
