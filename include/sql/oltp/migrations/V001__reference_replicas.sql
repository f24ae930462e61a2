-- Local replicas of reference data. Payments must not depend on a cross-database call, so OLTP
-- foreign keys point at these tables; the reference sync job upserts them (before traffic starts
-- and on every reference change). Rows are never deleted: a closed merchant stays, status 'closed'.

CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TABLE currency_ref (
    currency_code char(3)     PRIMARY KEY CHECK (currency_code ~ '^[A-Z]{3}$'),
    -- Only chargeable currencies are replicated, so minor units are always known.
    minor_units   smallint    NOT NULL CHECK (minor_units BETWEEN 0 AND 4),
    synced_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE merchant_ref (
    merchant_id           bigint      PRIMARY KEY,
    country_code          char(2)     NOT NULL CHECK (country_code ~ '^[A-Z]{2}$'),
    default_currency_code char(3)     NOT NULL REFERENCES currency_ref (currency_code),
    status                text        NOT NULL
                                      CHECK (status IN ('pending', 'active', 'restricted', 'closed')),
    synced_at             timestamptz NOT NULL DEFAULT now()
);
