-- Charges the marts loaded in (from_lsn, to_lsn], with what the scoring API takes: tokens, amounts
-- and time (the card is its fingerprint token, else the payment method, as in features.charge_event).
SELECT c.charge_id, c.customer_id, coalesce(pm.fingerprint, 'pm:' || c.payment_method_id) AS card_fingerprint,
       c.device_id, c.ip_address_token, c.session_id, c.merchant_id, c.amount, c.currency_code, c.amount_usd,
       c.card_country_code, c.created_at
FROM marts.fct_charge AS c
LEFT JOIN staging.oltp_payment_method AS pm USING (payment_method_id)
WHERE c.source_commit_lsn > %(from_lsn)s
  AND c.source_commit_lsn <= %(to_lsn)s
  AND NOT c.is_deleted
  AND c.created_at IS NOT NULL
  AND c.merchant_id IS NOT NULL
  AND c.amount IS NOT NULL
ORDER BY c.charge_id;
