-- Sessions and devices of one customer's charges (raw ids, tokenised by the caller), for erasure
-- of the customer's NoSQL documents and landing records.
SELECT DISTINCT ch.session_id
FROM charge AS ch
JOIN payment_intent AS pi USING (payment_intent_id)
WHERE pi.customer_id = %(customer_id)s
  AND ch.session_id IS NOT NULL;
