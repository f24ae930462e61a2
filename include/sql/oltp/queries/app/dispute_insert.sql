INSERT INTO dispute (charge_id, amount, reason)
VALUES (%(charge_id)s, %(amount)s, %(reason)s)
RETURNING dispute_id;
