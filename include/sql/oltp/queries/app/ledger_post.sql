-- Charges and refunds post once (partial unique index): a retried posting is a no-op.
INSERT INTO balance_transaction (merchant_id, type, source_id, amount, fee, net, currency_code,
                                 available_on)
VALUES (%(merchant_id)s, %(type)s, %(source_id)s, %(amount)s, %(fee)s, %(amount)s - %(fee)s,
        %(currency_code)s, now() + make_interval(days => %(available_after_days)s))
ON CONFLICT (type, source_id) WHERE type IN ('charge', 'refund', 'payout') DO NOTHING
RETURNING balance_transaction_id;
