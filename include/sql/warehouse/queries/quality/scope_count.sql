SELECT (SELECT count(*) FROM affected_balance_transaction) AS facts,
       (SELECT count(*) FROM affected_charge) AS charges
