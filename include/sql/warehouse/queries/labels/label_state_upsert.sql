-- Which as_of, maturity and fraud reasons the published labels were derived with.
INSERT INTO marts.label_state (label_table, as_of, maturity, fraud_reasons, labelled_at)
VALUES (%(label_table)s, %(as_of)s, %(maturity)s, %(fraud_reasons)s, now())
ON CONFLICT (label_table) DO UPDATE
SET as_of = EXCLUDED.as_of, maturity = EXCLUDED.maturity, fraud_reasons = EXCLUDED.fraud_reasons,
    labelled_at = EXCLUDED.labelled_at
