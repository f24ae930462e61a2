-- Payment intents (what the merchant wants to collect) and charges (each attempt to collect it).

CREATE TABLE payment_intent (
    payment_intent_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id       bigint      NOT NULL REFERENCES merchant_ref (merchant_id),
    customer_id       bigint,
    amount            bigint      NOT NULL CHECK (amount > 0),
    currency_code     char(3)     NOT NULL REFERENCES currency_ref (currency_code),
    status            text        NOT NULL DEFAULT 'requires_payment_method' CHECK (status IN (
                                      'requires_payment_method', 'requires_confirmation',
                                      'processing', 'succeeded', 'canceled')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- A merchant can only charge its own customers.
    CONSTRAINT payment_intent_customer_of_merchant FOREIGN KEY (customer_id, merchant_id)
        REFERENCES customer (customer_id, merchant_id),
    -- Target of the charge's composite key, which pins the charge's currency to the intent's.
    CONSTRAINT payment_intent_currency_key UNIQUE (payment_intent_id, currency_code)
);
CREATE INDEX payment_intent_merchant_created_idx ON payment_intent (merchant_id, created_at);
CREATE INDEX payment_intent_customer_created_idx ON payment_intent (customer_id, created_at)
    WHERE customer_id IS NOT NULL;
CREATE TRIGGER payment_intent_set_updated_at BEFORE UPDATE ON payment_intent
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- The charge state machine as data: the trigger below and downstream consumers read the same rows.
CREATE TABLE charge_status_transition (
    from_status text NOT NULL,
    to_status   text NOT NULL,
    PRIMARY KEY (from_status, to_status),
    CHECK (from_status <> to_status)
);
INSERT INTO charge_status_transition (from_status, to_status) VALUES
    ('pending', 'succeeded'),
    ('pending', 'failed'),
    ('succeeded', 'partially_refunded'),
    ('succeeded', 'refunded'),
    ('succeeded', 'disputed'),
    ('partially_refunded', 'refunded'),
    ('partially_refunded', 'disputed'),
    ('disputed', 'succeeded'),           -- dispute won, nothing refunded before
    ('disputed', 'partially_refunded'),  -- dispute won, partly refunded before
    ('disputed', 'dispute_lost');

CREATE TABLE charge (
    charge_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_intent_id bigint      NOT NULL,
    payment_method_id bigint      NOT NULL REFERENCES payment_method (payment_method_id),
    amount            bigint      NOT NULL CHECK (amount > 0),
    currency_code     char(3)     NOT NULL,
    status            text        NOT NULL DEFAULT 'pending' CHECK (status IN (
                                      'pending', 'succeeded', 'failed', 'partially_refunded',
                                      'refunded', 'disputed', 'dispute_lost')),
    failure_code      text,
    failure_message   text,
    captured          boolean     NOT NULL DEFAULT false,
    ip_address        inet,
    device_id         text,
    session_id        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT charge_payment_intent_fkey FOREIGN KEY (payment_intent_id, currency_code)
        REFERENCES payment_intent (payment_intent_id, currency_code),
    CONSTRAINT charge_failure_code_iff_failed
        CHECK ((status = 'failed') = (failure_code IS NOT NULL AND btrim(failure_code) <> '')),
    CONSTRAINT charge_failed_not_captured CHECK (NOT (captured AND status = 'failed'))
);
CREATE INDEX charge_payment_intent_idx ON charge (payment_intent_id);
CREATE INDEX charge_payment_method_created_idx ON charge (payment_method_id, created_at);
CREATE INDEX charge_created_idx ON charge (created_at);

CREATE FUNCTION charge_enforce_status_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status NOT IN ('pending', 'succeeded', 'failed') THEN
            RAISE EXCEPTION 'charge cannot be created with status %', NEW.status
                USING ERRCODE = 'check_violation',
                      HINT = 'a new charge is pending, succeeded or failed';
        END IF;
    ELSIF NEW.status IS DISTINCT FROM OLD.status AND NOT EXISTS (
        SELECT 1 FROM charge_status_transition
        WHERE from_status = OLD.status AND to_status = NEW.status
    ) THEN
        RAISE EXCEPTION 'illegal charge status transition for charge %: % -> %',
            OLD.charge_id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation',
                  HINT = 'allowed transitions are listed in charge_status_transition';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER charge_status_transition_check BEFORE INSERT OR UPDATE OF status ON charge
    FOR EACH ROW EXECUTE FUNCTION charge_enforce_status_transition();
CREATE TRIGGER charge_set_updated_at BEFORE UPDATE ON charge
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
