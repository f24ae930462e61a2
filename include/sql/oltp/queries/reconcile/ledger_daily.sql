-- Ledger totals per UTC day and currency in the OLTP source, for the reconciled window.
SELECT (created_at AT TIME ZONE 'UTC')::date AS day, currency_code, count(*) AS row_count,
       sum(amount) AS amount
FROM balance_transaction
WHERE created_at >= (%(first_day)s::date::timestamp AT TIME ZONE 'UTC')
  AND created_at < ((%(last_day)s::date + 1)::timestamp AT TIME ZONE 'UTC')
  AND balance_transaction_id <= %(max_balance_transaction_id)s
GROUP BY 1, 2
