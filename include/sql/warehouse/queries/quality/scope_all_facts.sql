-- Quality checks over the whole fact tables use the same scope tables as a build's checks.
CREATE TEMP TABLE affected_balance_transaction ON COMMIT DROP AS
SELECT balance_transaction_id FROM marts.fct_balance_transaction;
CREATE UNIQUE INDEX ON affected_balance_transaction (balance_transaction_id);
ANALYZE affected_balance_transaction;
CREATE TEMP TABLE affected_charge ON COMMIT DROP AS
SELECT charge_id FROM marts.fct_charge;
CREATE UNIQUE INDEX ON affected_charge (charge_id);
ANALYZE affected_charge
