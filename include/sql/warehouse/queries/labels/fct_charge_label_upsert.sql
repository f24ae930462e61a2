-- Publish the derived labels; a label that did not change is not rewritten, so only charges that
-- matured or got a fraud dispute since the last run are written.
INSERT INTO marts.fct_charge_label AS l
    (charge_id, charge_created_at, label_matured_at, is_fraud, dispute_id, dispute_reason, dispute_opened_at)
SELECT charge_id, charge_created_at, label_matured_at, is_fraud, dispute_id, dispute_reason, dispute_opened_at
FROM charge_label
ON CONFLICT (charge_id) DO UPDATE
SET charge_created_at = EXCLUDED.charge_created_at, label_matured_at = EXCLUDED.label_matured_at,
    is_fraud = EXCLUDED.is_fraud, dispute_id = EXCLUDED.dispute_id,
    dispute_reason = EXCLUDED.dispute_reason, dispute_opened_at = EXCLUDED.dispute_opened_at
WHERE (l.charge_created_at, l.label_matured_at, l.is_fraud, l.dispute_id, l.dispute_reason, l.dispute_opened_at)
    IS DISTINCT FROM
      (EXCLUDED.charge_created_at, EXCLUDED.label_matured_at, EXCLUDED.is_fraud, EXCLUDED.dispute_id,
       EXCLUDED.dispute_reason, EXCLUDED.dispute_opened_at)
