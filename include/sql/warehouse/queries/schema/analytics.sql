-- Analyst views: business columns only (no positions, no technical flags beyond is_inferred).
CREATE OR REPLACE VIEW analytics.balance_transactions AS
SELECT f.balance_transaction_id, f.transaction_type, f.created_at, d.date_day AS created_date,
       f.available_on, f.merchant_id, m.legal_name AS merchant_name, m.mcc, m.risk_tier_code,
       m.country_code AS merchant_country_code, f.customer_id, pm.brand AS card_brand,
       pm.funding AS card_funding, f.card_country_code, f.currency_code, f.amount, f.fee, f.net,
       f.amount_usd, f.fee_usd, f.net_usd
FROM marts.fct_balance_transaction AS f
JOIN marts.dim_merchant AS m USING (merchant_version_id)
JOIN marts.dim_date AS d ON d.date_id = f.created_date_id
LEFT JOIN marts.dim_payment_method AS pm USING (payment_method_id);

CREATE OR REPLACE VIEW analytics.merchants AS
SELECT merchant_id, version_number, legal_name, mcc, country_code, default_currency_code,
       payout_schedule, risk_tier_code, status, valid_from, valid_to, is_current, is_inferred
FROM marts.dim_merchant
WHERE NOT is_deleted;

CREATE OR REPLACE VIEW analytics.daily_merchant_volume AS
SELECT d.date_day, v.merchant_id, v.currency_code, v.transaction_count, v.charge_count,
       v.amount, v.fee, v.net, v.amount_usd, v.net_usd
FROM marts.agg_daily_merchant_volume AS v
JOIN marts.dim_date AS d ON d.date_id = v.created_date_id;

CREATE OR REPLACE VIEW analytics.authorisation_rates AS
SELECT brand, card_country_code, attempt_count, authorised_count, decline_count, authorisation_rate,
       decline_rate
FROM marts.agg_authorisation_rate;

CREATE OR REPLACE VIEW analytics.refund_dispute_rates AS
SELECT mcc, merchant_country_code, charge_count, refund_count, dispute_count, charge_amount_usd,
       refund_amount_usd, refund_rate, dispute_rate
FROM marts.agg_refund_dispute_rate;

-- Every charge attempt with its outcome and the merchant as it was at the attempt (no tokens of
-- IP, device or session: those are for the fraud features, not for reporting).
CREATE OR REPLACE VIEW analytics.charges AS
SELECT c.charge_id, c.created_at, d.date_day AS created_date, c.merchant_id, m.legal_name AS merchant_name,
       m.mcc, m.risk_tier_code, m.country_code AS merchant_country_code, c.customer_id,
       pm.brand AS card_brand, pm.funding AS card_funding, c.card_country_code, c.status, c.outcome,
       c.failure_code, c.currency_code, c.amount, c.amount_usd
FROM marts.fct_charge AS c
JOIN marts.dim_merchant AS m USING (merchant_version_id)
JOIN marts.dim_date AS d ON d.date_id = c.created_date_id
LEFT JOIN marts.dim_payment_method AS pm USING (payment_method_id)
WHERE NOT c.is_deleted;

-- The published fraud labels with the as_of and maturity they were derived with.
CREATE OR REPLACE VIEW analytics.charge_labels AS
SELECT l.charge_id, l.charge_created_at, l.label_matured_at, l.is_fraud, l.dispute_reason,
       l.dispute_opened_at, s.as_of AS labelled_as_of, s.maturity
FROM marts.fct_charge_label AS l
CROSS JOIN marts.label_state AS s
WHERE s.label_table = 'fct_charge_label';
