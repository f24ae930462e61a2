-- Full rebuild: start from empty marts inside the build transaction (readers keep the old data
-- until the rebuild commits).
TRUNCATE marts.fct_balance_transaction, marts.fct_charge, marts.dim_merchant, marts.dim_customer,
    marts.dim_payment_method, marts.dim_currency, marts.dim_country, marts.dim_date,
    marts.build_state
