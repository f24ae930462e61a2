INSERT INTO merchant_risk_tier (risk_tier_code, description, rank)
VALUES (%(risk_tier_code)s, %(description)s, %(rank)s)
ON CONFLICT (risk_tier_code) DO UPDATE SET description = EXCLUDED.description
WHERE merchant_risk_tier.description IS DISTINCT FROM EXCLUDED.description
