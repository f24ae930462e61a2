-- bench/cdc_sink_bench.py: rows and tombstones in the benchmark's mirror table.
SELECT count(*), count(*) FILTER (WHERE _is_deleted) FROM {schema}.{table}
