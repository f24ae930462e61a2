-- Quality checks over the whole fact table use the same scope table as a build's checks.
CREATE TEMP TABLE affected_balance_transaction ON COMMIT DROP AS
SELECT balance_transaction_id FROM marts.fct_balance_transaction;
CREATE UNIQUE INDEX ON affected_balance_transaction (balance_transaction_id);
ANALYZE affected_balance_transaction
