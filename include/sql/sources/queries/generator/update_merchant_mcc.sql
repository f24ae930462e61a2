UPDATE merchant SET mcc = %(value)s WHERE merchant_id = %(merchant_id)s
