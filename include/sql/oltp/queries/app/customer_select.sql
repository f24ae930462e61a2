SELECT customer_id, merchant_id, email_enc, name_enc, phone_enc, country_code,
       created_at, updated_at, erased_at
FROM customer
WHERE customer_id = %(customer_id)s;
