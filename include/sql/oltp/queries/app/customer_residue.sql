-- What the database still holds about an erased customer (all must be zero / false).
SELECT
    (SELECT count(*) FROM customer
     WHERE customer_id = %(customer_id)s
       AND (email_enc IS NOT NULL OR name_enc IS NOT NULL OR phone_enc IS NOT NULL
            OR email_bidx IS NOT NULL OR erased_at IS NULL)) AS personal_fields,
    (SELECT count(*) FROM charge AS ch JOIN payment_intent AS pi USING (payment_intent_id)
     WHERE pi.customer_id = %(customer_id)s
       AND (ch.ip_address IS NOT NULL OR ch.device_id IS NOT NULL OR ch.session_id IS NOT NULL
            OR ch.failure_message IS NOT NULL)) AS linked_charges,
    (SELECT count(*) FROM payment_method
     WHERE customer_id = %(customer_id)s AND detached_at IS NULL) AS attached_cards;
