SELECT spine_id, {columns} FROM feature_spine ORDER BY spine_id;
