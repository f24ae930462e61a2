-- Charges that no longer get a label at this as_of (deleted, declined after all, created later).
DELETE FROM marts.fct_charge_label AS l
WHERE NOT EXISTS (SELECT 1 FROM charge_label AS c WHERE c.charge_id = l.charge_id)
