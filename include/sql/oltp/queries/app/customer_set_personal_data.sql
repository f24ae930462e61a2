UPDATE customer
SET email_enc = %(email_enc)s,
    name_enc = %(name_enc)s,
    phone_enc = %(phone_enc)s,
    email_bidx = %(email_bidx)s
WHERE customer_id = %(customer_id)s;
