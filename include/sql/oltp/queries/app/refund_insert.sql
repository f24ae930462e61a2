-- The refund trigger re-checks the charge's status and refundable balance under the charge lock.
INSERT INTO refund (charge_id, amount, status, reason)
VALUES (%(charge_id)s, %(amount)s, 'succeeded', %(reason)s)
RETURNING refund_id;
