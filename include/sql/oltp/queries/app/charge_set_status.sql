-- The status trigger checks the transition against charge_status_transition.
UPDATE charge
SET status = %(status)s,
    failure_code = %(failure_code)s,
    failure_message = %(failure_message)s,
    captured = coalesce(%(captured)s, captured)
WHERE charge_id = %(charge_id)s;
