-- Full rebuild: start from empty marts inside the build transaction (readers keep the old data
-- until the rebuild commits). Used where the build may run DDL (an unmigrated scratch warehouse);
-- on a migrated one security.begin_full_rebuild() (warehouse V002) truncates the same list: keep
-- the two lists equal (a new marts table to empty goes into a new migration's function too).
TRUNCATE marts.fct_balance_transaction, marts.fct_charge, marts.dim_merchant, marts.dim_customer,
    marts.dim_payment_method, marts.dim_currency, marts.dim_country, marts.dim_date,
    marts.build_state
