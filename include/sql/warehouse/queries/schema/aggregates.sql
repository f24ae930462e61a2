-- Pre-aggregations, refreshed CONCURRENTLY after each load (each needs a unique index).
CREATE MATERIALIZED VIEW IF NOT EXISTS marts.agg_daily_merchant_volume AS
WITH daily_volume AS (
    SELECT created_date_id, merchant_id, currency_code,
           count(*) AS transaction_count,
           count(*) FILTER (WHERE transaction_type = 'charge') AS charge_count,
           sum(amount) AS amount, sum(fee) AS fee, sum(net) AS net,
           sum(amount_usd) AS amount_usd, sum(net_usd) AS net_usd
    FROM marts.fct_balance_transaction
    GROUP BY created_date_id, merchant_id, currency_code
)

SELECT * FROM daily_volume
WITH NO DATA;
CREATE UNIQUE INDEX IF NOT EXISTS agg_daily_merchant_volume_key
    ON marts.agg_daily_merchant_volume (created_date_id, merchant_id, currency_code);

-- Charge attempts (authorised and declined) from the charge fact: the ledger only holds money that
-- moved, so declines are not in fct_balance_transaction. Marts of earlier releases computed this
-- from staging.oltp_charge; that definition is dropped (with the analyst view on it, re-created by
-- analytics.sql) so the one below replaces it.
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_matviews
        WHERE schemaname = 'marts' AND matviewname = 'agg_authorisation_rate'
          AND definition LIKE '%oltp_charge%'
    ) THEN
        DROP MATERIALIZED VIEW marts.agg_authorisation_rate CASCADE;
    END IF;
END
$$;

CREATE MATERIALIZED VIEW IF NOT EXISTS marts.agg_authorisation_rate AS
WITH charge_attempt AS (
    SELECT c.outcome, coalesce(pm.brand, 'unknown') AS brand,
           coalesce(pm.bin_country_code, '--') AS card_country_code
    FROM marts.fct_charge AS c
    LEFT JOIN marts.dim_payment_method AS pm USING (payment_method_id)
    WHERE NOT c.is_deleted AND c.outcome IN ('authorised', 'declined')
),

attempt_outcome AS (
    SELECT brand, card_country_code,
           count(*) AS attempt_count,
           count(*) FILTER (WHERE outcome = 'declined') AS decline_count
    FROM charge_attempt
    GROUP BY brand, card_country_code
)

SELECT brand, card_country_code, attempt_count, decline_count,
       attempt_count - decline_count AS authorised_count,
       round((attempt_count - decline_count)::numeric / attempt_count, 4) AS authorisation_rate,
       round(decline_count::numeric / attempt_count, 4) AS decline_rate
FROM attempt_outcome
WITH NO DATA;
CREATE UNIQUE INDEX IF NOT EXISTS agg_authorisation_rate_key
    ON marts.agg_authorisation_rate (brand, card_country_code);

CREATE MATERIALIZED VIEW IF NOT EXISTS marts.agg_refund_dispute_rate AS
WITH fact_with_merchant AS (
    SELECT f.transaction_type, f.amount_usd, coalesce(m.mcc, '----') AS mcc,
           coalesce(m.country_code, '--') AS merchant_country_code
    FROM marts.fct_balance_transaction AS f
    JOIN marts.dim_merchant AS m USING (merchant_version_id)
    WHERE f.transaction_type IN ('charge', 'refund', 'dispute')
),

movement_by_segment AS (
    SELECT mcc, merchant_country_code,
           count(*) FILTER (WHERE transaction_type = 'charge') AS charge_count,
           count(*) FILTER (WHERE transaction_type = 'refund') AS refund_count,
           count(*) FILTER (WHERE transaction_type = 'dispute') AS dispute_count,
           coalesce(sum(amount_usd) FILTER (WHERE transaction_type = 'charge'), 0) AS charge_amount_usd,
           coalesce(-sum(amount_usd) FILTER (WHERE transaction_type = 'refund'), 0) AS refund_amount_usd
    FROM fact_with_merchant
    GROUP BY mcc, merchant_country_code
)

SELECT mcc, merchant_country_code, charge_count, refund_count, dispute_count,
       charge_amount_usd, refund_amount_usd,
       round(refund_count::numeric / nullif(charge_count, 0), 4) AS refund_rate,
       round(dispute_count::numeric / nullif(charge_count, 0), 4) AS dispute_rate
FROM movement_by_segment
WITH NO DATA;
CREATE UNIQUE INDEX IF NOT EXISTS agg_refund_dispute_rate_key
    ON marts.agg_refund_dispute_rate (mcc, merchant_country_code);
