-- The rows of one training set with their features, oldest first (ties by charge id).
COPY (
    SELECT e.charge_id, e.created_at, e.is_fraud, {columns}
    FROM features.training_example AS e
    JOIN {table} AS f USING (charge_id)
    WHERE e.training_set_id = {training_set_id}
    ORDER BY e.created_at, e.charge_id
) TO STDOUT WITH (FORMAT csv, HEADER true)
