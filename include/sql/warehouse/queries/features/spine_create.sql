-- The points features are computed at: one row per (spine_id, as_of, known_lsn) with entity keys
-- and the request attributes. Offline: one row per charge; online: one row per entity.
CREATE TEMP TABLE feature_spine (
    spine_id          bigint           PRIMARY KEY,
    as_of             timestamptz      NOT NULL,
    known_lsn         bigint           NOT NULL,
    customer_id       text,
    card_fingerprint  text,
    device_id         text,
    ip_address_token  text,
    merchant_id       bigint,
    session_id        text,
    card_country_code char(2),
    amount_usd        double precision
) ON COMMIT DROP;
