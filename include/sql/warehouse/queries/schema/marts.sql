-- Marts of the warehouse: star schema around the ledger. Idempotent (applied before every build).
-- No foreign-key constraints: facts may point at inferred members that a later build replaces,
-- and the quality checks verify every key resolves after each load.
CREATE SCHEMA IF NOT EXISTS marts;
CREATE SCHEMA IF NOT EXISTS analytics;

-- One row per CDC source: the staging position the marts are complete up to.
CREATE TABLE IF NOT EXISTS marts.build_state (
    source        text        PRIMARY KEY,
    commit_lsn    bigint      NOT NULL,
    index_in_txn  int         NOT NULL,
    built_at      timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS marts.freshness (
    table_name       text        PRIMARY KEY,
    source_lsn       bigint      NOT NULL,
    source_commit_at timestamptz,
    loaded_at        timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS marts.dim_currency (
    currency_code char(3) PRIMARY KEY,
    numeric_code  char(3),
    currency_name text,
    minor_units   smallint,
    is_deleted    boolean NOT NULL
);

CREATE TABLE IF NOT EXISTS marts.dim_country (
    country_code          char(2) PRIMARY KEY,
    alpha3_code           char(3),
    numeric_code          char(3),
    country_name          text,
    default_currency_code char(3),
    region                text,
    is_deleted            boolean NOT NULL
);

CREATE TABLE IF NOT EXISTS marts.dim_date (
    date_id       int     PRIMARY KEY,
    date_day      date    NOT NULL UNIQUE,
    year_number   int     NOT NULL,
    quarter_number int    NOT NULL,
    month_number  int     NOT NULL,
    day_of_month  int     NOT NULL,
    iso_week      int     NOT NULL,
    iso_day_of_week int   NOT NULL,
    month_start   date    NOT NULL,
    is_weekend    boolean NOT NULL
);

-- SCD2: one row per version of the tracked attributes (risk tier, MCC, payout schedule, deletion).
-- merchant_version_id is derived from (merchant_id, version_number) so an inferred member and the
-- real first version share it, and a rebuild reproduces the same keys.
CREATE TABLE IF NOT EXISTS marts.dim_merchant (
    merchant_version_id   bigint      PRIMARY KEY,
    merchant_id           bigint      NOT NULL,
    version_number        int         NOT NULL,
    legal_name            text,
    mcc                   char(4),
    country_code          char(2),
    default_currency_code char(3),
    payout_schedule       text,
    risk_tier_code        text,
    status                text,
    valid_from            timestamptz NOT NULL,
    valid_to              timestamptz NOT NULL,
    is_current            boolean     NOT NULL,
    is_deleted            boolean     NOT NULL,
    is_inferred           boolean     NOT NULL,
    source_commit_lsn     bigint,
    source_index_in_txn   int,
    source_commit_at      timestamptz,
    CONSTRAINT dim_merchant_version_uq UNIQUE (merchant_id, version_number),
    CONSTRAINT dim_merchant_valid_range CHECK (valid_from <= valid_to)
);
CREATE INDEX IF NOT EXISTS dim_merchant_validity_idx ON marts.dim_merchant (merchant_id, valid_from);

CREATE TABLE IF NOT EXISTS marts.dim_customer (
    customer_id  text        PRIMARY KEY,
    merchant_id  bigint,
    country_code char(2),
    created_at   timestamptz,
    erased_at    timestamptz,
    is_erased    boolean     NOT NULL,
    is_deleted   boolean     NOT NULL,
    is_inferred  boolean     NOT NULL
);

CREATE TABLE IF NOT EXISTS marts.dim_payment_method (
    payment_method_id   bigint      PRIMARY KEY,
    customer_id         text,
    payment_method_type text,
    brand               text,
    funding             text,
    bin_country_code    char(2),
    exp_month           smallint,
    exp_year            smallint,
    created_at          timestamptz,
    detached_at         timestamptz,
    is_deleted          boolean     NOT NULL,
    is_inferred         boolean     NOT NULL
);

-- Grain: one ledger row (balance_transaction). Amounts are signed from the merchant's view,
-- in minor units of currency_code; *_usd are in US dollars at the FX rate of the transaction date.
CREATE TABLE IF NOT EXISTS marts.fct_balance_transaction (
    balance_transaction_id bigint        PRIMARY KEY,
    transaction_type       text          NOT NULL,
    source_id              bigint,
    merchant_id            bigint        NOT NULL,
    merchant_version_id    bigint        NOT NULL,
    customer_id            text,
    payment_method_id      bigint,
    payment_intent_id      bigint,
    charge_id              bigint,
    currency_code          char(3)       NOT NULL,
    card_country_code      char(2),
    created_date_id        int           NOT NULL,
    created_at             timestamptz   NOT NULL,
    available_on           timestamptz   NOT NULL,
    amount                 bigint        NOT NULL,
    fee                    bigint        NOT NULL,
    net                    bigint        NOT NULL,
    fx_rate_to_usd         numeric(30, 16),
    fx_rate_date           date,
    amount_usd             numeric(20, 2),
    fee_usd                numeric(20, 2),
    net_usd                numeric(20, 2),
    source_commit_lsn      bigint        NOT NULL,
    source_index_in_txn    int           NOT NULL,
    source_commit_at       timestamptz
);
CREATE INDEX IF NOT EXISTS fct_balance_transaction_merchant_idx
    ON marts.fct_balance_transaction (merchant_id, created_at);
CREATE INDEX IF NOT EXISTS fct_balance_transaction_charge_idx
    ON marts.fct_balance_transaction (charge_id) WHERE charge_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS fct_balance_transaction_intent_idx
    ON marts.fct_balance_transaction (payment_intent_id) WHERE payment_intent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS fct_balance_transaction_source_idx
    ON marts.fct_balance_transaction (transaction_type, source_id);
CREATE INDEX IF NOT EXISTS fct_balance_transaction_currency_idx
    ON marts.fct_balance_transaction (currency_code, created_at);
CREATE INDEX IF NOT EXISTS fct_balance_transaction_date_idx
    ON marts.fct_balance_transaction (created_date_id);
CREATE INDEX IF NOT EXISTS fct_balance_transaction_payment_method_idx
    ON marts.fct_balance_transaction (payment_method_id) WHERE payment_method_id IS NOT NULL;

-- Grain: one charge attempt (staging.oltp_charge), whatever its outcome: declines never reach the
-- ledger, so this is the table authorisation rates, fraud labels and scores hang off. The row
-- follows the charge (pending -> succeeded/failed -> refunded/disputed); a charge deleted at the
-- source (or moved to another key) stays with is_deleted = true, because labels and scores may
-- already point at it. amount is in minor units of currency_code; amount_usd in US dollars at the
-- FX rate of the attempt's UTC date (the ledger fact's rule). Only the key and bookkeeping are NOT
-- NULL: a staged charge missing a value is still loaded and the quality checks name it.
CREATE TABLE IF NOT EXISTS marts.fct_charge (
    charge_id           bigint          PRIMARY KEY,
    payment_intent_id   bigint,
    merchant_id         bigint,
    merchant_version_id bigint,
    customer_id         text,
    payment_method_id   bigint,
    card_country_code   char(2),
    ip_address_token    text,
    device_id           text,
    session_id          text,
    status              text,
    outcome             text,
    failure_code        text,
    is_captured         boolean,
    currency_code       char(3),
    amount              bigint,
    fx_rate_to_usd      numeric(30, 16),
    fx_rate_date        date,
    amount_usd          numeric(20, 2),
    created_date_id     int,
    created_at          timestamptz,
    updated_at          timestamptz,
    is_deleted          boolean         NOT NULL,
    source_commit_lsn   bigint          NOT NULL,
    source_index_in_txn int             NOT NULL,
    source_commit_at    timestamptz
);
CREATE INDEX IF NOT EXISTS fct_charge_merchant_idx ON marts.fct_charge (merchant_id, created_at);
CREATE INDEX IF NOT EXISTS fct_charge_intent_idx ON marts.fct_charge (payment_intent_id);
CREATE INDEX IF NOT EXISTS fct_charge_payment_method_idx ON marts.fct_charge (payment_method_id);
CREATE INDEX IF NOT EXISTS fct_charge_currency_idx ON marts.fct_charge (currency_code, created_at);
CREATE INDEX IF NOT EXISTS fct_charge_created_idx ON marts.fct_charge (created_at);

-- Fraud labels of authorised charges as known at one time (marts.label_state says which as_of,
-- maturity and fraud reasons); derived by include/sql/warehouse/queries/labels/charge_label_derive.sql.
-- is_fraud is NULL while the label has not matured (label_matured_at after as_of).
CREATE TABLE IF NOT EXISTS marts.fct_charge_label (
    charge_id         bigint      PRIMARY KEY,
    charge_created_at timestamptz NOT NULL,
    label_matured_at  timestamptz NOT NULL,
    is_fraud          boolean,
    dispute_id        bigint,
    dispute_reason    text,
    dispute_opened_at timestamptz
);
CREATE INDEX IF NOT EXISTS fct_charge_label_matured_idx ON marts.fct_charge_label (label_matured_at);

CREATE TABLE IF NOT EXISTS marts.label_state (
    label_table   text        PRIMARY KEY,
    as_of         timestamptz NOT NULL,
    maturity      interval    NOT NULL,
    fraud_reasons text[]      NOT NULL,
    labelled_at   timestamptz NOT NULL
);
