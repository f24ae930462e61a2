SELECT merchant_id, mcc, risk_tier_code, payout_schedule
FROM merchant WHERE merchant_id = %(merchant_id)s
FOR UPDATE
