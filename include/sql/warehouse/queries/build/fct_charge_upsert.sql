-- Load the staged charges with the merchant version valid at the attempt's time (the same as-of
-- join as the ledger fact). A row whose content did not change is not rewritten, so replaying a
-- window changes nothing; a later status (pending -> succeeded) or a tombstone rewrites the row.
WITH charge_with_merchant_version AS (
    SELECT sc.*, dm.merchant_version_id
    FROM staged_charge AS sc
    LEFT JOIN marts.dim_merchant AS dm
      ON dm.merchant_id = sc.merchant_id
     AND sc.created_at >= dm.valid_from
     AND sc.created_at < dm.valid_to
)

INSERT INTO marts.fct_charge AS f
    (charge_id, payment_intent_id, merchant_id, merchant_version_id, customer_id, payment_method_id,
     card_country_code, ip_address_token, device_id, session_id, status, outcome, failure_code,
     is_captured, currency_code, amount, fx_rate_to_usd, fx_rate_date, amount_usd, created_date_id,
     created_at, updated_at, is_deleted, source_commit_lsn, source_index_in_txn, source_commit_at)
SELECT charge_id, payment_intent_id, merchant_id, merchant_version_id, customer_id, payment_method_id,
       card_country_code, ip_address_token, device_id, session_id, status, outcome, failure_code,
       is_captured, currency_code, amount, fx_rate_to_usd, fx_rate_date, amount_usd, created_date_id,
       created_at, updated_at, is_deleted, source_commit_lsn, source_index_in_txn, source_commit_at
FROM charge_with_merchant_version
ON CONFLICT (charge_id) DO UPDATE
SET payment_intent_id = EXCLUDED.payment_intent_id, merchant_id = EXCLUDED.merchant_id,
    merchant_version_id = EXCLUDED.merchant_version_id, customer_id = EXCLUDED.customer_id,
    payment_method_id = EXCLUDED.payment_method_id, card_country_code = EXCLUDED.card_country_code,
    ip_address_token = EXCLUDED.ip_address_token, device_id = EXCLUDED.device_id,
    session_id = EXCLUDED.session_id, status = EXCLUDED.status, outcome = EXCLUDED.outcome,
    failure_code = EXCLUDED.failure_code, is_captured = EXCLUDED.is_captured,
    currency_code = EXCLUDED.currency_code, amount = EXCLUDED.amount,
    fx_rate_to_usd = EXCLUDED.fx_rate_to_usd, fx_rate_date = EXCLUDED.fx_rate_date,
    amount_usd = EXCLUDED.amount_usd, created_date_id = EXCLUDED.created_date_id,
    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, is_deleted = EXCLUDED.is_deleted,
    source_commit_lsn = EXCLUDED.source_commit_lsn, source_index_in_txn = EXCLUDED.source_index_in_txn,
    source_commit_at = EXCLUDED.source_commit_at
WHERE (f.payment_intent_id, f.merchant_id, f.merchant_version_id, f.customer_id, f.payment_method_id,
       f.card_country_code, f.ip_address_token, f.device_id, f.session_id, f.status, f.outcome,
       f.failure_code, f.is_captured, f.currency_code, f.amount, f.fx_rate_to_usd, f.fx_rate_date,
       f.amount_usd, f.created_date_id, f.created_at, f.updated_at, f.is_deleted, f.source_commit_lsn,
       f.source_index_in_txn, f.source_commit_at)
    IS DISTINCT FROM
      (EXCLUDED.payment_intent_id, EXCLUDED.merchant_id, EXCLUDED.merchant_version_id, EXCLUDED.customer_id,
       EXCLUDED.payment_method_id, EXCLUDED.card_country_code, EXCLUDED.ip_address_token,
       EXCLUDED.device_id, EXCLUDED.session_id, EXCLUDED.status, EXCLUDED.outcome, EXCLUDED.failure_code,
       EXCLUDED.is_captured, EXCLUDED.currency_code, EXCLUDED.amount, EXCLUDED.fx_rate_to_usd,
       EXCLUDED.fx_rate_date, EXCLUDED.amount_usd, EXCLUDED.created_date_id, EXCLUDED.created_at,
       EXCLUDED.updated_at, EXCLUDED.is_deleted, EXCLUDED.source_commit_lsn,
       EXCLUDED.source_index_in_txn, EXCLUDED.source_commit_at)
