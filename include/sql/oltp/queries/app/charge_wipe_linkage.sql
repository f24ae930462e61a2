-- Erasure: the fraud signals (ip, device, session) and the processor's free text of the
-- customer's charges. Amounts, statuses and the ledger stay (they are the merchant's records).
UPDATE charge
SET ip_address = NULL,
    device_id = NULL,
    session_id = NULL,
    failure_message = NULL
WHERE charge_id = ANY(%(charge_ids)s);
