-- What the marts know: the latest OLTP source commit time of the windows fct_charge was built from.
SELECT source_commit_at FROM marts.freshness WHERE table_name = 'fct_charge'
