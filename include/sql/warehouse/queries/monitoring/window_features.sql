-- The stored features of the charges created in [%(window_start)s, %(window_end)s), with the segments
-- of each charge (its merchant's country and risk tier as of the charge); at most %(max_rows)s rows,
-- a repeatable sample (ordered by a hash of the charge id and %(seed)s) when there are more.
SELECT f.charge_id, f.created_at, {columns},
       m.country_code AS segment_merchant_country, m.risk_tier_code AS segment_merchant_risk_tier
FROM {table} AS f
LEFT JOIN marts.fct_charge AS c USING (charge_id)
LEFT JOIN marts.dim_merchant AS m USING (merchant_version_id)
WHERE f.created_at >= %(window_start)s AND f.created_at < %(window_end)s
ORDER BY md5(f.charge_id::text || ':' || %(seed)s::text)
LIMIT %(max_rows)s;
