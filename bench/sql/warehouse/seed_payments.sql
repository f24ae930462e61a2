-- Benchmark payments %(first_id)s..%(last_id)s: intent, charge and ledger row each, one
-- transaction per payment at position (id * 10 + 1000, 0..2); customers and cards first time only.
INSERT INTO staging.oltp_customer (customer_id, merchant_id, country_code, created_at, _commit_lsn, _index_in_txn, _commit_time)
SELECT 'tok_' || c, 1 + c %% %(merchants)s, 'FR', '2025-01-01', 100, c, '2025-01-01'
FROM generate_series(1, %(customers)s) AS c
ON CONFLICT DO NOTHING;
INSERT INTO staging.oltp_payment_method (payment_method_id, customer_id, type, brand, funding, exp_month, exp_year, bin_country_code, created_at, _commit_lsn, _index_in_txn, _commit_time)
SELECT c, 'tok_' || c, 'card', (ARRAY['visa', 'mastercard', 'amex'])[1 + c %% 3], 'credit', 1, 2030, 'FR', '2025-01-01', 200, c, '2025-01-01'
FROM generate_series(1, %(customers)s) AS c
ON CONFLICT DO NOTHING;
WITH payment AS (
    SELECT p AS id, 1 + (p %% %(customers)s) AS customer, 1 + (p %% %(customers)s) %% %(merchants)s AS merchant,
           100 + (p * 7919) %% 100000 AS amount,
           CASE WHEN p %% 10 = 0 THEN 'USD' ELSE 'EUR' END AS currency,
           '2025-01-01'::timestamptz + (p %% 600) * interval '1 day' + (p %% 86400) * interval '1 second' AS at,
           p * 10 + 1000 AS lsn
    FROM generate_series(%(first_id)s::bigint, %(last_id)s::bigint) AS p
), intent AS (
    INSERT INTO staging.oltp_payment_intent (payment_intent_id, merchant_id, customer_id, amount, currency_code, status, created_at, _commit_lsn, _index_in_txn, _commit_time)
    SELECT id, merchant, 'tok_' || customer, amount, currency, 'succeeded', at, lsn, 0, at FROM payment
), charge AS (
    INSERT INTO staging.oltp_charge (charge_id, payment_intent_id, payment_method_id, amount, currency_code, status, captured, created_at, _commit_lsn, _index_in_txn, _commit_time)
    SELECT id, id, customer, amount, currency, 'succeeded', true, at, lsn, 1, at FROM payment
)
INSERT INTO staging.oltp_balance_transaction (balance_transaction_id, merchant_id, type, source_id, amount, fee, net, currency_code, created_at, available_on, _commit_lsn, _index_in_txn, _commit_time)
SELECT id, merchant, 'charge', id, amount, amount / 40, amount - amount / 40, currency, at, at + interval '2 days', lsn, 2, at
FROM payment;
INSERT INTO staging.cdc_offsets (source, commit_lsn, index_in_txn) VALUES ('oltp', %(last_id)s * 10 + 1000, 2)
ON CONFLICT (source) DO UPDATE SET commit_lsn = EXCLUDED.commit_lsn, index_in_txn = EXCLUDED.index_in_txn;
ANALYZE staging.oltp_payment_intent, staging.oltp_charge, staging.oltp_balance_transaction
