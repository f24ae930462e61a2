UPDATE payment_intent
SET status = %(status)s
WHERE payment_intent_id = %(payment_intent_id)s
  AND status IS DISTINCT FROM %(status)s;
