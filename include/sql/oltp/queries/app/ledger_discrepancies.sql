-- Charges whose ledger postings do not add up to what the charge, its refunds and its disputes
-- say: captured amount, minus succeeded refunds, minus disputes not won. Empty when consistent.
WITH expected AS (
    SELECT ch.charge_id,
           CASE WHEN ch.captured THEN ch.amount ELSE 0 END
           - coalesce((SELECT sum(r.amount) FROM refund AS r
                       WHERE r.charge_id = ch.charge_id AND r.status = 'succeeded'), 0)
           - coalesce((SELECT sum(d.amount) FROM dispute AS d
                       WHERE d.charge_id = ch.charge_id AND d.status <> 'won'), 0) AS amount
    FROM charge AS ch
),
posted AS (
    SELECT charge_id, sum(amount) AS amount
    FROM (
        SELECT bt.source_id AS charge_id, bt.amount
        FROM balance_transaction AS bt WHERE bt.type = 'charge'
        UNION ALL
        SELECT r.charge_id, bt.amount
        FROM balance_transaction AS bt JOIN refund AS r ON r.refund_id = bt.source_id
        WHERE bt.type = 'refund'
        UNION ALL
        SELECT d.charge_id, bt.amount
        FROM balance_transaction AS bt JOIN dispute AS d ON d.dispute_id = bt.source_id
        WHERE bt.type = 'dispute'
    ) AS postings
    GROUP BY charge_id
)
SELECT coalesce(e.charge_id, p.charge_id) AS charge_id,
       coalesce(e.amount, 0)::bigint AS expected_amount,
       coalesce(p.amount, 0)::bigint AS posted_amount
FROM expected AS e
FULL JOIN posted AS p ON p.charge_id = e.charge_id
WHERE coalesce(e.amount, 0) <> coalesce(p.amount, 0)
ORDER BY 1;
