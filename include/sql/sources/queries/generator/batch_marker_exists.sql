-- The first card token of a batch is its marker: the load is one transaction, so the marker exists
-- exactly when the whole batch was committed.
SELECT EXISTS (SELECT 1 FROM payment_method WHERE token = %(token)s)
