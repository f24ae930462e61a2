-- Names and phones of customers not erased: the ingest decrypts them with their data keys from the
-- key store and turns them into blind indexes in memory (paydata.nosql.scrub.KnownValues); it keeps
-- no plaintext.
SELECT c.customer_id, c.name_enc, c.phone_enc
FROM customer AS c
WHERE c.erased_at IS NULL
  AND (c.name_enc IS NOT NULL OR c.phone_enc IS NOT NULL)
ORDER BY c.customer_id;
