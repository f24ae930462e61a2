-- The fraud scoring API's decision on a charge, asked for by the payment API when it creates the
-- charge (paydata.oltp.fraud_decision; off unless PAYDATA_OLTP_FRAUD_DECISIONS=on). One row per
-- charge: either the scorer's answer (score, band, model version) or 'unavailable' with why (a
-- timeout, an error status, an unreachable scorer). The payment never waits on it beyond the
-- client's timeout and never fails because of it. Not captured by CDC: the warehouse scores
-- charges itself (marts.fct_fraud_score).
CREATE TABLE charge_fraud_decision (
    charge_id      bigint      PRIMARY KEY REFERENCES charge (charge_id),
    outcome        text        NOT NULL CHECK (outcome IN ('scored', 'unavailable')),
    score          double precision CHECK (score >= 0 AND score <= 1),
    band           text        CHECK (band IN ('approve', 'review', 'decline')),
    model_version  text        CHECK (btrim(model_version) <> ''),
    unavailable_reason text    CHECK (unavailable_reason ~ '^[a-z0-9_]{1,40}$'),
    latency_ms     double precision NOT NULL CHECK (latency_ms >= 0),
    decided_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT charge_fraud_decision_scored_has_answer CHECK (
        (outcome = 'scored') = (score IS NOT NULL AND band IS NOT NULL AND model_version IS NOT NULL)),
    CONSTRAINT charge_fraud_decision_unavailable_has_reason CHECK (
        (outcome = 'unavailable') = (unavailable_reason IS NOT NULL))
);
REVOKE ALL ON charge_fraud_decision FROM PUBLIC;

-- The payment API writes and reads decisions; nobody updates or deletes them.
INSERT INTO paydata_role_grant (role_name, object_type, object_name, privileges) VALUES
    ('oltp_app', 'TABLE', 'charge_fraud_decision', 'SELECT, INSERT');

SELECT paydata_apply_grants();
