-- The affected charges with everything the charge fact needs except the merchant version key.
-- Merchant and customer come from the payment intent (the charge row does not repeat them), the
-- card country from the payment method; tombstones keep their last values and are flagged.
CREATE TEMP TABLE staged_charge ON COMMIT DROP AS
WITH affected AS (
    SELECT c.*, (c.created_at AT TIME ZONE 'UTC')::date AS created_date
    FROM staging.oltp_charge AS c
    JOIN affected_charge USING (charge_id)
),

charge_payment AS (
    SELECT a.*, i.merchant_id, i.customer_id, pm.bin_country_code
    FROM affected AS a
    LEFT JOIN staging.oltp_payment_intent AS i ON i.payment_intent_id = a.payment_intent_id
    LEFT JOIN staging.oltp_payment_method AS pm ON pm.payment_method_id = a.payment_method_id
),

-- the ledger fact's conversion rule (fact_stage.sql): latest rate on or before the UTC date, in
-- either direction, a direct quote winning a tie; the test compares both facts' USD amounts
currency_day AS (
    SELECT DISTINCT currency_code, created_date FROM affected WHERE currency_code <> 'USD'
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

charge_rate AS (
    SELECT cp.*, cur.minor_units,
           CASE WHEN cp.currency_code = 'USD' THEN 1::numeric ELSE ur.rate_to_usd END AS fx_rate_to_usd,
           CASE WHEN cp.currency_code = 'USD' THEN cp.created_date ELSE ur.effective_date END AS fx_rate_date
    FROM charge_payment AS cp
    LEFT JOIN marts.dim_currency AS cur USING (currency_code)
    LEFT JOIN usd_rate AS ur USING (currency_code, created_date)
)

SELECT charge_id, payment_intent_id, merchant_id, customer_id, payment_method_id,
       bin_country_code AS card_country_code, ip_address AS ip_address_token, device_id, session_id,
       status,
       CASE WHEN status = 'pending' THEN 'pending'
            WHEN status = 'failed' THEN 'declined'
            WHEN status IN ('succeeded', 'partially_refunded', 'refunded', 'disputed', 'dispute_lost')
                THEN 'authorised' END AS outcome,
       failure_code, captured AS is_captured, currency_code, amount,
       round(fx_rate_to_usd, 16) AS fx_rate_to_usd, fx_rate_date,
       round(amount * fx_rate_to_usd / power(10::numeric, minor_units), 2) AS amount_usd,
       to_char(created_date, 'YYYYMMDD')::int AS created_date_id, created_date, created_at, updated_at,
       _is_deleted AS is_deleted, _commit_lsn AS source_commit_lsn, _index_in_txn AS source_index_in_txn,
       _commit_time AS source_commit_at
FROM charge_rate;

ANALYZE staged_charge;
