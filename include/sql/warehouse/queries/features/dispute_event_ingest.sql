-- Disputes staged in (from_lsn, to_lsn] (at or below the marts' watermark), as first seen, with the
-- customer, card and merchant of their charge.
INSERT INTO features.dispute_event (dispute_id, charge_id, opened_at, known_lsn, reason, is_fraud_reason,
                                    customer_id, card_fingerprint, merchant_id, amount_usd)
SELECT d.dispute_id, d.charge_id, d.opened_at, d._commit_lsn, d.reason, d.reason = ANY (%(fraud_reasons)s),
       c.customer_id, coalesce(pm.fingerprint, 'pm:' || c.payment_method_id), c.merchant_id,
       c.amount_usd::double precision
FROM staging.oltp_dispute AS d
LEFT JOIN marts.fct_charge AS c USING (charge_id)
LEFT JOIN staging.oltp_payment_method AS pm ON pm.payment_method_id = c.payment_method_id
WHERE d._commit_lsn > %(from_lsn)s
  AND d._commit_lsn <= %(to_lsn)s
  AND NOT d._is_deleted
  AND d.opened_at IS NOT NULL
ORDER BY d.dispute_id
ON CONFLICT (dispute_id) DO NOTHING;
