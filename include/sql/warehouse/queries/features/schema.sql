-- The features schema of the warehouse: event ledgers the features are computed from, the offline
-- feature tables (created from the definitions by ml.features.offline), training sets and the
-- registry gate's decisions. Idempotent (applied before every feature build).
CREATE SCHEMA IF NOT EXISTS features;

-- Position of the marts each feature store is complete up to (source 'oltp' / 'reference').
CREATE TABLE IF NOT EXISTS features.build_state (
    store        text        NOT NULL,
    source       text        NOT NULL,
    commit_lsn   bigint      NOT NULL,
    built_at     timestamptz NOT NULL,
    PRIMARY KEY (store, source)
);

-- Every charge attempt as first loaded: known_lsn is the OLTP commit position of the row the
-- feature build first saw. Rows are never updated (a later load's view of the past is not used).
CREATE TABLE IF NOT EXISTS features.charge_event (
    charge_id         bigint           PRIMARY KEY,
    created_at        timestamptz      NOT NULL,
    known_lsn         bigint           NOT NULL,
    customer_id       text,
    card_fingerprint  text,
    payment_method_id bigint,
    device_id         text,
    ip_address_token  text,
    session_id        text,
    merchant_id       bigint,
    card_country_code char(2),
    amount_usd        double precision,
    outcome           text
);
CREATE INDEX IF NOT EXISTS charge_event_customer_idx ON features.charge_event (customer_id, created_at);
CREATE INDEX IF NOT EXISTS charge_event_card_idx ON features.charge_event (card_fingerprint, created_at);
CREATE INDEX IF NOT EXISTS charge_event_device_idx ON features.charge_event (device_id, created_at);
CREATE INDEX IF NOT EXISTS charge_event_ip_idx ON features.charge_event (ip_address_token, created_at);
CREATE INDEX IF NOT EXISTS charge_event_customer_device_idx
    ON features.charge_event (customer_id, device_id, created_at);
CREATE INDEX IF NOT EXISTS charge_event_known_idx ON features.charge_event (known_lsn);

-- Disputes by opening time, with the entities of their charge, as first loaded.
CREATE TABLE IF NOT EXISTS features.dispute_event (
    dispute_id       bigint           PRIMARY KEY,
    charge_id        bigint           NOT NULL,
    opened_at        timestamptz      NOT NULL,
    known_lsn        bigint           NOT NULL,
    reason           text,
    is_fraud_reason  boolean          NOT NULL,
    customer_id      text,
    card_fingerprint text,
    merchant_id      bigint,
    amount_usd       double precision
);
CREATE INDEX IF NOT EXISTS dispute_event_customer_idx ON features.dispute_event (customer_id, opened_at);
CREATE INDEX IF NOT EXISTS dispute_event_card_idx ON features.dispute_event (card_fingerprint, opened_at);
CREATE INDEX IF NOT EXISTS dispute_event_known_idx ON features.dispute_event (known_lsn);

-- A training set: labelled charges of a window, versioned by the positions its features and labels
-- were built from. Feature rows are immutable, so (set, offline table) reproduces the data.
CREATE TABLE IF NOT EXISTS features.training_set (
    training_set_id   bigserial   PRIMARY KEY,
    definitions_name  text        NOT NULL,
    definitions_hash  text        NOT NULL,
    offline_table     text        NOT NULL,
    oltp_lsn          bigint      NOT NULL,
    reference_lsn     bigint      NOT NULL,
    label_as_of       timestamptz NOT NULL,
    label_maturity    interval    NOT NULL,
    window_start      timestamptz,
    window_end        timestamptz,
    row_count         bigint      NOT NULL,
    fraud_count       bigint      NOT NULL,
    first_created_at  timestamptz,
    last_created_at   timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS training_set_version_uq ON features.training_set
    (definitions_hash, oltp_lsn, reference_lsn, label_as_of, label_maturity,
     coalesce(window_start, '-infinity'), coalesce(window_end, 'infinity'));

CREATE TABLE IF NOT EXISTS features.training_example (
    training_set_id bigint      NOT NULL REFERENCES features.training_set ON DELETE CASCADE,
    charge_id       bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    is_fraud        boolean     NOT NULL,
    PRIMARY KEY (training_set_id, charge_id)
);

-- Every challenger/champion decision of the registry gate with both scores.
CREATE TABLE IF NOT EXISTS features.model_decision (
    decision_id          bigserial   PRIMARY KEY,
    model_name           text        NOT NULL,
    challenger_version   text        NOT NULL,
    champion_version     text,
    training_set_id      bigint,
    run_id               text,
    challenger_pr_auc    double precision,
    champion_pr_auc      double precision,
    baseline_pr_auc      double precision,
    challenger_brier     double precision,
    champion_brier       double precision,
    promoted             boolean     NOT NULL,
    reason               text        NOT NULL,
    decided_at           timestamptz NOT NULL DEFAULT now()
);
