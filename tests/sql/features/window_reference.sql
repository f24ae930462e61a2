-- A second formulation of the customer and card windowed counts and sums, with window functions
-- (RANGE frames ending 1 microsecond before the row: strictly before, ties excluded), over every
-- charge_event. It ignores load positions, so it agrees with the LATERAL builder when no row was
-- loaded after a later-dated one; the tests compare the two row for row.
SELECT charge_id,
       count(*) OVER (PARTITION BY customer_id ORDER BY created_at
                      RANGE BETWEEN '1 hour'::interval PRECEDING AND '1 microsecond'::interval PRECEDING)
           AS customer_charges_1h,
       count(*) OVER (PARTITION BY customer_id ORDER BY created_at
                      RANGE BETWEEN '24 hours'::interval PRECEDING AND '1 microsecond'::interval PRECEDING)
           AS customer_charges_24h,
       count(*) OVER (PARTITION BY customer_id ORDER BY created_at
                      RANGE BETWEEN '7 days'::interval PRECEDING AND '1 microsecond'::interval PRECEDING)
           AS customer_charges_7d,
       coalesce(sum(amount_usd) OVER (PARTITION BY customer_id ORDER BY created_at
                      RANGE BETWEEN '24 hours'::interval PRECEDING AND '1 microsecond'::interval PRECEDING), 0)
           AS customer_amount_usd_24h,
       count(*) FILTER (WHERE outcome = 'declined') OVER (PARTITION BY customer_id ORDER BY created_at
                      RANGE BETWEEN '24 hours'::interval PRECEDING AND '1 microsecond'::interval PRECEDING)
           AS customer_declines_24h,
       count(*) OVER (PARTITION BY card_fingerprint ORDER BY created_at
                      RANGE BETWEEN '1 hour'::interval PRECEDING AND '1 microsecond'::interval PRECEDING)
           AS card_charges_1h,
       coalesce(sum(amount_usd) OVER (PARTITION BY card_fingerprint ORDER BY created_at
                      RANGE BETWEEN '7 days'::interval PRECEDING AND '1 microsecond'::interval PRECEDING), 0)
           AS card_amount_usd_7d,
       count(*) FILTER (WHERE outcome = 'declined') OVER (PARTITION BY card_fingerprint ORDER BY created_at
                      RANGE BETWEEN '1 hour'::interval PRECEDING AND '1 microsecond'::interval PRECEDING)
           AS card_declines_1h
FROM features.charge_event
ORDER BY charge_id;
