-- Merchants and their risk tiers. The warehouse keeps SCD2 history of risk_tier_code, mcc and
-- payout_schedule from the CDC stream of this table.

CREATE TABLE merchant_risk_tier (
    risk_tier_code text     PRIMARY KEY CHECK (risk_tier_code ~ '^[a-z][a-z0-9_]*$'),
    description    text     NOT NULL CHECK (btrim(description) <> ''),
    -- Higher rank = riskier; unique so tiers are totally ordered.
    rank           smallint NOT NULL UNIQUE CHECK (rank >= 0)
);

CREATE TABLE merchant (
    merchant_id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    legal_name            text        NOT NULL CHECK (btrim(legal_name) <> ''),
    mcc                   char(4)     NOT NULL CHECK (mcc ~ '^[0-9]{4}$'),
    country_code          char(2)     NOT NULL REFERENCES country (country_code),
    default_currency_code char(3)     NOT NULL REFERENCES currency (currency_code),
    payout_schedule       text        NOT NULL DEFAULT 'daily'
                                      CHECK (payout_schedule IN ('daily', 'weekly', 'monthly')),
    risk_tier_code        text        NOT NULL REFERENCES merchant_risk_tier (risk_tier_code),
    status                text        NOT NULL DEFAULT 'pending'
                                      CHECK (status IN ('pending', 'active', 'restricted', 'closed')),
    -- KYC contact, encrypted by the application (AES-GCM, per-merchant data key). The database
    -- only ever sees ciphertext; 28 bytes is the smallest possible envelope (12-byte nonce + 16-byte tag),
    -- so a short plaintext written by mistake is rejected.
    kyc_contact_name_enc  bytea       CHECK (octet_length(kyc_contact_name_enc) >= 28),
    kyc_contact_email_enc bytea       CHECK (octet_length(kyc_contact_email_enc) >= 28),
    kyc_contact_phone_enc bytea       CHECK (octet_length(kyc_contact_phone_enc) >= 28),
    -- Keyed blind index (HMAC) of the normalised email: equality lookups without decryption.
    kyc_email_bidx        bytea       CHECK (octet_length(kyc_email_bidx) >= 16),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT merchant_email_bidx_with_email
        CHECK ((kyc_email_bidx IS NULL) = (kyc_contact_email_enc IS NULL))
);
CREATE INDEX merchant_kyc_email_bidx_idx ON merchant (kyc_email_bidx) WHERE kyc_email_bidx IS NOT NULL;
CREATE INDEX merchant_country_idx ON merchant (country_code);
CREATE INDEX merchant_risk_tier_idx ON merchant (risk_tier_code);
CREATE INDEX merchant_default_currency_idx ON merchant (default_currency_code);

CREATE TRIGGER merchant_set_updated_at BEFORE UPDATE ON merchant
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Envelope encryption: one data key per merchant, wrapped by the key-encryption key named key_id.
-- Deleting the row makes the merchant's KYC ciphertext unreadable (crypto-shredding).
CREATE TABLE merchant_data_key (
    merchant_id bigint      PRIMARY KEY REFERENCES merchant (merchant_id) ON DELETE CASCADE,
    key_id      text        NOT NULL CHECK (btrim(key_id) <> ''),
    wrapped_key bytea       NOT NULL CHECK (octet_length(wrapped_key) > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The CDC consumer builds SCD2 rows from merchant updates; with FULL the old row travels with each
-- update, so the consumer can tell which tracked attribute changed without a warehouse lookup.
-- Merchants change rarely, so the extra WAL is negligible.
ALTER TABLE merchant REPLICA IDENTITY FULL;
