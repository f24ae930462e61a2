UPDATE merchant SET payout_schedule = %(value)s WHERE merchant_id = %(merchant_id)s
