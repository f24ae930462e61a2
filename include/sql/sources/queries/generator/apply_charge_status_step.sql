-- One transition per charge and statement, so the state-machine trigger checks every step.
UPDATE charge AS c
SET status = s.status
FROM generator_charge_status_step AS s
WHERE s.step = %(step)s AND s.charge_id = c.charge_id
