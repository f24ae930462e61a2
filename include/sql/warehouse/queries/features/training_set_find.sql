-- An existing training set of the same version (definitions, positions, labels, window).
SELECT training_set_id FROM features.training_set
WHERE definitions_hash = %(definitions_hash)s AND oltp_lsn = %(oltp_lsn)s AND reference_lsn = %(reference_lsn)s
  AND label_as_of = %(label_as_of)s AND label_maturity = %(label_maturity)s
  AND coalesce(window_start, '-infinity') = coalesce(%(window_start)s::timestamptz, '-infinity')
  AND coalesce(window_end, 'infinity') = coalesce(%(window_end)s::timestamptz, 'infinity');
