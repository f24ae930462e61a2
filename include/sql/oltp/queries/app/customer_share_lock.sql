-- FOR SHARE: a concurrent erasure (FOR UPDATE) waits for us, and we see its outcome if it won.
SELECT customer_id, merchant_id, country_code, erased_at
FROM customer
WHERE customer_id = %(customer_id)s
FOR SHARE;
