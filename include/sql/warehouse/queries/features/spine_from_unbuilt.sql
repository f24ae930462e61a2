-- Offline spine of a full build's remainder: the ledger charges at or below to_lsn that have no
-- feature row yet (those the window formulation left to the LATERAL builder).
INSERT INTO feature_spine
SELECT c.charge_id, c.created_at, c.known_lsn, c.customer_id, c.card_fingerprint, c.device_id, c.ip_address_token,
       c.merchant_id, c.session_id, c.card_country_code, c.amount_usd
FROM features.charge_event AS c
WHERE c.known_lsn <= %(to_lsn)s
  AND NOT EXISTS (SELECT 1 FROM {table} AS f WHERE f.charge_id = c.charge_id);
ANALYZE feature_spine;
