-- Scores of the fraud scoring API for the warehouse's charges, one row per charge and model
-- version (a charge scored again by the same version is updated, by another version added), and
-- the position of the charge fact up to which charges were sent (ml.scoring.warehouse).
CREATE SCHEMA IF NOT EXISTS marts;
CREATE TABLE IF NOT EXISTS marts.fct_fraud_score (
    charge_id         bigint           NOT NULL,
    model_name        text             NOT NULL,
    model_version     text             NOT NULL,
    score             double precision NOT NULL CHECK (score >= 0 AND score <= 1),
    band              text             NOT NULL CHECK (band IN ('approve', 'review', 'decline')),
    reasons           text[]           NOT NULL,
    feature_misses    text[]           NOT NULL,
    features_degraded boolean          NOT NULL,
    charge_created_at timestamptz      NOT NULL,
    scored_at         timestamptz      NOT NULL,
    PRIMARY KEY (charge_id, model_name, model_version)
);
CREATE INDEX IF NOT EXISTS fct_fraud_score_version_idx ON marts.fct_fraud_score (model_name, model_version, band);
CREATE TABLE IF NOT EXISTS marts.fraud_score_state (
    model_name  text        PRIMARY KEY,
    scored_lsn  bigint      NOT NULL,
    updated_at  timestamptz NOT NULL
);
