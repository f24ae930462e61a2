-- Staged ledger rows the build refuses to load, one row per problem (the build stops on any).
WITH affected_ledger AS (
    SELECT s.*
    FROM staging.oltp_balance_transaction AS s
    JOIN affected_balance_transaction USING (balance_transaction_id)
),

ledger_currency AS (
    SELECT l.*, c.currency_code IS NOT NULL AS is_known_currency, c.minor_units
    FROM affected_ledger AS l
    LEFT JOIN marts.dim_currency AS c USING (currency_code)
),

violation AS (
    SELECT balance_transaction_id, 'deleted at source, but the ledger is append-only' AS problem
    FROM ledger_currency WHERE _is_deleted
    UNION ALL
    SELECT balance_transaction_id, 'missing merchant_id, type, currency_code, amount, fee, net or created_at'
    FROM ledger_currency
    WHERE merchant_id IS NULL OR type IS NULL OR currency_code IS NULL OR amount IS NULL
       OR fee IS NULL OR net IS NULL OR created_at IS NULL OR available_on IS NULL
    UNION ALL
    SELECT balance_transaction_id, format('unknown type %%s', type)
    FROM ledger_currency
    WHERE type NOT IN ('charge', 'refund', 'dispute', 'payout', 'fee', 'adjustment')
    UNION ALL
    SELECT balance_transaction_id, format('fee %%s is negative', fee)
    FROM ledger_currency WHERE fee < 0
    UNION ALL
    SELECT balance_transaction_id, format('net %%s is not amount %%s minus fee %%s', net, amount, fee)
    FROM ledger_currency WHERE net <> amount - fee
    UNION ALL
    SELECT balance_transaction_id, 'amount is zero'
    FROM ledger_currency WHERE amount = 0
    UNION ALL
    SELECT balance_transaction_id, format('charge amount %%s must be positive', amount)
    FROM ledger_currency WHERE type = 'charge' AND amount < 0
    UNION ALL
    SELECT balance_transaction_id, format('%%s amount %%s must be negative', type, amount)
    FROM ledger_currency WHERE type IN ('refund', 'payout', 'fee') AND amount > 0
    UNION ALL
    SELECT balance_transaction_id, format('unknown currency %%s (not in dim_currency)', currency_code)
    FROM ledger_currency WHERE currency_code IS NOT NULL AND NOT is_known_currency
    UNION ALL
    SELECT balance_transaction_id, format('currency %%s has no minor units (not chargeable)', currency_code)
    FROM ledger_currency WHERE is_known_currency AND minor_units IS NULL
)

SELECT balance_transaction_id, problem
FROM violation
ORDER BY balance_transaction_id, problem
LIMIT %(limit)s
