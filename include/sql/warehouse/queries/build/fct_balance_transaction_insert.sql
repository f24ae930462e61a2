-- Full rebuild only: the fact table was just truncated, so the staged facts (with the merchant
-- version valid at the ledger row's time) go in with a plain insert; same rows as the upsert.
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
