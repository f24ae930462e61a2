-- Labelled examples of a training set: matured labels (temp table charge_label, as of the set's
-- label time) of charges whose features exist at the set's position, in the set's window.
-- In charge order: the primary key (training_set_id, charge_id) then grows at its right edge
-- instead of taking rows in the hash join's order.
INSERT INTO features.training_example (training_set_id, charge_id, created_at, is_fraud)
SELECT %(training_set_id)s, l.charge_id, l.charge_created_at, l.is_fraud
FROM charge_label AS l
JOIN {table} AS f USING (charge_id)
WHERE l.is_fraud IS NOT NULL
  AND f.known_lsn <= %(oltp_lsn)s
  AND (%(window_start)s::timestamptz IS NULL OR l.charge_created_at >= %(window_start)s)
  AND (%(window_end)s::timestamptz IS NULL OR l.charge_created_at < %(window_end)s)
ORDER BY l.charge_id;
