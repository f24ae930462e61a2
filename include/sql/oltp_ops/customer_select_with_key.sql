SELECT c.customer_id, c.merchant_id, c.email_enc, c.name_enc, c.phone_enc, c.country_code,
       c.created_at, c.updated_at, c.erased_at, k.key_id, k.wrapped_key
FROM customer AS c
LEFT JOIN customer_data_key AS k USING (customer_id)
WHERE c.customer_id = %(customer_id)s;
