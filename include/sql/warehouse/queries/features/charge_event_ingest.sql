-- Charges the marts loaded in (from_lsn, to_lsn], as first seen: a charge already in the ledger
-- keeps its first values and position (later versions of the row are not a view of its time).
-- The card entity is the fingerprint token (the same card across customers), else the method id.
INSERT INTO features.charge_event (charge_id, created_at, known_lsn, customer_id, card_fingerprint,
                                   payment_method_id, device_id, ip_address_token, session_id, merchant_id,
                                   card_country_code, amount_usd, outcome)
SELECT c.charge_id, c.created_at, c.source_commit_lsn, c.customer_id,
       coalesce(pm.fingerprint, 'pm:' || c.payment_method_id), c.payment_method_id, c.device_id,
       c.ip_address_token, c.session_id, c.merchant_id, c.card_country_code, c.amount_usd::double precision,
       c.outcome
FROM marts.fct_charge AS c
LEFT JOIN staging.oltp_payment_method AS pm USING (payment_method_id)
WHERE c.source_commit_lsn > %(from_lsn)s
  AND c.source_commit_lsn <= %(to_lsn)s
  AND NOT c.is_deleted
  AND c.created_at IS NOT NULL
ORDER BY c.charge_id
ON CONFLICT (charge_id) DO NOTHING;
