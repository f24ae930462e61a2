-- bench/cdc_sink_bench.py: a plain table (no key, no index) for the raw COPY baseline.
CREATE TABLE {table} ({columns})
