SELECT dispute_id, charge_id, amount, status
FROM dispute
WHERE dispute_id = %(dispute_id)s
FOR UPDATE;
