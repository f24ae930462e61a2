-- ISO 4217 currencies and ISO 3166-1 countries. Only the shape lives here: the rows are loaded
-- from pycountry by the seeding code, so the standard's data is never retyped by hand.

-- Shared by every table with an updated_at column: the database, not each writer, keeps it honest.
CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TABLE currency (
    currency_code char(3)  PRIMARY KEY CHECK (currency_code ~ '^[A-Z]{3}$'),
    numeric_code  char(3)  NOT NULL UNIQUE CHECK (numeric_code ~ '^[0-9]{3}$'),
    name          text     NOT NULL CHECK (btrim(name) <> ''),
    -- NULL is ISO 4217's "N.A." (XAU, XDR, ...): such currencies exist but cannot be charged.
    minor_units   smallint CHECK (minor_units BETWEEN 0 AND 4)
);
COMMENT ON TABLE currency IS 'ISO 4217 currencies; amounts elsewhere are integers in minor units';

CREATE TABLE country (
    country_code          char(2) PRIMARY KEY CHECK (country_code ~ '^[A-Z]{2}$'),
    alpha3_code           char(3) NOT NULL UNIQUE CHECK (alpha3_code ~ '^[A-Z]{3}$'),
    numeric_code          char(3) NOT NULL UNIQUE CHECK (numeric_code ~ '^[0-9]{3}$'),
    name                  text    NOT NULL CHECK (btrim(name) <> ''),
    -- Nullable: some territories (e.g. AQ) have no currency of their own.
    default_currency_code char(3) REFERENCES currency (currency_code),
    region                text
);
COMMENT ON TABLE country IS 'ISO 3166-1 countries, keyed by alpha-2';
CREATE INDEX country_default_currency_idx ON country (default_currency_code);
