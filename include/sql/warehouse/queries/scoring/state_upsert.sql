-- The watermark only moves forward (a rescore of an older window leaves it where it is).
INSERT INTO marts.fraud_score_state (model_name, scored_lsn, updated_at)
VALUES (%(model_name)s, %(scored_lsn)s, %(updated_at)s)
ON CONFLICT (model_name) DO UPDATE
SET scored_lsn = greatest(marts.fraud_score_state.scored_lsn, EXCLUDED.scored_lsn),
    updated_at = EXCLUDED.updated_at;
