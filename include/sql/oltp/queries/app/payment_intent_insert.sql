INSERT INTO payment_intent (merchant_id, customer_id, amount, currency_code, status)
VALUES (%(merchant_id)s, %(customer_id)s, %(amount)s, %(currency_code)s, 'processing')
RETURNING payment_intent_id;
