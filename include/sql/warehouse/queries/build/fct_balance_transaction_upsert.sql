-- Load the staged facts with the merchant version valid at the ledger row's time. A row whose
-- content did not change is not rewritten, so replaying a window changes nothing.
WITH fact_with_merchant_version AS (
    SELECT sf.*, dm.merchant_version_id
    FROM staged_fact AS sf
    LEFT JOIN marts.dim_merchant AS dm
      ON dm.merchant_id = sf.merchant_id
     AND sf.created_at >= dm.valid_from
     AND sf.created_at < dm.valid_to
)

INSERT INTO marts.fct_balance_transaction AS f
    (balance_transaction_id, transaction_type, source_id, merchant_id, merchant_version_id, customer_id,
     payment_method_id, payment_intent_id, charge_id, currency_code, card_country_code, created_date_id,
     created_at, available_on, amount, fee, net, fx_rate_to_usd, fx_rate_date, amount_usd, fee_usd,
     net_usd, source_commit_lsn, source_index_in_txn, source_commit_at)
SELECT balance_transaction_id, transaction_type, source_id, merchant_id, merchant_version_id, customer_id,
       payment_method_id, payment_intent_id, charge_id, currency_code, card_country_code, created_date_id,
       created_at, available_on, amount, fee, net, fx_rate_to_usd, fx_rate_date, amount_usd, fee_usd,
       net_usd, source_commit_lsn, source_index_in_txn, source_commit_at
FROM fact_with_merchant_version
ON CONFLICT (balance_transaction_id) DO UPDATE
SET transaction_type = EXCLUDED.transaction_type, source_id = EXCLUDED.source_id,
    merchant_id = EXCLUDED.merchant_id, merchant_version_id = EXCLUDED.merchant_version_id,
    customer_id = EXCLUDED.customer_id, payment_method_id = EXCLUDED.payment_method_id,
    payment_intent_id = EXCLUDED.payment_intent_id, charge_id = EXCLUDED.charge_id,
    currency_code = EXCLUDED.currency_code, card_country_code = EXCLUDED.card_country_code,
    created_date_id = EXCLUDED.created_date_id, created_at = EXCLUDED.created_at,
    available_on = EXCLUDED.available_on, amount = EXCLUDED.amount, fee = EXCLUDED.fee,
    net = EXCLUDED.net, fx_rate_to_usd = EXCLUDED.fx_rate_to_usd, fx_rate_date = EXCLUDED.fx_rate_date,
    amount_usd = EXCLUDED.amount_usd, fee_usd = EXCLUDED.fee_usd, net_usd = EXCLUDED.net_usd,
    source_commit_lsn = EXCLUDED.source_commit_lsn, source_index_in_txn = EXCLUDED.source_index_in_txn,
    source_commit_at = EXCLUDED.source_commit_at
WHERE (f.transaction_type, f.source_id, f.merchant_id, f.merchant_version_id, f.customer_id,
       f.payment_method_id, f.payment_intent_id, f.charge_id, f.currency_code, f.card_country_code,
       f.created_date_id, f.created_at, f.available_on, f.amount, f.fee, f.net, f.fx_rate_to_usd,
       f.fx_rate_date, f.amount_usd, f.fee_usd, f.net_usd, f.source_commit_lsn, f.source_index_in_txn,
       f.source_commit_at)
    IS DISTINCT FROM
      (EXCLUDED.transaction_type, EXCLUDED.source_id, EXCLUDED.merchant_id, EXCLUDED.merchant_version_id,
       EXCLUDED.customer_id, EXCLUDED.payment_method_id, EXCLUDED.payment_intent_id, EXCLUDED.charge_id,
       EXCLUDED.currency_code, EXCLUDED.card_country_code, EXCLUDED.created_date_id, EXCLUDED.created_at,
       EXCLUDED.available_on, EXCLUDED.amount, EXCLUDED.fee, EXCLUDED.net, EXCLUDED.fx_rate_to_usd,
       EXCLUDED.fx_rate_date, EXCLUDED.amount_usd, EXCLUDED.fee_usd, EXCLUDED.net_usd,
       EXCLUDED.source_commit_lsn, EXCLUDED.source_index_in_txn, EXCLUDED.source_commit_at)
