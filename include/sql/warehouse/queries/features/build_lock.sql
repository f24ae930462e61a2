-- One feature build at a time per warehouse (transaction-scoped advisory lock).
SELECT pg_advisory_xact_lock(hashtext('paydata.features.build'));
