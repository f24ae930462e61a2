SELECT customer_id, merchant_id, email_enc, name_enc, phone_enc, country_code, erased_at
FROM customer
WHERE customer_id = %(customer_id)s
FOR UPDATE;
