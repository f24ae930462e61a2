-- The customer's charges that still carry something linking them to the person (locked):
-- the ids downstream stores were keyed by are handed to the erasure hooks before they are wiped.
SELECT ch.charge_id, ch.session_id, ch.device_id
FROM charge AS ch
JOIN payment_intent AS pi USING (payment_intent_id)
WHERE pi.customer_id = %(customer_id)s
  AND (ch.ip_address IS NOT NULL OR ch.device_id IS NOT NULL OR ch.session_id IS NOT NULL
       OR ch.failure_message IS NOT NULL)
ORDER BY ch.charge_id
FOR UPDATE OF ch;
