-- What the marts know: the latest source commit time of the charges they were built from.
SELECT source_commit_at FROM marts.freshness WHERE table_name = 'fct_charge'
