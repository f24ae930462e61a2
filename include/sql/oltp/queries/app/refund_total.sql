SELECT coalesce(sum(amount), 0)::bigint
FROM refund
WHERE charge_id = %(charge_id)s
  AND status IN ('pending', 'succeeded');
