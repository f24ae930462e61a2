-- bench/cdc_end_to_end_bench.py: generate a backlog of mixed changes server-side.
-- Transaction k (one COMMIT each) inserts p_inserts new charges, updates p_updates charges written
-- by earlier transactions and deletes the p_deletes oldest live charges; ids are deterministic, so
-- after T transactions the live ids are p_deletes*T+1 .. p_inserts*T.
CREATE PROCEDURE bench_mixed_changes(p_first int, p_transactions int, p_inserts int, p_updates int, p_deletes int)
LANGUAGE plpgsql AS $$
DECLARE
    k int;
BEGIN
    FOR k IN p_first .. p_first + p_transactions - 1 LOOP
        INSERT INTO charge
        SELECT g, g * 7, g % 250007, (g * 7919) % 1000000 + 100,
               (ARRAY['USD', 'EUR', 'JPY', 'GBP'])[g % 4 + 1],
               (ARRAY['pending', 'succeeded', 'failed', 'refunded', 'disputed'])[g % 5 + 1],
               CASE WHEN g % 5 = 2 THEN 'card_declined' END,
               g % 5 <> 2,
               ('10.0.0.0'::inet + (g % 16777216)),
               timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
               timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
        FROM generate_series(k::bigint * p_inserts + 1, (k + 1)::bigint * p_inserts) AS g;
        UPDATE charge
        SET amount = amount + 1,
            status = (ARRAY['succeeded', 'refunded', 'disputed'])[(charge_id + k) % 3 + 1],
            failure_code = NULL,
            captured = true,
            updated_at = updated_at + interval '1 minute'
        WHERE charge_id BETWEEN k::bigint * p_deletes + p_deletes + 1 AND k::bigint * p_deletes + p_deletes + p_updates;
        DELETE FROM charge WHERE charge_id BETWEEN k::bigint * p_deletes + 1 AND (k + 1)::bigint * p_deletes;
        COMMIT;
    END LOOP;
END
$$;
