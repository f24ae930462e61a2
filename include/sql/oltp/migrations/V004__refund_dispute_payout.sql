-- Money going back out: refunds and disputes against a charge, payouts to the merchant.

CREATE TABLE refund (
    refund_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    charge_id  bigint      NOT NULL REFERENCES charge (charge_id),
    amount     bigint      NOT NULL CHECK (amount > 0),
    status     text        NOT NULL DEFAULT 'pending'
                           CHECK (status IN ('pending', 'succeeded', 'failed', 'canceled')),
    reason     text        CHECK (reason IN ('duplicate', 'fraudulent', 'requested_by_customer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refund_charge_idx ON refund (charge_id);
CREATE TRIGGER refund_set_updated_at BEFORE UPDATE ON refund
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Pending and succeeded refunds of a charge may never add up to more than the charge. The charge
-- row is locked first, so two concurrent refunds of one charge are checked one after the other.
CREATE FUNCTION refund_enforce_charge_limit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    charge_amount bigint;
    charge_status text;
    already_refunded bigint;
BEGIN
    SELECT amount, status INTO charge_amount, charge_status
    FROM charge WHERE charge_id = NEW.charge_id FOR UPDATE;
    IF NOT FOUND THEN
        -- The foreign key reports this case; let it.
        RETURN NEW;
    END IF;
    IF TG_OP = 'INSERT' AND charge_status NOT IN ('succeeded', 'partially_refunded') THEN
        RAISE EXCEPTION 'charge % cannot be refunded in status %', NEW.charge_id, charge_status
            USING ERRCODE = 'check_violation',
                  HINT = 'only succeeded or partially_refunded charges can be refunded';
    END IF;
    IF NEW.status IN ('pending', 'succeeded') THEN
        SELECT coalesce(sum(amount), 0) INTO already_refunded
        FROM refund
        WHERE charge_id = NEW.charge_id
          AND status IN ('pending', 'succeeded')
          AND refund_id <> NEW.refund_id;
        IF already_refunded + NEW.amount > charge_amount THEN
            RAISE EXCEPTION 'refund of % exceeds charge %: charge amount %, already refunded %',
                NEW.amount, NEW.charge_id, charge_amount, already_refunded
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER refund_charge_limit_check BEFORE INSERT OR UPDATE OF charge_id, amount, status ON refund
    FOR EACH ROW EXECUTE FUNCTION refund_enforce_charge_limit();

CREATE TABLE dispute (
    dispute_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    charge_id  bigint      NOT NULL REFERENCES charge (charge_id),
    amount     bigint      NOT NULL CHECK (amount > 0),
    reason     text        NOT NULL CHECK (reason IN (
                               'fraudulent', 'product_not_received', 'duplicate',
                               'subscription_canceled', 'credit_not_processed', 'general')),
    status     text        NOT NULL DEFAULT 'needs_response'
                           CHECK (status IN ('needs_response', 'under_review', 'won', 'lost')),
    opened_at  timestamptz NOT NULL DEFAULT now(),
    closed_at  timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT dispute_closed_iff_decided
        CHECK ((status IN ('won', 'lost')) = (closed_at IS NOT NULL)),
    CONSTRAINT dispute_closed_after_opened CHECK (closed_at >= opened_at)
);
CREATE INDEX dispute_charge_idx ON dispute (charge_id);
CREATE INDEX dispute_open_idx ON dispute (opened_at) WHERE closed_at IS NULL;
CREATE TRIGGER dispute_set_updated_at BEFORE UPDATE ON dispute
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE payout (
    payout_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id   bigint      NOT NULL REFERENCES merchant_ref (merchant_id),
    amount        bigint      NOT NULL CHECK (amount > 0),
    currency_code char(3)     NOT NULL REFERENCES currency_ref (currency_code),
    status        text        NOT NULL DEFAULT 'pending'
                              CHECK (status IN ('pending', 'in_transit', 'paid', 'failed', 'canceled')),
    arrival_date  date        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payout_merchant_created_idx ON payout (merchant_id, created_at);
CREATE TRIGGER payout_set_updated_at BEFORE UPDATE ON payout
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
