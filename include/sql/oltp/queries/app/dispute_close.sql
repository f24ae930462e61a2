UPDATE dispute
SET status = %(status)s,
    closed_at = now()
WHERE dispute_id = %(dispute_id)s;
