-- Customers of merchants (as in Stripe, a customer belongs to one merchant) and their cards.
-- Personal data is encrypted by the application with a per-customer data key; erasing a customer
-- deletes that key (crypto-shredding) and clears the ciphertext.

CREATE TABLE customer (
    customer_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id  bigint      NOT NULL REFERENCES merchant_ref (merchant_id),
    -- AES-GCM envelopes: at least 12-byte nonce + 16-byte tag, so stray plaintext is rejected.
    email_enc    bytea       CHECK (octet_length(email_enc) >= 28),
    name_enc     bytea       CHECK (octet_length(name_enc) >= 28),
    phone_enc    bytea       CHECK (octet_length(phone_enc) >= 28),
    -- Keyed blind index (HMAC) of the normalised email, for "find customer by email".
    email_bidx   bytea       CHECK (octet_length(email_bidx) >= 16),
    country_code char(2)     CHECK (country_code ~ '^[A-Z]{2}$'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    erased_at    timestamptz,
    CONSTRAINT customer_erased_has_no_personal_data CHECK (
        erased_at IS NULL
        OR (email_enc IS NULL AND name_enc IS NULL AND phone_enc IS NULL AND email_bidx IS NULL)
    ),
    -- Target of composite foreign keys that pin a customer to the same merchant as the payment.
    CONSTRAINT customer_merchant_key UNIQUE (customer_id, merchant_id)
);
CREATE INDEX customer_merchant_email_bidx_idx ON customer (merchant_id, email_bidx)
    WHERE email_bidx IS NOT NULL;
CREATE INDEX customer_merchant_created_idx ON customer (merchant_id, created_at);
CREATE TRIGGER customer_set_updated_at BEFORE UPDATE ON customer
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- One data key per customer, wrapped by the key-encryption key named key_id. Deleting the row
-- crypto-shreds the customer: every *_enc value becomes unreadable, including copies downstream.
CREATE TABLE customer_data_key (
    customer_id bigint      PRIMARY KEY REFERENCES customer (customer_id) ON DELETE CASCADE,
    key_id      text        NOT NULL CHECK (btrim(key_id) <> ''),
    wrapped_key bytea       NOT NULL CHECK (octet_length(wrapped_key) > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Cards only, tokenised: the vault holds the PAN; this database never stores a PAN or a CVV.
CREATE TABLE payment_method (
    payment_method_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id       bigint      NOT NULL REFERENCES customer (customer_id),
    type              text        NOT NULL DEFAULT 'card' CHECK (type = 'card'),
    token             text        NOT NULL UNIQUE CHECK (btrim(token) <> ''),
    brand             text        NOT NULL CHECK (brand IN (
                                      'visa', 'mastercard', 'amex', 'discover', 'jcb',
                                      'diners', 'unionpay', 'unknown')),
    funding           text        NOT NULL CHECK (funding IN ('credit', 'debit', 'prepaid')),
    last4             char(4)     NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    exp_month         smallint    NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
    exp_year          smallint    NOT NULL CHECK (exp_year BETWEEN 2000 AND 2100),
    -- Issuing country from the BIN; a format check only, since BIN tables name codes we may not list.
    bin_country_code  char(2)     CHECK (bin_country_code ~ '^[A-Z]{2}$'),
    -- Keyed hash of the PAN (computed by the vault): same card => same fingerprint, across customers.
    fingerprint       text        NOT NULL CHECK (btrim(fingerprint) <> ''),
    created_at        timestamptz NOT NULL DEFAULT now(),
    detached_at       timestamptz CHECK (detached_at >= created_at)
);
CREATE INDEX payment_method_customer_idx ON payment_method (customer_id);
CREATE INDEX payment_method_fingerprint_idx ON payment_method (fingerprint);
