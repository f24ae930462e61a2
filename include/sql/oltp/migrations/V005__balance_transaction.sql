-- The ledger: one row per money movement on a merchant's balance. This is the fact grain
-- downstream. Amounts are signed minor units from the merchant's point of view (charges in,
-- refunds and payouts out); fee is what the processor keeps; net is what the balance moves by.

CREATE TABLE balance_transaction (
    balance_transaction_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id            bigint      NOT NULL REFERENCES merchant_ref (merchant_id),
    type                   text        NOT NULL CHECK (type IN (
                                           'charge', 'refund', 'dispute', 'payout', 'fee', 'adjustment')),
    -- Id in the table named by type (charge_id, refund_id, dispute_id, payout_id). Polymorphic, so
    -- not a foreign key; fee and adjustment rows may stand alone.
    source_id              bigint,
    amount                 bigint      NOT NULL CHECK (amount <> 0),
    fee                    bigint      NOT NULL DEFAULT 0 CHECK (fee >= 0),
    net                    bigint      NOT NULL,
    currency_code          char(3)     NOT NULL REFERENCES currency_ref (currency_code),
    created_at             timestamptz NOT NULL DEFAULT now(),
    available_on           timestamptz NOT NULL,
    CONSTRAINT balance_transaction_net_is_amount_minus_fee CHECK (net = amount - fee),
    CONSTRAINT balance_transaction_source_required
        CHECK (source_id IS NOT NULL OR type IN ('fee', 'adjustment')),
    CONSTRAINT balance_transaction_charge_is_credit CHECK (type <> 'charge' OR amount > 0),
    CONSTRAINT balance_transaction_outflow_is_debit
        CHECK (type NOT IN ('refund', 'payout', 'fee') OR amount < 0),
    CONSTRAINT balance_transaction_available_after_created CHECK (available_on >= created_at)
);
-- A charge, refund or payout is posted exactly once: reposting is a no-op for idempotent writers.
-- Disputes may post twice (withdrawal, then reinstatement when won).
CREATE UNIQUE INDEX balance_transaction_single_posting_idx ON balance_transaction (type, source_id)
    WHERE type IN ('charge', 'refund', 'payout');
CREATE INDEX balance_transaction_merchant_created_idx ON balance_transaction (merchant_id, created_at);
CREATE INDEX balance_transaction_created_idx ON balance_transaction (created_at);

-- Append-only: a ledger is corrected with an adjustment row, never by rewriting history.
CREATE FUNCTION balance_transaction_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'balance_transaction is append-only: % of row % rejected',
        TG_OP, OLD.balance_transaction_id
        USING ERRCODE = 'restrict_violation',
              HINT = 'post an adjustment row instead';
END;
$$;
CREATE TRIGGER balance_transaction_append_only BEFORE UPDATE OR DELETE ON balance_transaction
    FOR EACH ROW EXECUTE FUNCTION balance_transaction_reject_change();
