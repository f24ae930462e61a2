-- Names and phones of customers not erased, with their wrapped data keys: the ingest turns them
-- into blind indexes in memory (paydata.nosql.scrub.KnownValues) and keeps no plaintext.
SELECT c.customer_id, c.name_enc, c.phone_enc, k.wrapped_key, k.key_id
FROM customer AS c
JOIN customer_data_key AS k USING (customer_id)
WHERE c.erased_at IS NULL
  AND (c.name_enc IS NOT NULL OR c.phone_enc IS NOT NULL)
ORDER BY c.customer_id;
