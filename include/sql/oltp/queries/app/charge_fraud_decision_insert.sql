-- One decision per charge; a repeated request for the same charge keeps the first answer.
INSERT INTO charge_fraud_decision (charge_id, outcome, score, band, model_version, unavailable_reason, latency_ms)
VALUES (%(charge_id)s, %(outcome)s, %(score)s, %(band)s, %(model_version)s, %(unavailable_reason)s, %(latency_ms)s)
ON CONFLICT (charge_id) DO NOTHING;
