SELECT merchant_id FROM merchant ORDER BY merchant_id
