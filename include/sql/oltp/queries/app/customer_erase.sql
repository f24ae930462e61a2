UPDATE customer
SET email_enc = NULL,
    name_enc = NULL,
    phone_enc = NULL,
    email_bidx = NULL,
    erased_at = coalesce(erased_at, now())
WHERE customer_id = %(customer_id)s
RETURNING erased_at;
