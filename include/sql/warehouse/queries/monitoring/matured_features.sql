-- Charges created in [%(window_start)s, %(window_end)s) whose fraud label had matured at the labels'
-- as_of (temp table charge_label, derived by paydata.warehouse.labels at that time, never later),
-- with their stored features and segments.
SELECT f.charge_id, f.created_at, l.label_matured_at, l.is_fraud, {columns},
       m.country_code AS segment_merchant_country, m.risk_tier_code AS segment_merchant_risk_tier
FROM charge_label AS l
JOIN {table} AS f USING (charge_id)
LEFT JOIN marts.fct_charge AS c USING (charge_id)
LEFT JOIN marts.dim_merchant AS m USING (merchant_version_id)
WHERE l.is_fraud IS NOT NULL
  AND f.created_at >= %(window_start)s AND f.created_at < %(window_end)s
ORDER BY f.created_at, f.charge_id;
