-- Data-key rotation: the plaintexts (and so the blind index) are unchanged.
UPDATE customer
SET email_enc = %(email_enc)s,
    name_enc = %(name_enc)s,
    phone_enc = %(phone_enc)s
WHERE customer_id = %(customer_id)s;
