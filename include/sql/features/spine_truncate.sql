TRUNCATE feature_spine;
