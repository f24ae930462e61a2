-- Materialise the features of every ledger charge the window formulation computes exactly
-- (ml.features.window_builder.rebuild_query; the later_load ones are left to the LATERAL builder),
-- with the session signals loaded for them. A full build starts from an emptied table, so a plain
-- insert (no conflict arbitration per row).
INSERT INTO {table} (charge_id, created_at, known_lsn, {columns})
SELECT f.spine_id, f.as_of, f.known_lsn, {values}
FROM ({query}) AS f
LEFT JOIN session_signal AS ss ON ss.charge_id = f.spine_id
WHERE NOT f.later_load;
