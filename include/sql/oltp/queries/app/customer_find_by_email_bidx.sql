-- email_bidx = ANY: during a token-key rotation the index may be under any key of the ring.
SELECT customer_id
FROM customer
WHERE merchant_id = %(merchant_id)s
  AND email_bidx = ANY(%(candidates)s)
  AND erased_at IS NULL
ORDER BY customer_id;
