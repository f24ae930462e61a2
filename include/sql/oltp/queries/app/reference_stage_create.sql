-- Staging tables for one sync run; dropped with the transaction.
CREATE TEMP TABLE currency_ref_stage (
    currency_code char(3)  NOT NULL,
    minor_units   smallint NOT NULL
) ON COMMIT DROP;
CREATE TEMP TABLE merchant_ref_stage (
    merchant_id           bigint  NOT NULL,
    country_code          char(2) NOT NULL,
    default_currency_code char(3) NOT NULL,
    status                text    NOT NULL
) ON COMMIT DROP;
