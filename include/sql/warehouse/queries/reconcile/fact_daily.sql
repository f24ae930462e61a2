-- The same totals from the fact table.
SELECT d.date_day AS day, f.currency_code, count(*) AS row_count, sum(f.amount) AS amount
FROM marts.fct_balance_transaction AS f
JOIN marts.dim_date AS d ON d.date_id = f.created_date_id
WHERE f.created_at >= (%(first_day)s::date::timestamp AT TIME ZONE 'UTC')
  AND f.created_at < ((%(last_day)s::date + 1)::timestamp AT TIME ZONE 'UTC')
  AND f.balance_transaction_id <= %(max_balance_transaction_id)s
GROUP BY 1, 2
