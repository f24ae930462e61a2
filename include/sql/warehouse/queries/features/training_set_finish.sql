UPDATE features.training_set AS t
SET row_count = s.row_count, fraud_count = s.fraud_count, first_created_at = s.first_at, last_created_at = s.last_at
FROM (SELECT count(*) AS row_count, count(*) FILTER (WHERE is_fraud) AS fraud_count,
             min(created_at) AS first_at, max(created_at) AS last_at
      FROM features.training_example WHERE training_set_id = %(training_set_id)s) AS s
WHERE t.training_set_id = %(training_set_id)s
RETURNING t.row_count, t.fraud_count, t.first_created_at, t.last_created_at;
