-- What the fraud scoring API takes about a charge, in OLTP's own values (the client tokenises
-- them as CDC does): the customer and merchant of its intent, the card's fingerprint and BIN
-- country, the currency's minor units, the session attributes and the charge's time.
SELECT c.charge_id, i.customer_id, i.merchant_id, pm.fingerprint, pm.bin_country_code, c.amount,
       c.currency_code, cur.minor_units, c.ip_address, c.device_id, c.session_id,
       c.created_at
FROM charge AS c
JOIN payment_intent AS i ON i.payment_intent_id = c.payment_intent_id
JOIN payment_method AS pm ON pm.payment_method_id = c.payment_method_id
JOIN currency_ref AS cur ON cur.currency_code = c.currency_code
WHERE c.charge_id = %(charge_id)s;
