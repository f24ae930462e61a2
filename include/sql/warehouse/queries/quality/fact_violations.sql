-- Facts in scope breaking a rule, one row per (check, fact): keys present and unique, every
-- foreign key resolving to a real or inferred member, amounts signed as the source demands.
WITH scoped_fact AS (
    SELECT f.*
    FROM marts.fct_balance_transaction AS f
    JOIN affected_balance_transaction USING (balance_transaction_id)
),

violation AS (
    SELECT 'fct_balance_transaction.pk_unique' AS check_name, balance_transaction_id,
           format('%%s rows share the key', count(*)) AS detail
    FROM scoped_fact GROUP BY balance_transaction_id HAVING count(*) > 1
    UNION ALL
    SELECT 'fct_balance_transaction.merchant_version_id', f.balance_transaction_id,
           format('merchant %%s has no version %%s valid at %%s', f.merchant_id, f.merchant_version_id, f.created_at)
    FROM scoped_fact AS f
    WHERE NOT EXISTS (
        SELECT 1 FROM marts.dim_merchant AS d
        WHERE d.merchant_version_id = f.merchant_version_id AND d.merchant_id = f.merchant_id
          AND f.created_at >= d.valid_from AND f.created_at < d.valid_to
    )
    UNION ALL
    SELECT 'fct_balance_transaction.customer_id', f.balance_transaction_id,
           format('customer %%s not in dim_customer', f.customer_id)
    FROM scoped_fact AS f
    WHERE f.customer_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM marts.dim_customer AS d WHERE d.customer_id = f.customer_id)
    UNION ALL
    SELECT 'fct_balance_transaction.payment_method_id', f.balance_transaction_id,
           format('payment method %%s not in dim_payment_method', f.payment_method_id)
    FROM scoped_fact AS f
    WHERE f.payment_method_id IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM marts.dim_payment_method AS d WHERE d.payment_method_id = f.payment_method_id
      )
    UNION ALL
    SELECT 'fct_balance_transaction.currency_code', f.balance_transaction_id,
           format('currency %%s not in dim_currency', f.currency_code)
    FROM scoped_fact AS f
    WHERE NOT EXISTS (SELECT 1 FROM marts.dim_currency AS d WHERE d.currency_code = f.currency_code)
    UNION ALL
    SELECT 'fct_balance_transaction.card_country_code', f.balance_transaction_id,
           format('country %%s not in dim_country', f.card_country_code)
    FROM scoped_fact AS f
    WHERE f.card_country_code IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM marts.dim_country AS d WHERE d.country_code = f.card_country_code)
    UNION ALL
    SELECT 'fct_balance_transaction.created_date_id', f.balance_transaction_id,
           format('date %%s not in dim_date', f.created_date_id)
    FROM scoped_fact AS f
    WHERE NOT EXISTS (SELECT 1 FROM marts.dim_date AS d WHERE d.date_id = f.created_date_id)
    UNION ALL
    SELECT 'fct_balance_transaction.fee_non_negative', balance_transaction_id, format('fee %%s', fee)
    FROM scoped_fact WHERE fee < 0
    UNION ALL
    SELECT 'fct_balance_transaction.net_is_amount_minus_fee', balance_transaction_id,
           format('net %%s, amount %%s, fee %%s', net, amount, fee)
    FROM scoped_fact WHERE net <> amount - fee
    UNION ALL
    SELECT 'fct_balance_transaction.charge_is_credit', balance_transaction_id, format('amount %%s', amount)
    FROM scoped_fact WHERE transaction_type = 'charge' AND amount <= 0
    UNION ALL
    SELECT 'fct_balance_transaction.outflow_is_debit', balance_transaction_id,
           format('%%s amount %%s', transaction_type, amount)
    FROM scoped_fact WHERE transaction_type IN ('refund', 'payout', 'fee') AND amount >= 0
)

SELECT check_name, balance_transaction_id::text AS row_key, detail
FROM violation
ORDER BY check_name, balance_transaction_id
LIMIT %(limit)s
