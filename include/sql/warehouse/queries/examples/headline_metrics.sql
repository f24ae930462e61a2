-- Headline numbers for the whole loaded history: gross charge volume in USD, authorisation rate
-- of charge attempts, and dispute rate (disputes per charge).
WITH volume AS (
    SELECT coalesce(sum(charge_amount_usd), 0) AS gross_volume_usd,
           coalesce(sum(charge_count), 0) AS charge_count,
           coalesce(sum(dispute_count), 0) AS dispute_count,
           coalesce(sum(refund_count), 0) AS refund_count
    FROM analytics.refund_dispute_rates
),

attempts AS (
    SELECT coalesce(sum(attempt_count), 0) AS attempt_count,
           coalesce(sum(authorised_count), 0) AS authorised_count
    FROM analytics.authorisation_rates
)

SELECT volume.gross_volume_usd,
       volume.charge_count,
       round(attempts.authorised_count::numeric / nullif(attempts.attempt_count, 0), 4) AS authorisation_rate,
       round(volume.dispute_count::numeric / nullif(volume.charge_count, 0), 4) AS dispute_rate,
       round(volume.refund_count::numeric / nullif(volume.charge_count, 0), 4) AS refund_rate
FROM volume CROSS JOIN attempts;
