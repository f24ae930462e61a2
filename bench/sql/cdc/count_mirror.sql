SELECT count(*), count(*) FILTER (WHERE _is_deleted) FROM {table}
