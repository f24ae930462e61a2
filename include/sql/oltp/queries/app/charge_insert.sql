INSERT INTO charge (payment_intent_id, payment_method_id, amount, currency_code, ip_address,
                    device_id, session_id)
VALUES (%(payment_intent_id)s, %(payment_method_id)s, %(amount)s, %(currency_code)s, %(ip_address)s,
        %(device_id)s, %(session_id)s)
RETURNING charge_id;
