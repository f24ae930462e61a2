-- Offline spine: the charges first seen in (from_lsn, to_lsn], each at its own created_at and
-- position (a rebuild passes from_lsn -1: every charge).
INSERT INTO feature_spine
SELECT charge_id, created_at, known_lsn, customer_id, card_fingerprint, device_id, ip_address_token,
       merchant_id, session_id, card_country_code, amount_usd
FROM features.charge_event
WHERE known_lsn > %(from_lsn)s AND known_lsn <= %(to_lsn)s;
ANALYZE feature_spine;
