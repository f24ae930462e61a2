-- Scores of one API batch (psycopg2.extras.execute_values fills VALUES); idempotent per charge and
-- model version.
INSERT INTO marts.fct_fraud_score (charge_id, model_name, model_version, score, band, reasons, feature_misses,
                                   features_degraded, charge_created_at, scored_at)
VALUES %s
ON CONFLICT (charge_id, model_name, model_version) DO UPDATE
SET score = EXCLUDED.score, band = EXCLUDED.band, reasons = EXCLUDED.reasons,
    feature_misses = EXCLUDED.feature_misses, features_degraded = EXCLUDED.features_degraded,
    charge_created_at = EXCLUDED.charge_created_at, scored_at = EXCLUDED.scored_at;
