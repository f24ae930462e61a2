-- What this build loaded, for the report and the reconciliation window.
SELECT count(*) AS staged_facts,
       min(created_date) AS first_day,
       max(created_date) AS last_day,
       max(balance_transaction_id) AS max_balance_transaction_id
FROM staged_fact
