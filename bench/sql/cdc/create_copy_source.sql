-- bench/cdc_end_to_end_bench.py: the raw COPY baseline's source, rows shaped like the captured
-- columns of charge (a plain table: no key, no index).
-- Executed with parameters: the modulo operator is written %%.
CREATE TABLE bench_copy_source AS
SELECT g AS charge_id, g * 7 AS payment_intent_id,
       'tok_' || md5((g %% 250007)::text) AS customer_id,
       (g * 7919) %% 1000000 + 100 AS amount,
       ((ARRAY['USD', 'EUR', 'JPY', 'GBP'])[g %% 4 + 1])::character(3) AS currency_code,
       (ARRAY['pending', 'succeeded', 'failed', 'refunded', 'disputed'])[g %% 5 + 1] AS status,
       CASE WHEN g %% 5 = 2 THEN 'card_declined' END AS failure_code,
       g %% 5 <> 2 AS captured,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS created_at,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS updated_at
FROM generate_series(1::bigint, %(rows)s::bigint) AS g;
-- The baseline reads it as the engine reads the slot: as the capture role.
GRANT SELECT ON bench_copy_source TO paydata_cdc;
