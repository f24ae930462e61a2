SELECT count(*) FROM affected_balance_transaction
