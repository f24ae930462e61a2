UPDATE merchant SET risk_tier_code = %(value)s WHERE merchant_id = %(merchant_id)s
