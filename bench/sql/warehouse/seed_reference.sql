-- Benchmark reference data: 3 currencies, 3 countries, a daily EUR rate, %(merchants)s merchants.
INSERT INTO staging.reference_currency (currency_code, numeric_code, name, minor_units, _commit_lsn, _index_in_txn, _commit_time)
VALUES ('USD', '840', 'US Dollar', 2, 1, 0, '2025-01-01'), ('EUR', '978', 'Euro', 2, 1, 1, '2025-01-01'),
       ('JPY', '392', 'Yen', 0, 1, 2, '2025-01-01');
INSERT INTO staging.reference_country (country_code, alpha3_code, numeric_code, name, _commit_lsn, _index_in_txn, _commit_time)
VALUES ('US', 'USA', '840', 'United States', 2, 0, '2025-01-01'), ('DE', 'DEU', '276', 'Germany', 2, 1, '2025-01-01'),
       ('FR', 'FRA', '250', 'France', 2, 2, '2025-01-01');
INSERT INTO staging.reference_fx_rate (base_currency_code, quote_currency_code, effective_date, rate, _commit_lsn, _index_in_txn, _commit_time)
SELECT 'EUR', 'USD', d::date, 1.05 + (extract(doy FROM d) %% 10) / 100.0, 3, extract(doy FROM d)::int + 400 * (extract(year FROM d)::int - 2025), d
FROM generate_series('2025-01-01'::date, '2026-12-31'::date, interval '1 day') AS d;
INSERT INTO staging.reference_merchant_history
    (merchant_id, legal_name, mcc, country_code, default_currency_code, payout_schedule, risk_tier_code,
     status, created_at, updated_at, _commit_lsn, _index_in_txn, _commit_time, _op)
SELECT m, 'Merchant ' || m, '5411', 'DE', 'EUR', 'daily', 'low', 'active', '2025-01-01', '2025-01-01',
       10, m, '2025-01-01', 'S'
FROM generate_series(1, %(merchants)s) AS m;
INSERT INTO staging.reference_merchant
SELECT merchant_id, legal_name, mcc, country_code, default_currency_code, payout_schedule, risk_tier_code,
       status, created_at, updated_at, _commit_lsn, _index_in_txn, _commit_time, _is_deleted, _loaded_at
FROM staging.reference_merchant_history;
INSERT INTO staging.cdc_offsets (source, commit_lsn, index_in_txn) VALUES ('reference', 10, %(merchants)s)
ON CONFLICT (source) DO UPDATE SET commit_lsn = EXCLUDED.commit_lsn, index_in_txn = EXCLUDED.index_in_txn
