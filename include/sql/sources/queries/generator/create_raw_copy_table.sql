-- Benchmark baseline: same columns and defaults; no keys, checks, indexes or triggers (NOT NULL stays).
CREATE TABLE IF NOT EXISTS {raw_table} (LIKE {table} INCLUDING DEFAULTS)
