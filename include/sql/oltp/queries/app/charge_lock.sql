SELECT ch.charge_id, ch.status, ch.amount, ch.currency_code, ch.payment_intent_id, pi.merchant_id
FROM charge AS ch
JOIN payment_intent AS pi ON pi.payment_intent_id = ch.payment_intent_id
WHERE ch.charge_id = %(charge_id)s
FOR UPDATE OF ch;
