-- Materialise the features of the spine's charges (rows already present are kept: they were
-- computed from what was known at their time).
INSERT INTO {table} (charge_id, created_at, known_lsn, {columns})
SELECT f.spine_id, s.as_of, s.known_lsn, {values}
FROM ({query}) AS f
JOIN feature_spine AS s USING (spine_id)
LEFT JOIN session_signal AS ss ON ss.charge_id = f.spine_id
ON CONFLICT (charge_id) DO NOTHING;
