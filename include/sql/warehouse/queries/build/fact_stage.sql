-- The affected ledger rows with everything a fact needs except the merchant version key.
CREATE TEMP TABLE staged_fact ON COMMIT DROP AS
WITH affected_ledger AS (
    SELECT s.*, (s.created_at AT TIME ZONE 'UTC')::date AS created_date
    FROM staging.oltp_balance_transaction AS s
    JOIN affected_balance_transaction USING (balance_transaction_id)
),

ledger_charge AS (
    SELECT l.*,
           CASE l.type WHEN 'charge' THEN l.source_id
                       WHEN 'refund' THEN r.charge_id
                       WHEN 'dispute' THEN d.charge_id END AS charge_id
    FROM affected_ledger AS l
    LEFT JOIN staging.oltp_refund AS r ON l.type = 'refund' AND r.refund_id = l.source_id
    LEFT JOIN staging.oltp_dispute AS d ON l.type = 'dispute' AND d.dispute_id = l.source_id
),

ledger_payment AS (
    SELECT lc.*, c.payment_intent_id, c.payment_method_id, i.customer_id, pm.bin_country_code
    FROM ledger_charge AS lc
    LEFT JOIN staging.oltp_charge AS c ON c.charge_id = lc.charge_id
    LEFT JOIN staging.oltp_payment_intent AS i ON i.payment_intent_id = c.payment_intent_id
    LEFT JOIN staging.oltp_payment_method AS pm ON pm.payment_method_id = c.payment_method_id
),

-- latest rate on or before the transaction date, in either direction; a direct quote wins a tie
currency_day AS (
    SELECT DISTINCT currency_code, created_date FROM affected_ledger WHERE currency_code <> 'USD'
),

usd_rate AS (
    SELECT cd.currency_code, cd.created_date, r.rate_to_usd, r.effective_date
    FROM currency_day AS cd
    CROSS JOIN LATERAL (
        SELECT CASE WHEN fx.quote_currency_code = 'USD' THEN fx.rate ELSE 1 / fx.rate END AS rate_to_usd,
               fx.effective_date
        FROM staging.reference_fx_rate AS fx
        WHERE NOT fx._is_deleted
          AND fx.effective_date <= cd.created_date
          AND ((fx.base_currency_code = cd.currency_code AND fx.quote_currency_code = 'USD')
               OR (fx.base_currency_code = 'USD' AND fx.quote_currency_code = cd.currency_code))
        ORDER BY fx.effective_date DESC, (fx.quote_currency_code = 'USD') DESC
        LIMIT 1
    ) AS r
),

ledger_rate AS (
    SELECT lp.*, cur.minor_units,
           CASE WHEN lp.currency_code = 'USD' THEN 1::numeric ELSE ur.rate_to_usd END AS fx_rate_to_usd,
           CASE WHEN lp.currency_code = 'USD' THEN lp.created_date ELSE ur.effective_date END AS fx_rate_date
    FROM ledger_payment AS lp
    JOIN marts.dim_currency AS cur USING (currency_code)
    LEFT JOIN usd_rate AS ur USING (currency_code, created_date)
),

ledger_usd AS (
    SELECT lr.*,
           round(lr.amount * lr.fx_rate_to_usd / power(10::numeric, lr.minor_units), 2) AS amount_usd,
           round(lr.fee * lr.fx_rate_to_usd / power(10::numeric, lr.minor_units), 2) AS fee_usd
    FROM ledger_rate AS lr
)

SELECT balance_transaction_id, type AS transaction_type, source_id, merchant_id, customer_id,
       payment_method_id, payment_intent_id, charge_id, currency_code,
       bin_country_code AS card_country_code,
       to_char(created_date, 'YYYYMMDD')::int AS created_date_id, created_date,
       created_at, available_on, amount, fee, net,
       round(fx_rate_to_usd, 16) AS fx_rate_to_usd, fx_rate_date,
       amount_usd, fee_usd, amount_usd - fee_usd AS net_usd,
       _commit_lsn AS source_commit_lsn, _index_in_txn AS source_index_in_txn,
       _commit_time AS source_commit_at
FROM ledger_usd;

ANALYZE staged_fact;
