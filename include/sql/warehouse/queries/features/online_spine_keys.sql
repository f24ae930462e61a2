-- Online spine of one entity: its keys with an event loaded in (from_lsn, to_lsn] in the listed
-- sources (every key when from_lsn is -1), each at the refresh's as_of and position.
INSERT INTO feature_spine (spine_id, as_of, known_lsn, {columns})
SELECT row_number() OVER (ORDER BY {key_order}), %(as_of)s, %(known_lsn)s, {columns}
FROM ({changed}) AS changed_key;
ANALYZE feature_spine;
