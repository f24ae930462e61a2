-- Staging layout used by the warehouse tests and benchmark when the CDC sink's own DDL is not
-- available: the tables the marts read, with the captured columns and the sink's bookkeeping columns.
-- Mirrors the CDC design (customer_id tokenised to text, IPs tokenised, *_enc/*_bidx dropped).
CREATE SCHEMA IF NOT EXISTS staging;

CREATE TABLE IF NOT EXISTS staging.cdc_offsets (
    source       text PRIMARY KEY,
    commit_lsn   bigint NOT NULL,
    index_in_txn int    NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS staging.reference_currency (
    currency_code char(3) PRIMARY KEY,
    numeric_code  char(3),
    name          text,
    minor_units   smallint,
    _commit_lsn bigint NOT NULL, _index_in_txn int NOT NULL, _commit_time timestamptz,
    _is_deleted boolean NOT NULL DEFAULT false, _loaded_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS staging.reference_country (
    country_code          char(2) PRIMARY KEY,
    alpha3_code           char(3),
    numeric_code          char(3),
    name                  text,
    default_currency_code char(3),
    region                text,
    _commit_lsn bigint NOT NULL, _index_in_txn int NOT NULL, _commit_time timestamptz,
    _is_deleted boolean NOT NULL DEFAULT false, _loaded_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS staging.reference_fx_rate (
    base_currency_code  char(3),
    quote_currency_code char(3),
    effective_date      date,
    rate                numeric(20, 10),
    source              text,
    created_at          timestamptz,
    _commit_lsn bigint NOT NULL, _index_in_txn int NOT NULL, _commit_time timestamptz,
    _is_deleted boolean NOT NULL DEFAULT false, _loaded_at timestamptz DEFAULT now(),
    PRIMARY KEY (base_currency_code, quote_currency_code, effective_date)
);

CREATE TABLE IF NOT EXISTS staging.reference_merchant (
    merchant_id           bigint PRIMARY KEY,
    legal_name            text,
    mcc                   char(4),
    country_code          char(2),
    default_currency_code char(3),
    payout_schedule       text,
    risk_tier_code        text,
    status                text,
    created_at            timestamptz,
    updated_at            timestamptz,
    _commit_lsn bigint NOT NULL, _index_in_txn int NOT NULL, _commit_time timestamptz,
    _is_deleted boolean NOT NULL DEFAULT false, _loaded_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS staging.reference_merchant_history (
    LIKE staging.reference_merchant INCLUDING DEFAULTS,
    _op char(1) NOT NULL,
    PRIMARY KEY (merchant_id, _commit_lsn, _index_in_txn)
);

CREATE TABLE IF NOT EXISTS staging.oltp_customer (
    customer_id  text PRIMARY KEY,
    merchant_id  bigint,
    country_code char(2),
    created_at   timestamptz,
    updated_at   timestamptz,
    erased_at    timestamptz,
    _commit_lsn bigint NOT NULL, _index_in_txn int NOT NULL, _commit_time timestamptz,
    _is_deleted boolean NOT NULL DEFAULT false, _loaded_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS staging.oltp_payment_method (
    payment_method_id bigint PRIMARY KEY,
    customer_id       text,
    type              text,
    brand             text,
    funding           text,
    last4             char(4),
    exp_month         smallint,
    exp_year          smallint,
    bin_country_code  char(2),
    fingerprint       text,
    created_at        timestamptz,
    detached_at       timestamptz,
    _commit_lsn bigint NOT NULL, _index_in_txn int NOT NULL, _commit_time timestamptz,
    _is_deleted boolean NOT NULL DEFAULT false, _loaded_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS staging.oltp_payment_intent (
    payment_intent_id bigint PRIMARY KEY,
    merchant_id       bigint,
    customer_id       text,
    amount            bigint,
    currency_code     char(3),
    status            text,
    created_at        timestamptz,
    updated_at        timestamptz,
    _commit_lsn bigint NOT NULL, _index_in_txn int NOT NULL, _commit_time timestamptz,
    _is_deleted boolean NOT NULL DEFAULT false, _loaded_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS staging.oltp_charge (
    charge_id         bigint PRIMARY KEY,
    payment_intent_id bigint,
    payment_method_id bigint,
    amount            bigint,
    currency_code     char(3),
    status            text,
    failure_code      text,
    failure_message   text,
    captured          boolean,
    ip_address        text,
    device_id         text,
    session_id        text,
    created_at        timestamptz,
    updated_at        timestamptz,
    _commit_lsn bigint NOT NULL, _index_in_txn int NOT NULL, _commit_time timestamptz,
    _is_deleted boolean NOT NULL DEFAULT false, _loaded_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS staging.oltp_refund (
    refund_id  bigint PRIMARY KEY,
    charge_id  bigint,
    amount     bigint,
    status     text,
    reason     text,
    created_at timestamptz,
    updated_at timestamptz,
    _commit_lsn bigint NOT NULL, _index_in_txn int NOT NULL, _commit_time timestamptz,
    _is_deleted boolean NOT NULL DEFAULT false, _loaded_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS staging.oltp_dispute (
    dispute_id bigint PRIMARY KEY,
    charge_id  bigint,
    amount     bigint,
    reason     text,
    status     text,
    opened_at  timestamptz,
    closed_at  timestamptz,
    updated_at timestamptz,
    _commit_lsn bigint NOT NULL, _index_in_txn int NOT NULL, _commit_time timestamptz,
    _is_deleted boolean NOT NULL DEFAULT false, _loaded_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS staging.oltp_balance_transaction (
    balance_transaction_id bigint PRIMARY KEY,
    merchant_id            bigint,
    type                   text,
    source_id              bigint,
    amount                 bigint,
    fee                    bigint,
    net                    bigint,
    currency_code          char(3),
    created_at             timestamptz,
    available_on           timestamptz,
    _commit_lsn bigint NOT NULL, _index_in_txn int NOT NULL, _commit_time timestamptz,
    _is_deleted boolean NOT NULL DEFAULT false, _loaded_at timestamptz DEFAULT now()
);

-- The incremental build selects windows by position; the sink should index it the same way.
CREATE INDEX IF NOT EXISTS reference_currency_pos_idx ON staging.reference_currency (_commit_lsn, _index_in_txn);
CREATE INDEX IF NOT EXISTS reference_country_pos_idx ON staging.reference_country (_commit_lsn, _index_in_txn);
CREATE INDEX IF NOT EXISTS reference_fx_rate_pos_idx ON staging.reference_fx_rate (_commit_lsn, _index_in_txn);
CREATE INDEX IF NOT EXISTS reference_merchant_history_pos_idx
    ON staging.reference_merchant_history (_commit_lsn, _index_in_txn);
CREATE INDEX IF NOT EXISTS oltp_customer_pos_idx ON staging.oltp_customer (_commit_lsn, _index_in_txn);
CREATE INDEX IF NOT EXISTS oltp_payment_method_pos_idx ON staging.oltp_payment_method (_commit_lsn, _index_in_txn);
CREATE INDEX IF NOT EXISTS oltp_payment_intent_pos_idx ON staging.oltp_payment_intent (_commit_lsn, _index_in_txn);
CREATE INDEX IF NOT EXISTS oltp_charge_pos_idx ON staging.oltp_charge (_commit_lsn, _index_in_txn);
CREATE INDEX IF NOT EXISTS oltp_charge_intent_idx ON staging.oltp_charge (payment_intent_id);
CREATE INDEX IF NOT EXISTS oltp_refund_pos_idx ON staging.oltp_refund (_commit_lsn, _index_in_txn);
CREATE INDEX IF NOT EXISTS oltp_refund_charge_idx ON staging.oltp_refund (charge_id);
CREATE INDEX IF NOT EXISTS oltp_dispute_pos_idx ON staging.oltp_dispute (_commit_lsn, _index_in_txn);
CREATE INDEX IF NOT EXISTS oltp_dispute_charge_idx ON staging.oltp_dispute (charge_id);
CREATE INDEX IF NOT EXISTS oltp_balance_transaction_pos_idx
    ON staging.oltp_balance_transaction (_commit_lsn, _index_in_txn);
CREATE INDEX IF NOT EXISTS oltp_balance_transaction_source_idx
    ON staging.oltp_balance_transaction (type, source_id);
