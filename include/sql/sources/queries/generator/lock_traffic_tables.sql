-- Concurrent single-row writers wait until the bulk load commits, so the identity blocks reserved
-- by the load stay contiguous. Readers are not blocked.
LOCK TABLE customer, payment_method, payment_intent, charge, refund, dispute, payout, balance_transaction
    IN SHARE ROW EXCLUSIVE MODE
